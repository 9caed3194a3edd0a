// natter's built-in web client in headless Chromium against a real natter daemon: two users in
// two browser contexts chat; replies, typing, presence, edits and deletes propagate; markup in a
// message stays text; a room with an image keeps following new messages; history pages in on
// scroll; a reload keeps everything; a daemon restart loses and doubles nothing, including a
// message typed while it was down; a phone-sized screen; short-lived access tokens are renewed
// in-band without reconnecting.
//
// Run: `npm ci && node --test web-client.test.mjs` here, after building natter (NATTER_BIN
// names another binary). Screenshots of the main views land in screenshots/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Natter, launchBrowser, newContext, eventually, screenshot, login, connected, shownMessages,
  openRoom, send, message, seeOnce, assertContiguous, solidPng, atBottom, finish,
} from './harness.mjs';

const XSS = '<img src=x onerror=alert(1)>';

describe('natter web client', () => {
  let natter;
  let browser;
  let adminPassword;
  let adminToken;
  const bobPassword = 'bob-browser-password';
  let admin; // page of the admin's context
  let bob; // page of bob's context
  const contexts = [];

  // The history test seeds 130 messages over HTTP at once: more than a user's message burst.
  const settings = { NATTER_WS_MESSAGE_BURST: '200' };

  before(async () => {
    natter = await (await Natter.fresh()).start('127.0.0.1:0', settings);
    adminPassword = await natter.adminPassword();
    adminToken = await natter.token('admin', adminPassword);
    browser = await launchBrowser();
    for (let i = 0; i < 2; i++) contexts.push(await newContext(browser));
    admin = await contexts[0].newPage();
    bob = await contexts[1].newPage();
  });

  after(() => finish({ contexts, browser, natter }));

  test('the initial admin logs in, adds a user and creates a room', async () => {
    await admin.goto(`${natter.base}/`);
    await admin.locator('#login-form').getByLabel('Username', { exact: true }).waitFor();
    await screenshot(admin, 'login');
    await admin.locator('#login-form').getByLabel('Username', { exact: true }).fill('admin');
    await admin.locator('#login-form').getByLabel('Password', { exact: true }).fill('wrong password');
    await admin.getByRole('button', { name: 'Log in' }).click();
    await admin.getByText('Wrong username or password.').waitFor();
    await admin.locator('#login-form').getByLabel('Password', { exact: true }).fill(adminPassword);
    await admin.getByRole('button', { name: 'Log in' }).click();
    await connected(admin);

    await admin.getByRole('button', { name: 'Users' }).click();
    const form = admin.locator('#new-user-form');
    await form.getByLabel('Username', { exact: true }).fill('bob');
    await form.getByLabel('Password', { exact: true }).fill(bobPassword);
    await form.getByRole('button', { name: 'Add user' }).click();
    await admin.getByText('Added bob.').waitFor();
    await admin.getByRole('button', { name: 'Disable bob' }).waitFor();
    await screenshot(admin, 'users');

    await admin.getByRole('button', { name: 'New room' }).click();
    await admin.getByLabel('Room name').fill('general');
    await admin.getByRole('button', { name: 'Create room' }).click();
    await admin.locator('#room-title', { hasText: '#general' }).waitFor();
    await send(admin, 'hello from admin');
    await seeOnce(admin, 'hello from admin');
  });

  test('a second user joins, and the two chat with typing, presence and replies', async () => {
    await login(bob, natter.base, 'bob', bobPassword);
    await bob.getByRole('button', { name: 'Join general' }).click();
    await bob.locator('#room-title', { hasText: '#general' }).waitFor();
    await seeOnce(bob, 'hello from admin');

    // Typing shows on the other side while bob writes.
    await bob.getByLabel('Message', { exact: true }).fill('hi admin, bob here');
    await bob.getByLabel('Message', { exact: true }).press('End'); // an input event was sent by fill
    await admin.locator('#typing', { hasText: 'bob is typing' }).waitFor();
    await bob.getByLabel('Message', { exact: true }).press('Enter');
    await seeOnce(admin, 'hi admin, bob here');
    await seeOnce(bob, 'hi admin, bob here');
    await admin.locator('#typing', { hasText: /^$/ }).waitFor();

    // Presence: bob shows online in the admin's member list, then away when he says so.
    await admin.locator('.member', { hasText: 'bob' }).locator('.presence-online').waitFor();
    await bob.getByLabel('Your status').selectOption('away');
    await admin.locator('.member', { hasText: 'bob' }).locator('.presence-away').waitFor();
    await bob.getByLabel('Your status').selectOption('online');

    // A reply, keyboard only: focus the message's Reply button and press Enter.
    await message(admin, 'hi admin, bob here').getByRole('button', { name: 'Reply to bob' }).focus();
    await admin.keyboard.press('Enter');
    await admin.locator('#reply-banner', { hasText: 'Replying to bob' }).waitFor();
    await admin.keyboard.type('welcome, bob');
    await admin.keyboard.press('Enter');
    const reply = message(bob, 'welcome, bob');
    await reply.locator('.reply-quote', { hasText: 'bob: hi admin, bob here' }).waitFor();
    await screenshot(admin, 'chat-desktop');
  });

  test('edits and deletes propagate', async () => {
    await message(bob, 'hi admin, bob here').getByRole('button', { name: 'Edit your message' }).click();
    const input = bob.getByLabel('Message', { exact: true });
    assert.equal(await input.inputValue(), 'hi admin, bob here');
    await input.fill('hi admin, bob here (fixed)');
    await input.press('Enter');
    await message(admin, 'hi admin, bob here (fixed)').locator('.edited').waitFor();
    // The admin's reply quotes the new text.
    await message(admin, 'welcome, bob').locator('.reply-quote', { hasText: '(fixed)' }).waitFor();

    await send(bob, 'a regrettable message');
    await seeOnce(admin, 'a regrettable message');
    const own = message(bob, 'a regrettable message');
    await own.getByRole('button', { name: 'Delete your message' }).click();
    await own.getByRole('button', { name: 'Confirm: delete your message' }).click();
    await eventually(async () => (await shownMessages(admin)).some((m) => m.text === 'Message deleted'), 'the tombstone');
    assert.equal((await shownMessages(admin)).filter((m) => m.text === 'a regrettable message').length, 0);
    // Only one's own messages offer Edit and Delete.
    assert.equal(await message(bob, 'hello from admin').getByRole('button', { name: 'Edit your message' }).count(), 0);
  });

  test('markup in a message is shown as text and never runs', async () => {
    await send(admin, XSS);
    for (const page of [admin, bob]) {
      await seeOnce(page, XSS);
      assert.equal(await page.locator('#message-list img').count(), 0, 'no element was made from it');
    }
    assert.deepEqual(contexts[1].dialogs, []);
  });

  test('a busy room reads well: formatting, links, mentions, groups and day separators', async () => {
    const rich = '**bold** and *italic* and `a_b` see https://example.com/x?a=1. and javascript:alert(1) @bob';
    await send(admin, rich);
    await send(admin, '```\nlet x = 1 < 2;\n```\n> quoted <b>');
    const body = message(bob, 'bold and italic and a_b see https://example.com/x?a=1. and javascript:alert(1) @bob').locator('.msg-body');
    await body.waitFor();
    assert.equal(await body.locator('strong').textContent(), 'bold');
    assert.equal(await body.locator('em').textContent(), 'italic');
    assert.equal(await body.locator('code').textContent(), 'a_b');
    const links = body.locator('a');
    assert.equal(await links.count(), 1, 'only the web address is a link');
    assert.equal(await links.getAttribute('href'), 'https://example.com/x?a=1');
    assert.equal(await links.getAttribute('rel'), 'noopener noreferrer');
    assert.equal(await body.locator('.mention.me').textContent(), '@bob', 'a mention of bob is highlighted for bob');
    const block = bob.locator('#message-list li.msg').last().locator('.msg-body');
    assert.equal(await block.locator('pre code').textContent(), 'let x = 1 < 2;');
    assert.equal(await block.locator('blockquote').textContent(), 'quoted <b>');
    assert.equal(await block.locator('b').count(), 0, 'markup in a quote stays text');
    // The second of two quick messages by one author is grouped under the first's header.
    assert.ok(await bob.locator('#message-list li.msg').last().evaluate((li) => li.classList.contains('grouped')));
    assert.equal(await bob.locator('#message-list li.day-separator').first().textContent(), 'Today');
    assert.equal(await bob.locator('#message-list li.day-separator').count(), 1, 'all of it was today');
  });

  test('@ completes a member\'s name in the composer', async () => {
    const input = admin.getByLabel('Message', { exact: true });
    await input.fill('');
    await input.pressSequentially('thanks @b');
    const option = admin.getByRole('option', { name: 'bob' });
    await option.waitFor();
    assert.equal(await input.getAttribute('aria-expanded'), 'true');
    await input.press('Enter');
    assert.equal(await input.inputValue(), 'thanks @bob ', 'Enter completed the name, it did not send');
    assert.equal(await admin.getByRole('listbox', { name: 'Mention someone' }).isVisible(), false);
    await input.pressSequentially('for the fix');
    await input.press('Enter');
    await message(bob, 'thanks @bob for the fix').locator('.mention.me').waitFor();
    // Escape closes the list and leaves the text.
    await input.pressSequentially('@');
    await admin.getByRole('option', { name: 'bob' }).waitFor();
    await input.press('Escape');
    assert.equal(await admin.getByRole('listbox', { name: 'Mention someone' }).isVisible(), false);
    await input.fill('');
  });

  test('reactions are added from the picker, counted on both sides, and taken back', async () => {
    await send(admin, 'who wants cake?');
    const mine = message(admin, 'who wants cake?');
    const theirs = message(bob, 'who wants cake?');
    await theirs.waitFor();
    await theirs.hover();
    await theirs.getByRole('button', { name: /^React to admin/ }).click();
    await theirs.getByRole('button', { name: 'React with 🎉' }).click();
    await mine.getByRole('button', { name: '🎉 1: react' }).waitFor();
    await theirs.getByRole('button', { name: '🎉 1: take back your reaction' }).waitFor();
    assert.equal(await theirs.getByRole('group', { name: 'Pick a reaction' }).count(), 0, 'the picker closed');
    await mine.getByRole('button', { name: '🎉 1: react' }).click();
    await theirs.getByRole('button', { name: '🎉 2: take back your reaction' }).waitFor();
    await theirs.getByRole('button', { name: '🎉 2: take back your reaction' }).click();
    await mine.getByRole('button', { name: '🎉 1: take back your reaction' }).waitFor();
    // Stored: a reload shows the count from history.
    await bob.reload();
    await connected(bob);
    await message(bob, 'who wants cake?').getByRole('button', { name: '🎉 1: react' }).waitFor();
  });

  test('files are attached, downloaded, and images previewed', async () => {
    const text = 'line one\nline two\n';
    await bob.locator('#attach-input').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from(text) });
    const button = admin.getByRole('button', { name: 'Download notes.txt' });
    await button.waitFor();
    const [download] = await Promise.all([admin.waitForEvent('download'), button.click()]);
    assert.equal(download.suggestedFilename(), 'notes.txt');
    const chunks = [];
    for await (const chunk of await download.createReadStream()) chunks.push(chunk);
    assert.equal(Buffer.concat(chunks).toString(), text);

    // A 1x1 PNG is shown inline on both sides, from a blob: URL (the CSP allows no other).
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
    await admin.getByRole('button', { name: 'Attach a file' }).waitFor();
    await admin.locator('#attach-input').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: png });
    for (const page of [admin, bob]) {
      const preview = page.locator('img.attachment-preview[alt="dot.png"]');
      await preview.waitFor();
      await eventually(() => preview.evaluate((img) => img.complete && img.naturalWidth === 1 && img.src.startsWith('blob:')), 'the preview decoded');
    }
    await screenshot(bob, 'attachments');
  });

  test('a pasted or dropped file is uploaded into the room', async () => {
    await admin.locator('#message-input').evaluate((input) => {
      const data = new DataTransfer();
      data.items.add(new File(['from the clipboard'], 'pasted.txt', { type: 'text/plain' }));
      input.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
    });
    await bob.getByRole('button', { name: 'Download pasted.txt' }).waitFor();
    assert.equal(await admin.locator('#message-input').inputValue(), '', 'a pasted file is not pasted as text');
    await admin.locator('#messages').evaluate((target) => {
      const data = new DataTransfer();
      data.items.add(new File(['dragged in'], 'dropped.txt', { type: 'text/plain' }));
      for (const type of ['dragenter', 'dragover', 'drop']) {
        target.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
      }
    });
    await bob.getByRole('button', { name: 'Download dropped.txt' }).waitFor();
    assert.equal(await admin.locator('#room-view.dropping').count(), 0, 'the drop highlight is gone');
  });

  test('a room with an image keeps following new messages', async () => {
    await admin.getByRole('button', { name: 'New room' }).click();
    await admin.getByLabel('Room name').fill('pictures');
    await admin.getByRole('button', { name: 'Create room' }).click();
    await admin.locator('#room-title', { hasText: '#pictures' }).waitFor();
    // Enough text that the room scrolls, then an image 240 px high (the preview's limit) that
    // decodes only after the view first went to the bottom.
    const lines = Array.from({ length: 14 }, (_, i) => `line ${i + 1}`).join('\n');
    for (const n of [1, 2, 3]) await send(admin, `tall ${n}\n${lines}`);
    await admin.locator('#attach-input').setInputFiles({ name: 'wide.png', mimeType: 'image/png', buffer: solidPng(320, 240) });
    await admin.locator('img.attachment-preview[alt="wide.png"]').waitFor();
    await send(admin, 'below the image');
    await seeOnce(admin, 'below the image');

    // Bob comes to the room fresh (a reload, so nothing is cached): the view ends at the
    // bottom once the image is in, and a live message arrives in sight.
    await bob.reload();
    await connected(bob);
    await bob.getByRole('button', { name: 'Join pictures' }).click();
    await bob.locator('#room-title', { hasText: '#pictures' }).waitFor();
    const preview = bob.locator('img.attachment-preview[alt="wide.png"]');
    await preview.waitFor();
    await eventually(() => preview.evaluate((img) => img.complete && img.naturalHeight === 240), 'the preview decoded');
    await eventually(() => atBottom(bob), 'the view at the bottom after the image loaded');
    await send(admin, 'live after the image');
    await seeOnce(bob, 'live after the image');
    await eventually(() => atBottom(bob), 'the view following the live message');
    await message(bob, 'live after the image').evaluate((li) => {
      const view = document.getElementById('messages').getBoundingClientRect();
      const box = li.getBoundingClientRect();
      if (box.bottom > view.bottom + 1 || box.top < view.top) throw new Error('live message out of sight');
    });
    await openRoom(bob, '#general');
  });

  test('a member leaves a room; its owner removes members and deletes it', async () => {
    await openRoom(bob, '#pictures');
    await bob.getByRole('button', { name: 'Room', exact: true }).click();
    const menu = bob.getByRole('group', { name: 'Room settings' });
    await menu.getByText('admin (owner)').waitFor();
    assert.equal(await menu.getByRole('button', { name: /^Remove / }).count(), 0, 'a member removes no one');
    assert.equal(await menu.getByRole('button', { name: 'Delete room' }).isVisible(), false);
    await menu.getByRole('button', { name: 'Leave room' }).click();
    await bob.getByRole('button', { name: 'Join pictures' }).waitFor();
    await bob.getByRole('button', { name: 'Join pictures' }).click();
    await bob.locator('#room-title', { hasText: '#pictures' }).waitFor();

    await admin.reload();
    await connected(admin);
    await openRoom(admin, '#pictures');
    await admin.getByRole('button', { name: 'Room', exact: true }).click();
    const own = admin.getByRole('group', { name: 'Room settings' });
    await own.getByRole('button', { name: 'Remove bob from the room' }).click();
    await own.getByRole('button', { name: 'Remove bob from the room' }).waitFor({ state: 'detached' });
    await own.getByRole('button', { name: 'Delete room' }).click();
    await own.getByRole('button', { name: 'Really delete #pictures?' }).click();
    await admin.locator('#sidebar').getByRole('button', { name: /^#pictures/ }).waitFor({ state: 'detached' });
    // Bob's client hears that the room is gone.
    await bob.reload();
    await connected(bob);
    await bob.locator('#sidebar').getByRole('button', { name: /^#general/ }).waitFor();
    assert.equal(await bob.getByRole('button', { name: /pictures/ }).count(), 0, 'the room is gone for bob too');
    await openRoom(bob, '#general');
    await openRoom(admin, '#general');
  });

  test('direct messages reach the other user with an unread count', async () => {
    await admin.getByLabel('Username to message').fill('bob');
    await admin.getByRole('button', { name: 'Message', exact: true }).click();
    await admin.locator('#room-title', { hasText: '@bob' }).waitFor();
    await send(admin, 'psst, bob');
    await seeOnce(admin, 'psst, bob');
    // Bob is in #general: the new conversation appears with one unread message.
    await bob.locator('#dm-list').getByRole('button', { name: '@admin, 1 unread' }).waitFor();
    await openRoom(bob, '@admin');
    await seeOnce(bob, 'psst, bob');
    await bob.locator('#dm-list').getByRole('button', { name: /^@admin$/ }).waitFor();
  });

  test('the notifications inbox shows what an admin sent', async () => {
    await natter.api('POST', '/api/v1/notifications', {
      token: adminToken,
      body: { username: 'bob', title: 'Maintenance tonight', message: `Back at 22:00 ${XSS}`, level: 'warning' },
    });
    await bob.getByRole('button', { name: 'Notifications, 1 unread' }).waitFor();
    await bob.getByRole('button', { name: 'Notifications, 1 unread' }).click();
    await bob.getByText('Maintenance tonight').waitFor();
    await bob.getByText(`Back at 22:00 ${XSS}`).waitFor();
    await screenshot(bob, 'inbox');
    await bob.getByRole('button', { name: 'Mark read' }).click();
    await bob.getByRole('button', { name: /^Notifications$/ }).waitFor();
  });

  test('older history loads on scroll, each message once and in order', async () => {
    await natter.api('POST', '/api/v1/rooms', { token: adminToken, body: { name: 'busy' } });
    for (let i = 1; i <= 130; i++) {
      await natter.api('POST', '/api/v1/rooms/busy/messages', {
        token: adminToken,
        body: { content: `line ${i}`, client_msg_id: `seed-${i}` },
      });
    }
    await bob.getByRole('button', { name: 'Refresh the room list' }).click();
    await bob.getByRole('button', { name: 'Join busy' }).click();
    await bob.locator('#room-title', { hasText: '#busy' }).waitFor();
    await seeOnce(bob, 'line 130');
    const first = await shownMessages(bob);
    assert.ok(first.length < 130, `only recent pages at first (${first.length})`);
    const all = await eventually(async () => {
      await bob.locator('#messages').evaluate((el) => { el.scrollTop = 0; });
      const list = await shownMessages(bob);
      return list.length === 130 ? list : null;
    }, 'all 130 messages after scrolling up');
    assert.deepEqual(all.map((m) => m.text), Array.from({ length: 130 }, (_, i) => `line ${i + 1}`));
    assertContiguous(assert, all);
    await bob.getByText('This is the beginning of the room.').waitFor();
  });

  test('a reload keeps the session, the room and its history', async () => {
    await openRoom(bob, '#general');
    const before = await shownMessages(bob);
    await bob.reload();
    await connected(bob);
    await bob.locator('#room-title', { hasText: '#general' }).waitFor();
    const afterReload = await eventually(async () => {
      const list = await shownMessages(bob);
      return list.length === before.length ? list : null;
    }, 'the same messages after the reload');
    assert.deepEqual(afterReload, before);
  });

  test('a daemon restart loses and doubles nothing, and what was typed offline is sent', async () => {
    await openRoom(admin, '#general');
    const port = new URL(natter.base).port;
    await natter.stop();
    for (const page of [admin, bob]) {
      await page.locator('#connection[data-state="waiting"]').waitFor();
    }
    await send(bob, 'typed while the server was down');
    await bob.locator('li.pending', { hasText: 'typed while the server was down' }).waitFor();
    await bob.locator('#connection-text', { hasText: '1 to send' }).waitFor();
    await screenshot(bob, 'offline');

    await natter.start(`127.0.0.1:${port}`, settings);
    // Posted before the browsers are back: they must get it by resuming, not by reloading.
    await natter.api('POST', '/api/v1/rooms/general/messages', {
      token: await natter.token('admin', adminPassword),
      body: { content: 'posted during the reconnect' },
    });
    for (const page of [admin, bob]) {
      // Skip what is left of the backoff wait when the client shows it is waiting.
      const retry = page.getByRole('button', { name: 'Retry now' });
      if (await retry.isVisible()) await retry.click().catch(() => {});
      await connected(page);
    }
    for (const page of [admin, bob]) {
      await seeOnce(page, 'typed while the server was down');
      const list = await seeOnce(page, 'posted during the reconnect');
      assertContiguous(assert, list);
      assert.equal(new Set(list.map((m) => m.seq)).size, list.length, 'no seq twice');
    }
    await eventually(async () => (await bob.locator('li.pending').count()) === 0, 'an empty outbox');
    await send(admin, 'after the restart');
    // Each side confirms it on its own event (bob's broadcast can be shown before the admin's Ack).
    for (const page of [admin, bob]) await seeOnce(page, 'after the restart');
    // Each text once on both sides (the offline message was not stored twice either).
    const stored = await natter.api('GET', '/api/v1/rooms/general/messages?limit=200', { token: adminToken });
    const texts = stored.messages.map((m) => m.content);
    assert.equal(texts.filter((t) => t === 'typed while the server was down').length, 1);
    const adminList = (await shownMessages(admin)).map((m) => [m.seq, m.text]);
    const bobList = (await shownMessages(bob)).map((m) => [m.seq, m.text]);
    assert.deepEqual(bobList, adminList);
  });

  test('a phone-sized screen shows the room list, then one room', async () => {
    const phone = await newContext(browser, { viewport: { width: 390, height: 780 }, isMobile: true, hasTouch: true });
    contexts.push(phone);
    const page = await phone.newPage();
    await login(page, natter.base, 'bob', bobPassword);
    await page.locator('#sidebar').getByRole('button', { name: /^#general/ }).waitFor();
    assert.ok(await page.locator('#sidebar').isVisible(), 'the room list is the start screen');
    await screenshot(page, 'phone-rooms');
    // The header is one row; status and log-out are in the account menu.
    const rows = await page.locator('#chat-view .topbar').evaluate((bar) => {
      const boxes = [...bar.querySelectorAll(':scope > *')]
        .map((el) => el.getBoundingClientRect()).filter((box) => box.width > 0 && box.height > 0);
      return boxes.every((box) => box.top < boxes[0].bottom && boxes[0].top < box.bottom);
    });
    assert.ok(rows, 'every visible header item is on one row');
    assert.ok(!(await page.getByRole('button', { name: 'Log out' }).isVisible()), 'log-out is in the menu');
    await page.getByRole('button', { name: 'Account' }).click();
    await page.getByRole('button', { name: 'Log out' }).waitFor();
    assert.ok(await page.getByLabel('Your status').isVisible());
    await screenshot(page, 'phone-account-menu');
    await page.keyboard.press('Escape');
    await page.getByRole('button', { name: 'Log out' }).waitFor({ state: 'hidden' });
    await openRoom(page, '#general');
    assert.ok(!(await page.locator('#sidebar').isVisible()), 'one pane at a time');
    // Opening a room does not pop up the on-screen keyboard over it.
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    assert.notEqual(await page.evaluate(() => document.activeElement?.id), 'message-input', 'the composer is not focused');
    await seeOnce(page, 'after the restart');
    // Message actions open on a tap, not all at once.
    const tapped = message(page, 'after the restart');
    assert.equal(await page.locator('#message-list .msg-actions').filter({ visible: true }).count(), 0, 'no actions before a tap');
    await tapped.locator('.msg-body').tap();
    await tapped.getByRole('button', { name: /^Reply to / }).waitFor();
    assert.equal(await page.locator('#message-list .msg-actions').filter({ visible: true }).count(), 1, 'the tapped message\'s actions only');
    await tapped.locator('.msg-body').tap();
    await tapped.getByRole('button', { name: /^Reply to / }).waitFor({ state: 'hidden' });
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `no horizontal scrolling (${width}px)`);
    await screenshot(page, 'phone-room');
    await page.getByRole('button', { name: /^Rooms/ }).click();
    await page.locator('#sidebar').waitFor();
  });
});

describe('token renewal', () => {
  test('short-lived access tokens are renewed in-band, on one connection', async () => {
    const natter = await Natter.fresh();
    // Tokens live 8 s; the server warns 4 s before expiry and closes 2 s after it.
    await natter.start('127.0.0.1:0', {
      NATTER_AUTH_ACCESS_TOKEN_TTL_SECS: '8',
      NATTER_WS_EXPIRY_WARNING_SECS: '4',
      NATTER_WS_EXPIRY_GRACE_SECS: '2',
    });
    const browser = await launchBrowser();
    try {
      const context = await newContext(browser);
      const page = await context.newPage();
      const sockets = [];
      page.on('websocket', (socket) => sockets.push(socket.url()));
      await login(page, natter.base, 'admin', await natter.adminPassword());
      const tokens = new Set();
      const token = () => page.evaluate(() => JSON.parse(sessionStorage.getItem('natter.session')).access);
      tokens.add(await token());
      // Three renewals: well past the first token's expiry and grace.
      await eventually(async () => {
        tokens.add(await token());
        return tokens.size >= 4;
      }, 'three renewed access tokens', 40_000);
      assert.equal(sockets.length, 1, `one WebSocket all along: ${sockets}`);
      assert.equal(await page.locator('#connection').getAttribute('data-state'), 'online');
      await page.getByRole('button', { name: 'New room' }).click();
      await page.getByLabel('Room name').fill('renewed');
      await page.getByRole('button', { name: 'Create room' }).click();
      await send(page, 'still here');
      await seeOnce(page, 'still here');
      assert.equal(sockets.length, 1);
      assert.deepEqual(context.dialogs, []);
      assert.deepEqual(context.errors, []);
    } finally {
      await browser.close();
      await natter.stop();
      await natter.removeDataDir();
    }
  });
});
