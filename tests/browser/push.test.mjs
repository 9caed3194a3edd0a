// Web Push in the web client, in headless Chromium against a real natter daemon: the service
// worker /sw.js registers and is active; a push delivered to it through the DevTools protocol
// (ServiceWorker.deliverPushMessage: the browser decrypts nothing here, it hands the data to the
// worker's push event as it would after decrypting) shows a notification with the sender, the
// room and the text; a click on it opens its room in the open tab; a #room=NAME address (what a
// click opens when no tab is open) opens the room after login; the account menu's push control
// asks for permission only when used and says in words why it could not turn on; the room menu
// mutes and unmutes a room.
//
// The mute control and the subscription need natter's push endpoints: those cases are skipped
// (loudly) while GET /api/v1/push/key answers 404.
//
// Run: `npm ci && node --test push.test.mjs` here, after building natter.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Natter, launchBrowser, newContext, eventually, screenshot, login, openRoom, connected, finish, WAIT_MS,
} from './harness.mjs';

/** Counts the page's Notification.requestPermission calls (the real one still runs). */
function countPermissionRequests() {
  const real = window.Notification?.requestPermission?.bind(window.Notification);
  window.__permissionRequests = 0;
  if (!real) return;
  window.Notification.requestPermission = (...args) => {
    window.__permissionRequests += 1;
    return real(...args);
  };
}

/** The notifications the service worker's registration shows, as seen from the page. */
function shownNotifications(page) {
  return page.evaluate(async () => {
    const registration = await navigator.serviceWorker.ready;
    const notes = await registration.getNotifications();
    return notes.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data, icon: n.icon }));
  });
}

// Started here, not in before(): whether the server side is there decides which cases skip.
const natter = await (await Natter.fresh()).start();
const serverHasPush = (await fetch(`${natter.base}/api/v1/push/key`)).status !== 404;
const NEEDS_SERVER = 'needs the server side of push: GET /api/v1/push/key is 404 in this natter';
if (!serverHasPush) console.warn(`\n*** SKIPPING push cases: ${NEEDS_SERVER} ***\n`);

describe('web push in the web client', () => {
  let browser;
  let context;
  let bob;
  let cdp;
  let registrationId;
  const contexts = [];
  const password = (name) => `${name}-browser-password`;

  before(async () => {
    const adminToken = await natter.token('admin', await natter.adminPassword());
    for (const username of ['alice', 'bob']) {
      await natter.api('POST', '/api/v1/users', { token: adminToken, body: { username, password: password(username) } });
    }
    const aliceToken = await natter.token('alice', password('alice'));
    await natter.api('POST', '/api/v1/rooms', { token: aliceToken, body: { name: 'general', visibility: 'public' } });
    await natter.api('POST', '/api/v1/rooms/general/members/bob', { token: aliceToken });
    await natter.api('POST', '/api/v1/rooms', { token: aliceToken, body: { name: 'random', visibility: 'public' } });
    await natter.api('POST', '/api/v1/rooms/random/members/bob', { token: aliceToken });
    browser = await launchBrowser();
    context = await newContext(browser);
    contexts.push(context);
    await context.addInitScript(countPermissionRequests);
    bob = await context.newPage();
    await login(bob, natter.base, 'bob', password('bob'));
  });

  after(() => finish({ contexts, browser, natter }));

  test('the service worker registers at / and is active, without asking for permission', async () => {
    const worker = await bob.evaluate(async () => {
      const registration = await navigator.serviceWorker.ready;
      return { scope: registration.scope, script: registration.active?.scriptURL, state: registration.active?.state };
    });
    assert.deepEqual(worker, { scope: `${natter.base}/`, script: `${natter.base}/sw.js`, state: 'activated' });
    assert.equal(await bob.evaluate(() => window.__permissionRequests), 0, 'no permission asked on load');
    assert.equal(await bob.evaluate(() => Notification.permission), 'default');
    await bob.locator('#account').getByRole('button', { name: 'Push notifications: off' }).waitFor();
  });

  test('a push delivered through the DevTools protocol shows a notification', async () => {
    cdp = await context.newCDPSession(bob);
    const registered = new Promise((resolve) => {
      cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => {
        const ours = registrations.find((r) => r.scopeURL === `${natter.base}/` && !r.isDeleted);
        if (ours) resolve(ours.registrationId);
      });
    });
    await cdp.send('ServiceWorker.enable');
    registrationId = await Promise.race([
      registered,
      new Promise((_, reject) => setTimeout(() => reject(new Error('no workerRegistrationUpdated')), WAIT_MS)),
    ]);
    await context.grantPermissions(['notifications'], { origin: natter.base });
    // One push at a time, each awaited until its notification shows (what a user would see).
    const deliver = async (data, tag) => {
      await cdp.send('ServiceWorker.deliverPushMessage', { origin: natter.base, registrationId, data });
      return eventually(async () => (await shownNotifications(bob)).find((n) => n.tag === tag), `the notification tagged ${tag}`);
    };

    // A mention (the payload natter-protocol(7) documents), then a direct message.
    const mention = await deliver(JSON.stringify({
      kind: 'mention', room: 'general', room_title: null, seq: 1, sender: 'alice', sender_name: 'Alice Liddell',
      text: '@bob the release is out', title: null, url: null, sent_at: Date.now(),
    }), 'general');
    assert.deepEqual(mention, {
      title: 'Alice Liddell in #general', body: '@bob the release is out', tag: 'general',
      data: { room: 'general', url: null }, icon: `${natter.base}/assets/icon.svg`,
    });
    const direct = await deliver(JSON.stringify({
      kind: 'direct', room: 'dm:alice:bob', room_title: null, seq: 1, sender: 'alice', sender_name: null,
      text: 'lunch at noon?', title: null, url: null, sent_at: Date.now(),
    }), 'dm:alice:bob');
    assert.deepEqual([direct.title, direct.body], ['alice', 'lunch at noon?']);
    // A mention in a titled room names the room by its title.
    const titled = await deliver(JSON.stringify({
      kind: 'mention', room: 'random', room_title: 'Water cooler', seq: 2, sender: 'alice', sender_name: null,
      text: '@bob coffee?', title: null, url: null, sent_at: Date.now(),
    }), 'random');
    assert.equal(titled.title, 'alice in Water cooler');

    // A notification from the inbox (no room), and a payload that is not JSON: both still show.
    const inbox = await deliver(JSON.stringify({
      kind: 'notification', room: null, room_title: null, seq: null, sender: null, sender_name: null,
      text: 'Backup finished', title: 'Nightly backup', url: null, sent_at: Date.now(),
    }), 'natter');
    assert.deepEqual([inbox.title, inbox.body], ['Nightly backup', 'Backup finished']);
    await bob.evaluate(async () => {
      for (const n of await (await navigator.serviceWorker.ready).getNotifications({ tag: 'natter' })) n.close();
    });
    await eventually(async () => !(await shownNotifications(bob)).some((n) => n.tag === 'natter'), 'the inbox notification closed');
    const generic = await deliver('this is not JSON {', 'natter');
    assert.equal(generic.title, 'natter');
    assert.ok(generic.body.length > 0);
    assert.equal((await shownNotifications(bob)).length, 4, 'general, the direct room, random, the generic one');
  });

  test('a click on the notification opens its room in the open tab', async () => {
    await openRoom(bob, '#random');
    const [worker] = context.serviceWorkers().length
      ? context.serviceWorkers()
      : [await context.waitForEvent('serviceworker', { timeout: WAIT_MS })];
    // NOT A REAL CLICK: headless Chromium cannot click a system notification. In the service
    // worker we dispatch a real NotificationEvent('notificationclick') carrying the notification
    // object from self.registration.getNotifications(), which runs the worker's own handler.
    const dispatched = await worker.evaluate(async () => {
      const [notification] = await self.registration.getNotifications({ tag: 'general' });
      if (!notification) return false;
      self.dispatchEvent(new NotificationEvent('notificationclick', { notification }));
      return true;
    });
    assert.ok(dispatched, 'the worker has the notification');
    await bob.locator('#room-title', { hasText: '#general' }).waitFor();
    await bob.locator('#sidebar button[data-room="general"][aria-current="page"]').waitFor();
    await eventually(async () => !(await shownNotifications(bob)).some((n) => n.tag === 'general'), 'the clicked notification closed');
    await screenshot(bob, 'push-click-opened-room');
  });

  test('a #room= address (a click with no tab open) opens the room after login', async () => {
    const page = await context.newPage();
    await page.goto(`${natter.base}/#room=random`);
    await page.locator('#login-form').getByLabel('Username', { exact: true }).fill('bob');
    await page.locator('#login-form').getByLabel('Password', { exact: true }).fill(password('bob'));
    await page.getByRole('button', { name: 'Log in' }).click();
    await connected(page);
    await page.locator('#room-title', { hasText: '#random' }).waitFor();
    assert.equal(await page.evaluate(() => location.hash), '', 'the hash is cleared');
    await page.close();
  });

  test('the push control asks for permission when used and says why it could not turn on', async () => {
    const control = bob.locator('#account').getByRole('button', { name: /^Push notifications: / });
    await control.click();
    await eventually(() => bob.evaluate(() => window.__permissionRequests === 1), 'the control asked for permission');
    // Headless Chromium has no push service: the subscription fails, and the page says so.
    const expected = serverHasPush ? /could not subscribe to its push service/ : /does not send push notifications/;
    await eventually(async () => expected.test(await bob.locator('#push-status').textContent()), 'the reason shown');
    await bob.locator('#account').getByRole('button', { name: 'Push notifications: off' }).waitFor();
    await screenshot(bob, 'push-control-error');
  });

  test('the room menu mutes and unmutes the room', { skip: !serverHasPush && NEEDS_SERVER }, async () => {
    const bobToken = await natter.token('bob', password('bob'));
    const mutedOnServer = async () => (await natter.api('GET', '/api/v1/rooms', { token: bobToken }))
      .rooms.find((r) => r.name === 'general').muted;
    await openRoom(bob, '#general');
    await bob.getByRole('button', { name: 'Room', exact: true }).click();
    await bob.getByRole('button', { name: 'Mute notifications' }).click();
    await bob.locator('#sidebar').getByRole('button', { name: '#general, muted' }).waitFor();
    await eventually(async () => (await mutedOnServer()) === true, 'the server has general muted');
    await bob.getByRole('button', { name: 'Unmute notifications' }).click();
    await bob.locator('#sidebar').getByRole('button', { name: /^#general$/ }).waitFor();
    await eventually(async () => (await mutedOnServer()) === false, 'the server has general unmuted');
  });
});
