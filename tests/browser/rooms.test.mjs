// Rooms and the people in them, in headless Chromium against a real natter daemon, two users in
// two browser contexts: messages show display names with avatars (a picture, loaded without a
// referrer) or initials on a colour; the owner renames the room (its title) and sets a topic
// from the Room menu, and the other user's open view follows live; a plain member has neither
// menu entry; the header fits a phone-sized screen.
//
// Run: `npm ci && node --test rooms.test.mjs` here, after building natter.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Natter, launchBrowser, newContext, eventually, screenshot, login, message, seeOnce, solidPng, finish,
} from './harness.mjs';

const AVATAR = 'https://avatars.example/carol.png';

describe('rooms and people in the web client', () => {
  let natter;
  let browser;
  let carol; // the room's owner
  let dave; // a member
  const contexts = [];
  const avatarRequests = [];

  before(async () => {
    natter = await (await Natter.fresh()).start();
    const adminToken = await natter.token('admin', await natter.adminPassword());
    await natter.api('POST', '/api/v1/users', {
      token: adminToken,
      body: { username: 'carol', password: 'carol-password', display_name: 'Carol Singer', avatar_url: AVATAR },
    });
    await natter.api('POST', '/api/v1/users', {
      token: adminToken,
      body: { username: 'dave', password: 'dave-password', display_name: 'Dave Brown' },
    });
    const carolToken = await natter.token('carol', 'carol-password');
    const daveToken = await natter.token('dave', 'dave-password');
    await natter.api('POST', '/api/v1/rooms', { token: carolToken, body: { name: 'team' } });
    await natter.api('POST', '/api/v1/rooms/team/members/dave', { token: daveToken });
    await natter.api('POST', '/api/v1/rooms/team/messages', { token: carolToken, body: { content: 'morning, all' } });
    await natter.api('POST', '/api/v1/rooms/team/messages', { token: daveToken, body: { content: 'morning, carol' } });

    browser = await launchBrowser();
    for (let i = 0; i < 2; i++) {
      const context = await newContext(browser);
      // The avatar's host, served here (the test network is closed): a real image, and a
      // record of how the page asked for it.
      await context.route('https://avatars.example/**', (route) => {
        avatarRequests.push(route.request().headers());
        return route.fulfill({ status: 200, contentType: 'image/png', body: solidPng(48, 48) });
      });
      contexts.push(context);
    }
    carol = await contexts[0].newPage();
    dave = await contexts[1].newPage();
  });

  after(() => finish({ contexts, browser, natter }));

  test('messages show display names with avatars or initials', async () => {
    await login(carol, natter.base, 'carol', 'carol-password');
    await login(dave, natter.base, 'dave', 'dave-password');
    for (const page of [carol, dave]) {
      await page.locator('#sidebar').getByRole('button', { name: /^#team(,|$)/ }).click();
      await page.locator('#room-title', { hasText: '#team' }).waitFor();
      await seeOnce(page, 'morning, carol');
    }

    const fromCarol = message(dave, 'morning, all');
    await fromCarol.locator('.author', { hasText: 'Carol Singer' }).waitFor();
    assert.equal(await fromCarol.locator('.author').getAttribute('title'), '@carol');
    await fromCarol.locator('.username', { hasText: '@carol' }).waitFor();
    const picture = fromCarol.locator('img.avatar');
    await picture.waitFor();
    assert.equal(await picture.getAttribute('src'), AVATAR);
    assert.equal(await picture.getAttribute('referrerpolicy'), 'no-referrer');
    await eventually(() => picture.evaluate((img) => img.complete && img.naturalWidth === 48), 'the avatar loaded');
    assert.ok(avatarRequests.length > 0, 'the avatar was fetched');
    for (const headers of avatarRequests) assert.equal(headers.referer, undefined, 'no referrer sent');

    const fromDave = message(carol, 'morning, carol');
    await fromDave.locator('.author', { hasText: 'Dave Brown' }).waitFor();
    const initials = fromDave.locator('.avatar.initials');
    await initials.waitFor();
    assert.equal(await initials.textContent(), 'DB');
    const colour = await initials.evaluate((el) => getComputedStyle(el).backgroundColor);
    assert.match(colour, /^rgb/, colour);
    // The same user gets the same colour in the other context.
    const theirs = await message(dave, 'morning, carol').locator('.avatar.initials')
      .evaluate((el) => getComputedStyle(el).backgroundColor);
    assert.equal(theirs, colour);
    await screenshot(carol, 'rooms-people');
  });

  test('a plain member has no Rename or Edit topic', async () => {
    await dave.getByRole('button', { name: 'Room', exact: true }).click();
    await dave.locator('#room-menu').waitFor();
    assert.equal(await dave.getByRole('button', { name: 'Rename' }).count(), 0);
    assert.equal(await dave.getByRole('button', { name: 'Edit topic' }).count(), 0);
    await dave.getByRole('button', { name: 'Room', exact: true }).click();
    await dave.locator('#room-menu').waitFor({ state: 'hidden' });
  });

  test('the owner renames the room and sets its topic; the other view follows live', async () => {
    await carol.getByRole('button', { name: 'Room', exact: true }).click();
    await carol.getByRole('button', { name: 'Rename' }).click();
    const title = carol.getByLabel('Room title', { exact: true });
    await title.fill('Team Room');
    await carol.locator('#room-edit-form').getByRole('button', { name: 'Save' }).click();
    await carol.locator('#room-title', { hasText: 'Team Room' }).waitFor();
    await dave.locator('#room-title', { hasText: 'Team Room' }).waitFor();
    // The sidebar calls it by its title too; the room's name (its id) stays.
    await dave.locator('#sidebar').getByRole('button', { name: /^Team Room(,|$)/ }).waitFor();
    assert.equal(await dave.locator('#room-title').getAttribute('title'), '#team');

    await carol.getByRole('button', { name: 'Room', exact: true }).click();
    await carol.getByRole('button', { name: 'Edit topic' }).click();
    await carol.getByLabel('Topic', { exact: true }).fill('Standup at 10 <b>sharp</b>');
    await carol.getByLabel('Topic', { exact: true }).press('Enter');
    await dave.locator('#room-topic', { hasText: 'Standup at 10 <b>sharp</b>' }).waitFor();
    assert.equal(await dave.locator('#room-topic b').count(), 0, 'the topic is text, not markup');
    await screenshot(dave, 'rooms-topic');

    // Too long: the server's error shows in the form, nothing changes.
    await carol.getByRole('button', { name: 'Room', exact: true }).click();
    await carol.getByRole('button', { name: 'Rename' }).click();
    await carol.getByLabel('Room title', { exact: true }).evaluate((input) => { input.removeAttribute('maxlength'); });
    await carol.getByLabel('Room title', { exact: true }).fill('x'.repeat(81));
    await carol.locator('#room-edit-form').getByRole('button', { name: 'Save' }).click();
    await carol.locator('#room-edit-error', { hasText: 'at most 80' }).waitFor();
    await carol.locator('#room-edit-form').getByRole('button', { name: 'Cancel' }).click();
    await carol.locator('#room-edit-form').waitFor({ state: 'hidden' });

    // An empty topic clears it.
    await carol.getByRole('button', { name: 'Edit topic' }).click();
    await carol.getByLabel('Topic', { exact: true }).fill('');
    await carol.locator('#room-edit-form').getByRole('button', { name: 'Save' }).click();
    await dave.locator('#room-topic').waitFor({ state: 'hidden' });
    await dave.locator('#room-title', { hasText: 'Team Room' }).waitFor();
  });

  test('the header with title and topic fits a phone-sized screen', async () => {
    const token = await natter.token('carol', 'carol-password');
    await natter.api('PATCH', '/api/v1/rooms/team', {
      token,
      body: { topic: 'A long topic line that has to wrap on a narrow screen instead of widening the page' },
    });
    await dave.setViewportSize({ width: 390, height: 800 });
    await dave.locator('#room-topic', { hasText: 'A long topic line' }).waitFor();
    const overflow = await dave.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than the screen`);
    await message(dave, 'morning, all').locator('img.avatar').waitFor();
    await screenshot(dave, 'rooms-phone');
  });
});
