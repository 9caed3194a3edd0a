//! Accounts in the web client: the account dialog (display name, avatar URL, change password),
//! the admin Users page's rows (online, role, reset password, disable, remove) and invite links
//! (create, copy, list, revoke), and the sign-up page an invite link opens. User content reaches
//! the DOM only through `h`/`textContent` (dom.js).

import { ApiError } from './api.js';
import { h, byId, renderOnChange, formatTime } from './dom.js';

const INVITE_PREFIX = '#invite=';

/** The invite token in the page's address (`/#invite=<token>`), or null. */
export function inviteToken() {
  const hash = location.hash;
  if (!hash.startsWith(INVITE_PREFIX)) return null;
  const token = hash.slice(INVITE_PREFIX.length);
  return /^[A-Za-z0-9_-]{1,128}$/.test(token) ? token : null;
}

function message(e) {
  if (!(e instanceof ApiError)) return String(e?.message ?? e);
  if (e.status === 0) return 'Cannot reach the server.';
  if (e.status === 429) return `Too many attempts. Try again in ${Math.ceil((e.retryAfter ?? 60) / 60)} minute(s).`;
  return e.message;
}

/** Shows the sign-up page for `token`; on success the session holds the new account's tokens
 * and `onSignedUp` runs. */
export function showInvite(session, token, onSignedUp) {
  byId('login-view').hidden = true;
  byId('chat-view').hidden = true;
  byId('invite-view').hidden = false;
  byId('invite-username').focus();
  const form = byId('invite-form');
  form.onsubmit = async (event) => {
    event.preventDefault();
    const error = byId('invite-error');
    const username = byId('invite-username').value.trim().toLowerCase();
    const password = byId('invite-password').value;
    const displayName = byId('invite-display-name').value.trim();
    if (!username || !password) {
      error.textContent = 'Pick a username and a password.';
      return;
    }
    const button = byId('invite-submit');
    button.disabled = true;
    error.textContent = '';
    try {
      await session.acceptInvite(token, username, password, displayName || undefined);
      // The link is spent: a reload must not offer it again.
      history.replaceState(null, '', location.pathname + location.search);
      byId('invite-view').hidden = true;
      onSignedUp();
    } catch (e) {
      error.textContent = message(e);
    } finally {
      button.disabled = false;
    }
  };
}

/** Wires the account dialog and the Users page's invite controls. `env.chat()` is the current
 * Chat (or null); `env.onProfile(user)` runs after a profile change. */
export function initAccounts(env) {
  const dialog = byId('account-dialog');
  byId('account-settings').addEventListener('click', async () => {
    for (const id of ['profile-status', 'profile-error', 'password-status', 'password-error']) byId(id).textContent = '';
    byId('password-old').value = '';
    byId('password-new').value = '';
    dialog.showModal();
    const chat = env.chat();
    if (!chat) return;
    try {
      const me = await chat.session.api('GET', '/api/v1/me?limit=1');
      byId('profile-display-name').value = me.display_name ?? '';
      byId('profile-avatar').value = me.avatar_url ?? '';
    } catch (e) {
      byId('profile-error').textContent = message(e);
    }
  });
  byId('account-dialog-close').addEventListener('click', () => dialog.close());
  byId('account-admin').addEventListener('click', () => byId('users-button').click());

  byId('profile-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const chat = env.chat();
    if (!chat) return;
    byId('profile-status').textContent = '';
    byId('profile-error').textContent = '';
    const name = byId('profile-display-name').value.trim();
    const avatar = byId('profile-avatar').value.trim();
    try {
      const user = await chat.session.api('PATCH', '/api/v1/me', {
        display_name: name || null,
        avatar_url: avatar || null,
      });
      byId('profile-display-name').value = user.display_name;
      byId('profile-status').textContent = 'Profile saved.';
      env.onProfile(user);
    } catch (e) {
      byId('profile-error').textContent = message(e);
    }
  });

  byId('password-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const chat = env.chat();
    if (!chat) return;
    byId('password-status').textContent = '';
    byId('password-error').textContent = '';
    const oldPassword = byId('password-old').value;
    const newPassword = byId('password-new').value;
    if (!oldPassword || !newPassword) {
      byId('password-error').textContent = 'Enter your current and your new password.';
      return;
    }
    try {
      await chat.session.api('POST', '/api/v1/me/password', { old_password: oldPassword, new_password: newPassword });
      byId('password-old').value = '';
      byId('password-new').value = '';
      byId('password-status').textContent = 'Password changed. Your other sessions were logged out.';
    } catch (e) {
      byId('password-error').textContent = e.status === 403 ? 'The current password is wrong.' : message(e);
    }
  });

  // ----- admins: invites and the users list -----

  const users = {
    invites: [],
    resetting: null, // username whose reset-password form is open
    confirmRemove: null, // username whose Remove waits for a second press
  };
  env.usersState = users;

  const loadInvites = async () => {
    const chat = env.chat();
    if (!chat) return;
    users.invites = (await chat.session.api('GET', '/api/v1/invites')).invites;
    renderInvites(env);
  };
  env.loadInvites = loadInvites;

  const refresh = () => {
    const chat = env.chat();
    if (!chat) return;
    byId('users-error').textContent = '';
    Promise.all([chat.loadUsers(), loadInvites()]).catch((e) => { byId('users-error').textContent = message(e); });
  };
  byId('users-button').addEventListener('click', () => loadInvites().catch(() => {}));
  byId('users-refresh').addEventListener('click', refresh);
  // Who is online changes by itself: the open Users page re-reads the list now and then.
  setInterval(() => {
    if (env.usersOpen() && document.visibilityState === 'visible') refresh();
  }, 5000);

  byId('invite-create-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const chat = env.chat();
    if (!chat) return;
    byId('invite-create-error').textContent = '';
    byId('invite-status').textContent = '';
    try {
      const invite = await chat.session.api('POST', '/api/v1/invites', { role: byId('invite-role').value });
      const link = new URL(invite.url, location.href).href;
      byId('invite-link').value = link;
      byId('invite-link-box').hidden = false;
      byId('invite-status').textContent = `Invite link created; it works once, until ${formatTime(invite.expires_at * 1000)}.`;
      await loadInvites();
    } catch (e) {
      byId('invite-create-error').textContent = message(e);
    }
  });
  byId('invite-copy').addEventListener('click', async () => {
    const input = byId('invite-link');
    try {
      // A clipboard that never answers (a permission prompt nobody sees) counts as none.
      await Promise.race([
        navigator.clipboard.writeText(input.value),
        new Promise((resolve, reject) => { setTimeout(() => reject(new Error('no clipboard')), 3000); }),
      ]);
      byId('invite-status').textContent = 'Link copied.';
    } catch {
      // No clipboard permission (or no secure context): select it for a manual copy.
      input.select();
      byId('invite-status').textContent = 'Select the link and copy it.';
    }
  });
}

function renderInvites(env) {
  const invites = env.usersState.invites;
  renderOnChange(byId('invite-list'), JSON.stringify(invites.map((i) => i.id)), () => (invites.length
    ? invites.map((invite) => h('li', { class: 'user-row' },
      h('span', { text: `Invite ${invite.id}` }),
      h('span', { class: 'tag', text: invite.role }),
      h('span', { class: 'hint', text: `until ${formatTime(invite.expires_at * 1000)}` }),
      h('span', { class: 'spacer' }),
      h('button', {
        type: 'button',
        class: 'small',
        'aria-label': `Revoke invite ${invite.id}`,
        onclick: async () => {
          try {
            await env.chat().session.api('DELETE', `/api/v1/invites/${invite.id}`);
            await env.loadInvites();
          } catch (e) {
            byId('invite-create-error').textContent = message(e);
          }
        },
      }, 'Revoke')))
    : h('li', { class: 'hint', text: 'No pending invites.' })));
}

/** The admin Users page's list: role, disabled, online, and the actions on each user. */
export function renderUserList(env, chat) {
  const state = env.usersState;
  const list = chat.users ?? [];
  const fail = (e) => { byId('users-error').textContent = message(e); };
  const act = (promise) => promise.then(() => chat.loadUsers()).catch(fail);
  const signature = JSON.stringify([list.map((u) => [u.username, u.role, u.disabled, u.online]), state.resetting, state.confirmRemove]);
  renderOnChange(byId('user-list'), signature, () => list.map((user) => {
    const self = user.username === chat.me;
    const name = user.username;
    const path = `/api/v1/users/${encodeURIComponent(name)}`;
    const row = h('li', { class: `user-row${user.disabled ? ' disabled' : ''}`, dataset: { username: name } },
      h('span', { class: 'user-name', text: name }),
      user.display_name && user.display_name !== name ? h('span', { class: 'hint', text: user.display_name }) : null,
      h('span', { class: `tag${user.online ? ' online' : ''}`, text: user.online ? 'online' : 'offline' }),
      user.disabled ? h('span', { class: 'tag', text: 'disabled' }) : null,
      h('span', { class: 'spacer' }),
      h('label', { class: 'visually-hidden', for: `role-${name}`, text: `Role of ${name}` }),
      h('select', {
        id: `role-${name}`,
        onchange: (event) => act(chat.session.api('PUT', `${path}/role`, { role: event.currentTarget.value })),
      },
      h('option', { value: 'user', selected: user.role === 'user' ? 'selected' : null }, 'user'),
      h('option', { value: 'admin', selected: user.role === 'admin' ? 'selected' : null }, 'admin')),
      h('button', {
        type: 'button',
        class: 'small',
        'aria-label': `Reset password of ${name}`,
        'aria-expanded': String(state.resetting === name),
        onclick: () => { state.resetting = state.resetting === name ? null : name; env.scheduleRender(); },
      }, 'Reset password'),
      self ? null : h('button', {
        type: 'button',
        class: 'small',
        'aria-label': `${user.disabled ? 'Enable' : 'Disable'} ${name}`,
        onclick: () => chat.setUserEnabled(name, user.disabled).catch(fail),
      }, user.disabled ? 'Enable' : 'Disable'),
      self ? null : h('button', {
        type: 'button',
        class: 'small danger',
        'aria-label': state.confirmRemove === name ? `Confirm removing ${name}` : `Remove ${name}`,
        onclick: () => {
          if (state.confirmRemove !== name) {
            state.confirmRemove = name;
            env.scheduleRender();
            return;
          }
          state.confirmRemove = null;
          act(chat.session.api('DELETE', path));
        },
      }, state.confirmRemove === name ? 'Confirm remove' : 'Remove'));
    if (state.resetting === name) {
      const input = h('input', { type: 'password', id: `reset-${name}`, autocomplete: 'new-password', required: true });
      row.append(h('form', {
        class: 'reset-form',
        onsubmit: (event) => {
          event.preventDefault();
          chat.session.api('POST', `${path}/password`, { password: input.value })
            .then(() => { state.resetting = null; byId('users-error').textContent = ''; return chat.loadUsers(); })
            .then(() => { byId('invite-status').textContent = `Password of ${name} set; their sessions ended.`; })
            .catch(fail);
        },
      },
      h('label', { for: `reset-${name}`, text: `New password for ${name}` }),
      input,
      h('button', { type: 'submit', class: 'small' }, 'Set password')));
    }
    return row;
  }));
}
