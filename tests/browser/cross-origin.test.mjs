// A browser app on an origin of its own, as the protocol documents' frontends are (a Vue or React
// single-page app, the rooms document's client): a page served by another HTTP server on
// loopback logs in to natter over fetch (CORS, preflight and all), learns who it is, opens the
// rooms protocol's WebSocket and chats. The same page from an origin natter does not list is
// refused by the browser at login and at the upgrade, and the daemon's log names its Origin, the
// Host and ws.allowed_origins.
//
// Run: `npm ci && node --test cross-origin.test.mjs` here, after building natter.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Natter, launchBrowser, newContext, eventually } from './harness.mjs';

/** The app: one page whose script does what the document's client does, step by step, and
 * records each outcome in window.outcome. The natter base URL comes in the query string. */
const APP_PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>rooms app</title></head>
<body><p id="state">starting</p>
<script>
window.outcome = { steps: [] };
const note = (step) => { window.outcome.steps.push(step); document.getElementById('state').textContent = step; };
async function run() {
  const params = new URLSearchParams(location.search);
  const natter = params.get('natter');
  const room = params.get('room');
  let login;
  try {
    const response = await fetch(natter + '/api/token/', {
      method: 'POST',
      credentials: 'include',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: params.get('user'), password: params.get('password') }),
    });
    login = await response.json();
    note('login ' + response.status);
  } catch (e) {
    note('login failed: ' + e.name);
  }
  // The WebSocket is tried either way (with whatever token there is), as a client retries.
  const token = login?.access ?? 'none';
  if (login?.access) {
    const me = await (await fetch(natter + '/api/v1/me', { headers: { authorization: 'Bearer ' + token } })).json();
    window.outcome.me = me;
    note('me ' + me.username);
  }
  const ws = new WebSocket(natter.replace('http', 'ws') + '/api/v1/ws/connect?token=' + token);
  ws.onmessage = (e) => {
    const event = JSON.parse(e.data);
    if (event.type === 'connected') {
      window.outcome.welcome = event;
      note('connected');
      ws.send(JSON.stringify({ type: 'join_room', room }));
      ws.send(JSON.stringify({ type: 'send_message', room, data: { content: 'Hello from another origin' } }));
    } else if (event.type === 'message') {
      window.outcome.message = event;
      note('message');
    }
  };
  ws.onclose = (e) => { window.outcome.closed = { code: e.code, opened: !!window.outcome.welcome }; note('closed ' + e.code); };
}
run();
</script></body></html>`;

/** An HTTP server on 127.0.0.1 that serves the app page at /. */
async function appServer() {
  const server = http.createServer((request, response) => {
    if (new URL(request.url, 'http://x').pathname !== '/') {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(APP_PAGE);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

describe('a browser app on its own origin', () => {
  let natter;
  let browser;
  let allowed;
  let other;
  let context;
  const password = 'alice-browser-password';

  before(async () => {
    allowed = await appServer();
    other = await appServer();
    natter = await (await Natter.fresh()).start('127.0.0.1:0', {
      NATTER_WS_ALLOWED_ORIGINS: JSON.stringify([allowed.origin]),
    });
    const admin = await natter.token('admin', await natter.adminPassword());
    await natter.api('POST', '/api/v1/users', { token: admin, body: { username: 'alice', password } });
    await natter.api('POST', '/api/v1/rooms', { token: admin, body: { name: 'channel:456', visibility: 'public' } });
    browser = await launchBrowser();
    context = await newContext(browser);
  });

  after(async () => {
    await context?.close();
    await browser?.close();
    await natter?.stop();
    await natter?.removeDataDir();
    allowed?.server.close();
    other?.server.close();
  });

  const open = async (origin) => {
    const page = await context.newPage();
    const query = new URLSearchParams({ natter: natter.base, user: 'alice', password, room: 'channel:456' });
    await page.goto(`${origin}/?${query}`);
    return page;
  };

  test('an allowed origin logs in, learns its id and chats over the rooms protocol', async () => {
    const page = await open(allowed.origin);
    const outcome = await eventually(
      async () => page.evaluate(() => (window.outcome.message ? window.outcome : null)),
      'the page to see its own message',
    );
    assert.deepEqual(outcome.steps, ['login 200', 'me alice', 'connected', 'message']);
    assert.equal(outcome.welcome.data.user_id, outcome.me.user_id, 'the welcome names the id /me gave');
    assert.equal(outcome.message.data.author_id, outcome.me.user_id, 'its own message, by id');
    assert.equal(outcome.message.data.content, 'Hello from another origin');
    // The login answer's cookie was kept for natter's origin (credentials were allowed).
    const cookies = await context.cookies(natter.base);
    assert.ok(cookies.some((c) => c.name === 'natter_access' && c.httpOnly), JSON.stringify(cookies));
    await page.close();
  });

  test('an origin not listed cannot log in or open the WebSocket, and the log says why', async () => {
    const page = await open(other.origin);
    const outcome = await eventually(
      async () => page.evaluate(() => (window.outcome.closed ? window.outcome : null)),
      'the refused page to give up',
    );
    assert.equal(outcome.steps[0], 'login failed: TypeError', JSON.stringify(outcome));
    assert.equal(outcome.closed.opened, false, JSON.stringify(outcome));
    assert.equal(outcome.welcome, undefined);
    const line = await eventually(
      () => natter.log.split('\n').find((l) => l.includes('WebSocket refused') && l.includes(other.origin)),
      'the refusal in the daemon log',
    );
    assert.match(line, /ws\.allowed_origins/);
    assert.match(line, new RegExp(`host=${natter.address.replace(/[.]/g, '\\.')}`));
    await page.close();
  });
});
