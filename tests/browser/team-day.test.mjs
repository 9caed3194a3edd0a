// A team's first day, end to end, as two people in two browser contexts against a real natter
// daemon (issue 20's "Done when"): the admin creates an invite link; the invited person signs up
// from it, changes their password; the admin mentions them and the mention raises a desktop
// notification that opens the room; they react; search finds the message and jumps to it;
// their own messages leave no unread badge after a reload; and a room with an image keeps
// following new messages. Each step is a separate test in order: a failure names the step.
//
// Run: `npm ci && node --test team-day.test.mjs` here, after building natter.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Natter, launchBrowser, newContext, eventually, screenshot, login, connected, openRoom, send,
  message, seeOnce, solidPng, atBottom, finish,
} from './harness.mjs';

/** Records each Notification the page constructs, around the browser's own constructor. */
function observeNotifications() {
  const Real = window.Notification;
  window.__notes = [];
  class Observed extends Real {
    constructor(title, options = {}) {
      super(title, options);
      window.__notes.push({ title, body: options.body, tag: options.tag });
      window.__lastNote = this;
    }
  }
  Object.defineProperty(Observed, 'permission', { get: () => Real.permission });
  Observed.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Observed;
}

/** Opens the account menu where it is folded away (narrow screens); on a desktop its entries
 * are in the header already. */
async function accountMenu(page) {
  const toggle = page.getByRole('button', { name: 'Account', exact: true });
  if (await toggle.isVisible()) await toggle.click();
}

const MENTION = '@erin the zebra rollout plan is in the doc, can you check it?';

describe("a team's first day", () => {
  let natter;
  let browser;
  let adminPassword;
  let admin; // the admin's page, desktop
  let erin; // the invited person's page, desktop
  let erinContext;
  let inviteLink;
  const contexts = [];
  const erinPassword = 'erin-second-password';

  before(async () => {
    // The search step seeds 30 messages at typing speed no person has: more than the burst.
    natter = await (await Natter.fresh()).start('127.0.0.1:0', { NATTER_WS_MESSAGE_BURST: '200' });
    adminPassword = await natter.adminPassword();
    browser = await launchBrowser();
    contexts.push(await newContext(browser));
    erinContext = await newContext(browser);
    contexts.push(erinContext);
    await erinContext.addInitScript(observeNotifications);
    admin = await contexts[0].newPage();
    erin = await erinContext.newPage();
  });

  after(() => finish({ contexts, browser, natter }));

  test('the admin creates a room and an invite link', async () => {
    await login(admin, natter.base, 'admin', adminPassword);
    await admin.getByRole('button', { name: 'New room' }).click();
    await admin.getByLabel('Room name').fill('team');
    await admin.getByRole('button', { name: 'Create room' }).click();
    await admin.locator('#room-title', { hasText: '#team' }).waitFor();
    await send(admin, 'welcome to the team room');
    await seeOnce(admin, 'welcome to the team room');

    await admin.getByRole('button', { name: 'Admin', exact: true }).click();
    await admin.locator('#users-title').waitFor();
    await admin.getByRole('button', { name: 'Create invite link' }).click();
    const link = admin.getByLabel('Invite link');
    await eventually(async () => (await link.inputValue()).includes('/#invite='), 'the invite link');
    inviteLink = await link.inputValue();
  });

  test('the invited person signs up from the link and changes their password', async () => {
    await erin.goto(inviteLink);
    await erin.getByText('Pick a username and password').waitFor();
    const form = erin.locator('#invite-form');
    await form.getByLabel('Username', { exact: true }).fill('erin');
    await form.getByLabel('Display name (optional)').fill('Erin Example');
    await form.getByLabel('Password', { exact: true }).fill('erin-first-password');
    await form.getByRole('button', { name: 'Sign up' }).click();
    await connected(erin);

    await accountMenu(erin);
    await erin.getByRole('button', { name: 'Your account' }).click();
    const dialog = erin.locator('#account-dialog');
    await dialog.getByLabel('Current password').fill('erin-first-password');
    await dialog.getByLabel('New password').fill(erinPassword);
    await dialog.getByRole('button', { name: 'Change password' }).click();
    await dialog.getByText('Password changed.').waitFor();
    await dialog.getByRole('button', { name: 'Close' }).click();
    // The old password no longer logs in; the new one does.
    await assert.rejects(natter.token('erin', 'erin-first-password'));
    assert.ok(await natter.token('erin', erinPassword));

    // The admin adds erin to the room; she joins it from her list.
    const adminToken = await natter.token('admin', adminPassword);
    await natter.api('POST', '/api/v1/rooms/team/members/erin', { token: adminToken });
    await openRoom(erin, '#team');
    await seeOnce(erin, 'welcome to the team room');
  });

  test('a mention of her raises a desktop notification that opens the room', async () => {
    await accountMenu(erin);
    await erin.getByRole('button', { name: 'Enable desktop notifications' }).click();
    await erinContext.grantPermissions(['notifications'], { origin: natter.base });
    await erin.getByRole('button', { name: 'Desktop notifications on' }).waitFor();
    // She looks at another room while the admin writes in #team.
    await erin.getByRole('button', { name: 'New room' }).click();
    await erin.getByLabel('Room name').fill('erin-notes');
    await erin.getByRole('button', { name: 'Create room' }).click();
    await erin.locator('#room-title', { hasText: '#erin-notes' }).waitFor();

    await openRoom(admin, '#team');
    await send(admin, MENTION);
    await seeOnce(admin, MENTION);
    const note = await eventually(() => erin.evaluate(() => window.__notes[0]), 'a Notification');
    assert.equal(note.tag, 'team');
    assert.match(note.title, /admin/);
    assert.equal(note.body, MENTION);
    await erin.locator('#sidebar').getByRole('button', { name: /^#team, 1 unread, 1 mention/ }).waitFor();
    await erin.evaluate(() => window.__lastNote.dispatchEvent(new Event('click')));
    await erin.locator('#room-title', { hasText: '#team' }).waitFor();
    await erin.locator('#message-list li.msg.mentions-me', { hasText: 'zebra rollout plan' }).waitFor();
    await screenshot(erin, 'team-day-mention');
  });

  test('she reacts and the admin sees it', async () => {
    const theirs = message(erin, MENTION);
    await theirs.hover();
    await theirs.getByRole('button', { name: /^React to / }).click();
    await theirs.getByRole('button', { name: 'React with 🎉' }).click();
    await message(admin, MENTION).getByRole('button', { name: '🎉 1: react' }).waitFor();
  });

  test('search finds the message and jumps to it', async () => {
    // Enough after it that the message is out of sight: the jump has to bring it back.
    for (let i = 0; i < 30; i++) await send(admin, `later chatter ${i}`);
    await seeOnce(erin, 'later chatter 29');
    const box = erin.getByRole('searchbox', { name: 'Search messages' });
    await box.fill('zebra rollout');
    await box.press('Enter');
    const hit = erin.locator('#search-list li.search-hit').first();
    await hit.waitFor();
    assert.deepEqual(await hit.locator('mark').allTextContents(), ['zebra', 'rollout']);
    await hit.getByRole('button').click();
    await erin.locator('#room-title', { hasText: '#team' }).waitFor();
    const target = erin.locator('#message-list li.msg.jump-target');
    await target.waitFor();
    assert.equal(await target.locator('.msg-body').textContent(), MENTION);
    await eventually(() => target.evaluate((li) => {
      const view = document.getElementById('messages').getBoundingClientRect();
      const box = li.getBoundingClientRect();
      return box.top >= view.top - 1 && box.bottom <= view.bottom + 1;
    }), 'the found message in sight');
  });

  test('her own messages leave no badge after a reload', async () => {
    await send(erin, 'checked it, looks good');
    await send(erin, 'shipping tomorrow');
    await seeOnce(erin, 'shipping tomorrow');
    await openRoom(erin, '#erin-notes');
    await erin.reload();
    await connected(erin);
    // Its button is named by the room alone: no unread or mention count.
    await erin.locator('#sidebar').getByRole('button', { name: /^#team$/ }).waitFor();
    assert.doesNotMatch(await erin.title(), /\(/, 'no count in the title');
    const { rooms } = await natter.api('GET', '/api/v1/rooms', { token: await natter.token('erin', erinPassword) });
    const row = rooms.find((r) => r.name === 'team');
    assert.equal(row.unread, 0);
    assert.equal(row.mentions, 0);
  });

  test('a room with an image keeps following new messages', async () => {
    await openRoom(admin, '#team');
    const lines = Array.from({ length: 14 }, (_, i) => `line ${i + 1}`).join('\n');
    for (const n of [1, 2]) await send(admin, `tall ${n}\n${lines}`);
    await admin.locator('#attach-input').setInputFiles({ name: 'chart.png', mimeType: 'image/png', buffer: solidPng(320, 240) });
    await admin.locator('img.attachment-preview[alt="chart.png"]').waitFor();
    await erin.reload();
    await connected(erin);
    await openRoom(erin, '#team');
    const preview = erin.locator('img.attachment-preview[alt="chart.png"]');
    await preview.waitFor();
    await eventually(() => preview.evaluate((img) => img.complete && img.naturalHeight === 240), 'the preview decoded');
    await eventually(() => atBottom(erin), 'the view at the bottom after the image loaded');
    await send(admin, 'live after the chart');
    await seeOnce(erin, 'live after the chart');
    await eventually(() => atBottom(erin), 'the view following the live message');
    await screenshot(erin, 'team-day-image-room');
  });
});
