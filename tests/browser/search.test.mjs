// Search in the web client (issue 20, item 6) against a real natter daemon: a user types in
// the search box, sees the hit with its words marked, clicks it, and the room opens with the
// message loaded (history paged back to it), scrolled into view and highlighted. A private
// room's message is found by its member only. The same on a phone-sized screen, where the
// search box is in the Rooms menu.
//
// Run: `npm ci && node --test search.test.mjs` here, after building natter.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Natter, launchBrowser, newContext, eventually, screenshot, login, finish } from './harness.mjs';

const TARGET = 'the quarterly zebra report is ready for review';
const SECRET = 'zebra report draft, keep it quiet';

describe('search in the web client', () => {
  let natter;
  let browser;
  let adminPassword;
  const bobPassword = 'bob-search-password';
  const contexts = [];
  let bob; // desktop
  let admin; // phone

  before(async () => {
    // The seed posts 160 messages at once: more than a user's message burst.
    natter = await (await Natter.fresh()).start('127.0.0.1:0', { NATTER_WS_MESSAGE_BURST: '400' });
    adminPassword = await natter.adminPassword();
    const token = await natter.token('admin', adminPassword);
    await natter.api('POST', '/api/v1/users', { token, body: { username: 'bob', password: bobPassword } });
    await natter.api('POST', '/api/v1/rooms', { token, body: { name: 'general', visibility: 'public' } });
    await natter.api('POST', '/api/v1/rooms', { token, body: { name: 'secret', visibility: 'private' } });
    const post = (room, content) => natter.api('POST', `/api/v1/rooms/${room}/messages`, { token, body: { content } });
    await post('general', 'an early hello');
    await post('general', TARGET);
    // Enough after it that the hit is not in the room's first page (50): the jump pages back.
    for (let i = 0; i < 150; i++) await post('general', `filler message number ${i}`);
    await post('secret', SECRET);
    browser = await launchBrowser();
    contexts.push(await newContext(browser));
    contexts.push(await newContext(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true }));
    bob = await contexts[0].newPage();
    admin = await contexts[1].newPage();
  });

  after(() => finish({ contexts, browser, natter }));

  test('a hit is shown with its words marked, and clicking it opens the room at the message', async () => {
    await login(bob, natter.base, 'bob', bobPassword);
    const box = bob.getByRole('searchbox', { name: 'Search messages' });
    await box.fill('Zebra rep');
    await box.press('Enter');
    await bob.locator('#search-title', { hasText: 'Search: Zebra rep' }).waitFor();
    const hits = bob.locator('#search-list li.search-hit');
    await bob.locator('#search-status', { hasText: '1 message found' }).waitFor();
    assert.equal(await hits.count(), 1, 'the private room is not searched for bob');
    const hit = hits.first();
    assert.equal(await hit.locator('.msg-body').textContent(), TARGET);
    assert.deepEqual(await hit.locator('mark').allTextContents(), ['zebra', 'report']);
    assert.match(await hit.locator('.search-room').textContent(), /general/);
    await screenshot(bob, 'search-results');

    await hit.getByRole('button').click();
    await bob.locator('#room-title', { hasText: '#general' }).waitFor();
    const target = bob.locator('#message-list li.msg.jump-target');
    await target.waitFor();
    assert.equal(await target.locator('.msg-body').textContent(), TARGET);
    await eventually(() => target.evaluate((el) => {
      const view = document.getElementById('messages').getBoundingClientRect();
      const box = el.getBoundingClientRect();
      return box.top >= view.top && box.bottom <= view.bottom;
    }), 'the hit scrolled into view');
    // It stays where the reader was taken: the view does not jump back to the newest message.
    assert.equal(await bob.locator('#message-list li.msg.jump-target').count(), 1);
    await screenshot(bob, 'search-jump');
  });

  test('markup in a hit stays text', async () => {
    const token = await natter.token('admin', adminPassword);
    await natter.api('POST', '/api/v1/rooms/general/messages', {
      token, body: { content: 'zebra <img src=x onerror=alert(1)> <b>bold</b>' },
    });
    const box = bob.getByRole('searchbox', { name: 'Search messages' });
    await box.fill('onerror');
    await box.press('Enter');
    const hit = bob.locator('#search-list li.search-hit').first();
    await hit.waitFor();
    assert.equal(await hit.locator('img, b').count(), 0);
    assert.equal(await hit.locator('mark').textContent(), 'onerror');
  });

  test('on a phone the search box is in the Rooms menu, and a member finds the private room too', async () => {
    await login(admin, natter.base, 'admin', adminPassword);
    const menu = admin.getByRole('button', { name: /^Rooms/ });
    if ((await menu.getAttribute('aria-expanded')) !== 'true') await menu.click();
    const box = admin.getByRole('searchbox', { name: 'Search messages' });
    await box.fill('zebra report');
    await box.press('Enter');
    await admin.locator('#search-status', { hasText: '2 messages found' }).waitFor();
    const rooms = await admin.locator('#search-list .search-room').allTextContents();
    assert.equal(rooms.length, 2);
    assert.ok(rooms.some((r) => /secret/.test(r)) && rooms.some((r) => /general/.test(r)), rooms.join());
    // Newest first: the private room's message came last.
    assert.deepEqual(await admin.locator('#search-list .msg-body').allTextContents(), [SECRET, TARGET]);
    const width = await admin.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `no sideways scrolling (${width} px)`);
    await screenshot(admin, 'search-phone');
    await admin.locator('#search-list li.search-hit').nth(1).getByRole('button').click();
    await admin.locator('#room-title', { hasText: '#general' }).waitFor();
    const target = admin.locator('#message-list li.msg.jump-target');
    await target.waitFor();
    assert.equal(await target.locator('.msg-body').textContent(), TARGET);
    assert.ok(await target.isVisible());
  });
});
