// ----- accounts a team runs itself ------------------------------------------------------------
// Two people in two browser contexts: the admin creates an invite link on the Users page, the
// invited person opens it, picks a username and password and lands logged in, edits their
// display name, changes their password and logs in again with the new one; the admin sees them
// online, changes their role, resets a password and revokes an invite. Also at phone width.
//
// Run: `npm ci && node --test accounts.test.mjs` here, after building natter.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Natter, launchBrowser, newContext, eventually, screenshot, login, connected, finish } from './harness.mjs';

describe('accounts in the web client', () => {
  let natter;
  let browser;
  let adminPassword;
  let admin;
  let dana;
  let inviteLink;
  const contexts = [];

  before(async () => {
    natter = await (await Natter.fresh()).start('127.0.0.1:0');
    adminPassword = await natter.adminPassword();
    browser = await launchBrowser();
    contexts.push(await newContext(browser));
    contexts.push(await newContext(browser, { viewport: { width: 390, height: 800 } }));
    admin = await contexts[0].newPage();
    dana = await contexts[1].newPage();
  });

  after(() => finish({ contexts, browser, natter }));

  test('the admin creates an invite link from the Users page', async () => {
    await login(admin, natter.base, 'admin', adminPassword);
    await admin.getByRole('button', { name: 'Admin', exact: true }).click();
    await admin.locator('#users-title').waitFor();
    await admin.getByRole('button', { name: 'Create invite link' }).click();
    const link = admin.getByLabel('Invite link');
    await eventually(async () => (await link.inputValue()).includes('/#invite='), 'the invite link');
    inviteLink = await link.inputValue();
    assert.match(inviteLink, new RegExp(`^${natter.base}/#invite=[A-Za-z0-9_-]{43}$`));
    await contexts[0].grantPermissions(['clipboard-read', 'clipboard-write'], { origin: natter.base });
    await admin.getByRole('button', { name: 'Copy link' }).click();
    await admin.locator('#invite-status', { hasText: 'Link copied.' }).waitFor();
    assert.equal(await admin.evaluate(() => navigator.clipboard.readText()), inviteLink);
    await admin.locator('#invite-list').getByRole('button', { name: /^Revoke invite / }).first().waitFor();
    await screenshot(admin, 'accounts-invite');
  });

  test('the invited person signs up from the link and lands logged in', async () => {
    await dana.goto(inviteLink);
    await dana.getByText('Pick a username and password').waitFor();
    const form = dana.locator('#invite-form');
    await form.getByLabel('Username', { exact: true }).fill('dana');
    await form.getByLabel('Display name (optional)').fill('Dana');
    await form.getByLabel('Password', { exact: true }).fill('short');
    await form.getByRole('button', { name: 'Sign up' }).click();
    await dana.locator('#invite-error', { hasText: 'at least 8' }).waitFor();
    await form.getByLabel('Password', { exact: true }).fill('dana-first-password');
    await form.getByRole('button', { name: 'Sign up' }).click();
    await connected(dana);
    assert.equal(new URL(dana.url()).hash, '', 'the spent link leaves the address bar');
    // The link works once.
    const again = await fetch(`${natter.base}/api/v1/invites/${inviteLink.split('=')[1]}/accept`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'mallory', password: 'mallory-password' }),
    });
    assert.equal(again.status, 404);
  });

  test('they edit their display name and change their password, then log in with the new one', async () => {
    await dana.getByRole('button', { name: 'Account' }).click();
    await dana.getByRole('button', { name: 'Your account' }).click();
    const dialog = dana.locator('#account-dialog');
    await eventually(async () => (await dialog.getByLabel('Display name').inputValue()) === 'Dana', 'the profile loaded');
    await dialog.getByLabel('Display name').fill('Dana D.');
    await dialog.getByLabel('Avatar URL').fill('javascript:alert(1)');
    await dialog.getByRole('button', { name: 'Save profile' }).click();
    await dialog.locator('#profile-error', { hasText: 'avatar URL' }).waitFor();
    await dialog.getByLabel('Avatar URL').fill('');
    await dialog.getByRole('button', { name: 'Save profile' }).click();
    await dialog.getByText('Profile saved.').waitFor();

    await dialog.getByLabel('Current password').fill('not my password');
    await dialog.getByLabel('New password').fill('dana-second-password');
    await dialog.getByRole('button', { name: 'Change password' }).click();
    await dialog.getByText('The current password is wrong.').waitFor();
    await dialog.getByLabel('Current password').fill('dana-first-password');
    await dialog.getByRole('button', { name: 'Change password' }).click();
    await dialog.getByText('Password changed.').waitFor();
    await screenshot(dana, 'accounts-dialog-phone');
    await dialog.getByRole('button', { name: 'Close' }).click();

    // This session still works after the change.
    await connected(dana);
    await dana.getByRole('button', { name: 'Account' }).click();
    await dana.getByRole('button', { name: 'Log out' }).click();
    await dana.locator('#login-form').waitFor();
    await dana.locator('#login-form').getByLabel('Username', { exact: true }).fill('dana');
    await dana.locator('#login-form').getByLabel('Password', { exact: true }).fill('dana-first-password');
    await dana.getByRole('button', { name: 'Log in' }).click();
    await dana.getByText('Wrong username or password.').waitFor();
    await login(dana, natter.base, 'dana', 'dana-second-password');
    const token = await natter.token('dana', 'dana-second-password');
    const me = await natter.api('GET', '/api/v1/me', { token });
    assert.equal(me.display_name, 'Dana D.');
    assert.equal(me.avatar_url, null);
  });

  test("the admin's Users page shows them online and changes their role", async () => {
    await admin.getByRole('button', { name: 'Refresh list' }).click();
    const row = admin.locator('#user-list li[data-username="dana"]');
    await eventually(async () => (await row.textContent()).includes('online'), 'dana online');
    assert.ok((await row.textContent()).includes('Dana D.'));
    await row.getByLabel('Role of dana').selectOption('admin');
    const adminToken = await natter.token('admin', adminPassword);
    await eventually(async () => {
      const { users } = await natter.api('GET', '/api/v1/users', { token: adminToken });
      return users.find((u) => u.username === 'dana')?.role === 'admin';
    }, 'dana made an admin');
    // Her open page reconnects with the new role and offers the admin tools.
    await dana.getByRole('button', { name: 'Account' }).click();
    await dana.getByRole('button', { name: 'Admin', exact: true }).waitFor();
    await row.getByLabel('Role of dana').selectOption('user');

    // Reset a password: the new one logs in.
    await row.getByRole('button', { name: 'Reset password of dana' }).click();
    await row.getByLabel('New password for dana').fill('dana-reset-password');
    await row.getByRole('button', { name: 'Set password', exact: true }).click();
    await admin.getByText('Password of dana set').waitFor();
    assert.ok(await natter.token('dana', 'dana-reset-password'));
    await screenshot(admin, 'accounts-users');

    // Revoke a pending invite.
    await admin.getByRole('button', { name: 'Create invite link' }).click();
    const revoke = admin.locator('#invite-list').getByRole('button', { name: /^Revoke invite / });
    await revoke.first().waitFor();
    await revoke.first().click();
    await admin.locator('#invite-list').getByText('No pending invites.').waitFor();
  });
});
