// Mentions and attention in the web client, two users in two browser contexts against a real
// natter daemon: alice mentions bob while bob reads another room; bob sees the "@" badge, the
// title count and an in-page notification (no Notification permission yet), opens the room
// from it and finds the message highlighted; with the permission granted, a mention and a
// direct message construct a Notification (observed by wrapping window.Notification in an init
// script: the real constructor still runs), and clicking it opens the room.
//
// Run: `npm ci && node --test mentions.test.mjs` here, after building natter.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Natter, launchBrowser, newContext, eventually, screenshot, login, openRoom, seeOnce, finish,
} from './harness.mjs';

/** Records every Notification the page constructs (and requestPermission calls), around the
 * browser's own. */
function observeNotifications() {
  const Real = window.Notification;
  window.__notes = [];
  window.__permissionRequests = 0;
  class Observed extends Real {
    constructor(title, options = {}) {
      super(title, options);
      window.__notes.push({ title, body: options.body, tag: options.tag });
      window.__lastNote = this;
    }
  }
  Object.defineProperty(Observed, 'permission', { get: () => Real.permission });
  Observed.requestPermission = (...args) => {
    window.__permissionRequests += 1;
    return Real.requestPermission(...args);
  };
  window.Notification = Observed;
}

describe('mentions and attention', () => {
  let natter;
  let browser;
  let aliceToken;
  let alice;
  let bob;
  let bobContext;
  const contexts = [];
  const password = (name) => `${name}-browser-password`;

  before(async () => {
    natter = await (await Natter.fresh()).start();
    const adminToken = await natter.token('admin', await natter.adminPassword());
    for (const username of ['alice', 'bob']) {
      await natter.api('POST', '/api/v1/users', { token: adminToken, body: { username, password: password(username) } });
    }
    aliceToken = await natter.token('alice', password('alice'));
    const bobToken = await natter.token('bob', password('bob'));
    await natter.api('POST', '/api/v1/rooms', { token: aliceToken, body: { name: 'general', visibility: 'public' } });
    await natter.api('POST', '/api/v1/rooms/general/members/bob', { token: aliceToken });
    await natter.api('POST', '/api/v1/rooms', { token: bobToken, body: { name: 'random', visibility: 'public' } });
    browser = await launchBrowser();
    for (let i = 0; i < 2; i++) contexts.push(await newContext(browser));
    bobContext = contexts[1];
    await bobContext.addInitScript(observeNotifications);
    alice = await contexts[0].newPage();
    bob = await bobContext.newPage();
    await login(alice, natter.base, 'alice', password('alice'));
    await login(bob, natter.base, 'bob', password('bob'));
  });

  after(() => finish({ contexts, browser, natter }));

  test('a mention raises the @ badge, the title count and an in-page notification', async () => {
    await openRoom(bob, '#random');
    await openRoom(alice, '#general');
    const input = alice.getByLabel('Message', { exact: true });
    await input.fill('@bob can you review the release notes?');
    await input.press('Enter');
    await seeOnce(alice, '@bob can you review the release notes?');

    const nav = bob.locator('#sidebar').getByRole('button', { name: '#general, 1 unread, 1 mention' });
    await nav.waitFor();
    assert.equal(await nav.locator('.mention-badge').textContent(), '@1');
    await eventually(async () => (await bob.title()).includes('@1'), 'the title counts the mention');
    // No permission asked on load: the control asks, and until then the page shows a toast.
    assert.equal(await bob.evaluate(() => window.__permissionRequests), 0);
    await bob.getByRole('button', { name: 'Enable desktop notifications' }).waitFor();
    const toast = bob.locator('#toasts .toast', { hasText: 'alice in #general' });
    await toast.waitFor();
    assert.match(await toast.textContent(), /can you review the release notes/);
    assert.equal(await bob.evaluate(() => window.__notes.length), 0, 'no Notification without permission');
    await screenshot(bob, 'mention-toast');

    await toast.getByRole('button', { name: /alice in #general/ }).click();
    await bob.locator('#room-title', { hasText: '#general' }).waitFor();
    await bob.locator('#message-list li.msg.mentions-me', { hasText: 'can you review the release notes?' }).waitFor();
    // Reading clears the badge, here and on the server.
    await bob.locator('#sidebar').getByRole('button', { name: /^#general$/ }).waitFor();
    await eventually(async () => {
      const { rooms } = await natter.api('GET', '/api/v1/rooms', { token: await natter.token('bob', password('bob')) });
      const general = rooms.find((r) => r.name === 'general');
      return general.mentions === 0 && general.unread === 0;
    }, 'the server cleared bob\'s mention');
    // Alice's own message does not highlight for her.
    assert.equal(await alice.locator('#message-list li.msg.mentions-me').count(), 0);
  });

  test('with permission, a mention or a direct message constructs a Notification that opens its room', async () => {
    await bob.getByRole('button', { name: 'Enable desktop notifications' }).click();
    await eventually(() => bob.evaluate(() => window.__permissionRequests === 1), 'the control asked for permission');
    await bobContext.grantPermissions(['notifications'], { origin: natter.base });
    await bob.getByRole('button', { name: 'Desktop notifications on' }).waitFor();

    await openRoom(bob, '#random');
    const input = alice.getByLabel('Message', { exact: true });
    await input.fill('@Bob second ping');
    await input.press('Enter');
    const note = await eventually(() => bob.evaluate(() => window.__notes[0]), 'a Notification');
    assert.deepEqual(note, { title: 'alice in #general', body: '@Bob second ping', tag: 'general' });
    assert.equal(await bob.locator('#toasts .toast').count(), 0, 'no toast when the desktop shows it');
    await bob.evaluate(() => window.__lastNote.dispatchEvent(new Event('click')));
    await bob.locator('#room-title', { hasText: '#general' }).waitFor();
    await bob.locator('#message-list li.msg.mentions-me', { hasText: 'second ping' }).waitFor();

    // A direct message notifies without a mention, also for a conversation bob has not seen.
    await openRoom(bob, '#random');
    await natter.api('POST', '/api/v1/rooms/@bob/messages', { token: aliceToken, body: { content: 'lunch at noon?' } });
    const direct = await eventually(() => bob.evaluate(() => window.__notes[1]), 'a second Notification');
    assert.deepEqual(direct, { title: 'alice (direct message)', body: 'lunch at noon?', tag: 'dm:alice:bob' });
    await bob.locator('#dm-list').getByRole('button', { name: '@alice, 1 unread, 1 mention' }).waitFor();
    await bob.evaluate(() => window.__lastNote.dispatchEvent(new Event('click')));
    await bob.locator('#room-title', { hasText: '@alice' }).waitFor();
    await seeOnce(bob, 'lunch at noon?');
  });
});
