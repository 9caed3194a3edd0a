//! The web client's UI: the login form, the room list, the message view and the composer, the
//! notifications inbox, search (hits with their words marked, a jump to the message), and the
//! connection indicator. State lives in `Chat` (chat.js); this
//! file renders it and turns clicks and keys into calls. User content only ever reaches the DOM
//! through `h`/`textContent` (dom.js).

import { Session, ApiError } from './api.js';
import { Chat, directPeer } from './chat.js';
import { h, byId, replaceChildren, renderOnChange, formatTime } from './dom.js';
import { richText } from './markup.js';
import { initAccounts, inviteToken, renderUserList, showInvite } from './accounts.js';
import { Push } from './push.js';

const session = new Session();
let chat = null;
const push = new Push(() => renderPushButton());

/** UI state that is not chat state. */
const ui = {
  replyTo: null, // seq of the message being answered
  editing: null, // seq of the message being edited
  confirmDelete: null, // seq whose Delete button waits for a second press
  view: 'empty', // 'room' | 'inbox' | 'users' | 'search' | 'empty'
  jumpTo: null, // { room, seq } of a search hit to scroll to once it is rendered
  lastTypingSent: 0,
  typingIdleTimer: null,
  renderQueued: false,
  renderedMessages: new Map(), // key -> { v, mine, pending, el }
  renderedRoom: null,
  roomMenu: null, // name of the room whose menu is open
  confirmRoomDelete: null, // name of the room whose Delete waits for a second press
  roomEdit: null, // 'title' | 'topic' while the Room menu's Rename / Edit topic form is open
  picker: null, // seq whose reaction picker is open
  // Whether the message view follows the newest message: true while the reader is at the
  // bottom (kept by the scroll listener), so that content growing after a render (an image
  // preview decoding, a late attachment) keeps the view pinned instead of leaving it short.
  pinned: true,
  lastScrollTop: 0,
};

// ----- login -------------------------------------------------------------------------------

function showLogin(message = '') {
  if (chat) {
    chat.stop();
    chat = null;
  }
  document.body.classList.remove('nav-open');
  byId('chat-view').hidden = true;
  byId('login-view').hidden = false;
  byId('login-error').textContent = message;
  byId('login-password').value = '';
  byId('login-username').focus();
  document.title = 'natter';
}

byId('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const username = byId('login-username').value.trim().toLowerCase();
  const password = byId('login-password').value;
  const error = byId('login-error');
  if (!username || !password) {
    error.textContent = 'Enter your username and password.';
    return;
  }
  const button = byId('login-submit');
  button.disabled = true;
  error.textContent = '';
  try {
    await session.login(username, password);
    showChat();
  } catch (e) {
    error.textContent = loginError(e);
  } finally {
    button.disabled = false;
  }
});

function loginError(e) {
  if (!(e instanceof ApiError)) return 'Login failed.';
  if (e.status === 0) return 'Cannot reach the server.';
  if (e.status === 401) return 'Wrong username or password.';
  if (e.status === 403) return 'This account is disabled.';
  if (e.status === 429) {
    return `Too many attempts. Try again in ${Math.ceil((e.retryAfter ?? 60) / 60)} minute(s).`;
  }
  return e.message;
}

// ----- the chat view -----------------------------------------------------------------------

function showChat() {
  byId('login-view').hidden = true;
  byId('chat-view').hidden = false;
  chat = new Chat(session);
  chat.onChange = () => scheduleRender();
  chat.onAttention = (room, message) => notifyAttention(room, message);
  chat.onFatal = (reason) => {
    if (!session.loggedIn) showLogin(reason);
    else scheduleRender();
  };
  session.onExpired = () => showLogin('Your session has ended. Please log in again.');
  byId('me').textContent = session.username;
  ui.view = 'empty';
  ui.renderedMessages.clear();
  ui.renderedRoom = null;
  chat.start();
  push.start(session);
  // A push notification's click opened this tab at /#room=NAME (no tab of the client was open).
  const fromPush = roomFromHash();
  const remembered = fromPush ?? sessionStorage.getItem('natter.current');
  if (remembered) openRoom(remembered);
  else if (matchMedia('(max-width: 720px)').matches) {
    // On a phone the room list is the start screen.
    document.body.classList.add('nav-open');
    byId('menu-toggle').setAttribute('aria-expanded', 'true');
  }
  scheduleRender();
}

function scheduleRender() {
  if (ui.renderQueued) return;
  ui.renderQueued = true;
  requestAnimationFrame(() => {
    ui.renderQueued = false;
    if (chat) render();
  });
}

function render() {
  renderConnection();
  renderSidebar();
  renderMain();
}

function renderConnection() {
  const { state, retryInMs, reason } = chat.connectionState;
  const queued = chat.outbox.length;
  const text = {
    idle: 'Connecting…',
    connecting: 'Connecting…',
    online: 'Connected',
    waiting: `Offline${reason ? ` (${reason})` : ''}, retrying in ${Math.ceil((retryInMs ?? 0) / 1000)} s`,
    stopped: reason ?? 'Disconnected',
  }[state];
  byId('connection-text').textContent = queued && state !== 'online' ? `${text} · ${queued} to send` : text;
  byId('connection').dataset.state = state;
  byId('reconnect-now').hidden = state !== 'waiting';
}

/** How a room is called: `@peer` for a direct room, else its title (what "Rename" sets; the
 * name stays the room's id) or `#name`. */
function roomLabel(room) {
  if (room.direct) return `@${directPeer(room.name, chat.me)}`;
  return room.title || `#${room.name}`;
}

/** A person's name as shown: their display name once their profile is known, else the
 * username. */
function displayName(username) {
  return chat.profile(username)?.display_name || username;
}

/** A colour for a username's initials, the same for the same name everywhere. */
function avatarHue(username) {
  let hash = 0;
  for (const c of username) hash = (hash * 31 + c.codePointAt(0)) >>> 0;
  return hash % 360;
}

/** Up to two initials of a display name (or the username's first letter). */
function initials(name) {
  const words = name.trim().split(/[\s._-]+/u).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : [name.trim()];
  return letters.map((w) => [...w][0] ?? '').join('').toUpperCase() || '?';
}

/** The avatar of a message group: the user's picture (http(s) only, loaded without a
 * referrer), or their initials on a colour derived from the username. Decorative: the name
 * is beside it. */
function avatarElement(username, avatarUrl) {
  const badge = () => {
    const el = h('span', { class: 'avatar initials', 'aria-hidden': 'true', text: initials(displayName(username)) });
    // Through the CSSOM: the page's policy refuses style attributes.
    el.style.setProperty('--avatar-hue', String(avatarHue(username)));
    return el;
  };
  const url = avatarUrl && /^https?:/i.test(avatarUrl) ? safeUrl(avatarUrl) : null;
  if (!url || url === '#') return badge();
  const img = h('img', {
    class: 'avatar', src: url, alt: '', referrerpolicy: 'no-referrer',
    width: 24, height: 24, loading: 'lazy', decoding: 'async',
  });
  img.addEventListener('error', () => img.replaceWith(badge()), { once: true });
  return img;
}

/** The room's menu: members (with Remove for the owner and admins), Leave, Delete. */
function renderRoomMenu(room) {
  const manages = !room.direct && (room.owner === chat.me || chat.role === 'admin');
  const open = ui.roomMenu === room.name;
  byId('room-menu').hidden = !open;
  byId('room-menu-toggle').setAttribute('aria-expanded', String(open));
  // Direct rooms have no settings but the mute (where the server has it), and an admin's Delete.
  byId('room-menu-toggle').hidden = room.direct && chat.role !== 'admin' && room.muted === null;
  const mute = byId('mute-room');
  mute.hidden = room.muted === null || !room.member;
  mute.textContent = room.muted ? 'Unmute notifications' : 'Mute notifications';
  byId('leave-room').hidden = room.direct || !room.member || room.owner === chat.me;
  byId('delete-room').hidden = !(manages || (room.direct && chat.role === 'admin'));
  byId('rename-room').hidden = !manages;
  byId('edit-topic').hidden = !manages;
  const form = byId('room-edit-form');
  const editing = manages && open ? ui.roomEdit : null;
  if (form.hidden !== !editing || form.dataset.field !== (editing ?? '')) {
    form.hidden = !editing;
    form.dataset.field = editing ?? '';
    if (editing) {
      const input = byId('room-edit-input');
      byId('room-edit-label').textContent = editing === 'title' ? 'Room title' : 'Topic';
      input.maxLength = editing === 'title' ? 80 : 300;
      input.value = (editing === 'title' ? room.title : room.topic) ?? '';
      input.placeholder = editing === 'title' ? `#${room.name}` : 'What this room is about';
      byId('room-edit-error').textContent = '';
      requestAnimationFrame(() => input.focus());
    }
  }
  const confirming = ui.confirmRoomDelete === room.name;
  byId('delete-room').textContent = confirming ? `Really delete #${room.name}?` : 'Delete room';
  renderOnChange(byId('room-menu-members'), `${room.name}|${manages}|${JSON.stringify(room.members)}|${room.owner}`,
    () => room.members.map((name) => h('li', {},
      h('span', { text: name === room.owner ? `${name} (owner)` : name }),
      manages && name !== room.owner && name !== chat.me
        ? h('button', {
          type: 'button', class: 'small',
          'aria-label': `Remove ${name} from the room`,
          onclick: async () => {
            try {
              await chat.removeMember(room.name, name);
            } catch (e) {
              showComposerError(e);
            }
          },
        }, 'Remove')
        : null)));
}

function presenceDot(username) {
  const status = chat.presence.get(username) ?? 'unknown';
  return h('span', { class: `presence presence-${status}`, title: status, 'aria-label': status, role: 'img' });
}

function navItem(room) {
  const active = ui.view === 'room' && chat.current === room.name;
  const unread = room.unread > 0 ? room.unread : 0;
  const mentions = room.mentions > 0 ? room.mentions : 0;
  const peer = room.direct ? directPeer(room.name, chat.me) : null;
  let label = unread ? `${roomLabel(room)}, ${unread} unread` : roomLabel(room);
  if (mentions) label += `, ${mentions} ${mentions === 1 ? 'mention' : 'mentions'}`;
  if (room.muted) label += ', muted';
  return h('li', {},
    h('button', {
      type: 'button',
      class: `nav-item${active ? ' active' : ''}${unread ? ' has-unread' : ''}`,
      'aria-current': active ? 'page' : null,
      'aria-label': label,
      dataset: { room: room.name },
      onclick: () => openRoom(room.name),
    },
    peer ? presenceDot(peer) : h('span', { class: 'hash', 'aria-hidden': 'true', text: '#' }),
    h('span', { class: 'nav-name', text: room.direct ? peer : room.title || room.name }),
    room.visibility === 'private' && !room.direct ? h('span', { class: 'tag', text: 'private' }) : null,
    room.muted ? h('span', { class: 'muted-mark', title: 'Notifications muted', 'aria-hidden': 'true', text: '\u{1F515}' }) : null,
    mentions ? h('span', { class: 'badge mention-badge', text: `@${mentions > 99 ? '99+' : mentions}` }) : null,
    unread ? h('span', { class: 'badge', text: unread > 99 ? '99+' : unread }) : null));
}

function renderSidebar() {
  const rooms = [...chat.rooms.values()].sort((a, b) => (a.title || a.name).localeCompare(b.title || b.name));
  const mine = rooms.filter((r) => r.member && !r.direct);
  const directs = rooms.filter((r) => r.direct);
  const others = rooms.filter((r) => !r.member && !r.direct);
  const active = ui.view === 'room' ? chat.current : null;
  const sign = (list) => JSON.stringify([active, list.map((r) => [r.name, r.title, r.unread, r.mentions, r.visibility, r.muted,
    r.direct ? chat.presence.get(directPeer(r.name, chat.me)) : null])]);
  renderOnChange(byId('room-list'), sign(mine), () => (mine.length ? mine.map(navItem) : h('li', { class: 'hint', text: 'No rooms yet.' })));
  renderOnChange(byId('dm-list'), sign(directs), () => directs.map(navItem));
  renderOnChange(byId('public-list'), sign(others), () => (others.length
    ? others.map((room) => h('li', { class: 'public-room' },
      h('span', { class: 'nav-name', text: `#${room.name}` }),
      h('button', {
        type: 'button',
        class: 'small',
        'aria-label': `Join ${room.name}`,
        onclick: () => joinPublic(room.name),
      }, 'Join')))
    : h('li', { class: 'hint', text: 'None.' })));

  const inboxCount = byId('inbox-count');
  inboxCount.hidden = chat.unreadNotifications === 0;
  inboxCount.textContent = String(chat.unreadNotifications);
  byId('inbox-button').classList.toggle('active', ui.view === 'inbox');
  byId('users-button').hidden = chat.role !== 'admin';
  byId('account-admin').hidden = chat.role !== 'admin';
  byId('users-button').classList.toggle('active', ui.view === 'users');
  byId('inbox-button').setAttribute('aria-label',
    chat.unreadNotifications ? `Notifications, ${chat.unreadNotifications} unread` : 'Notifications');

  const totalUnread = rooms.reduce((sum, r) => sum + (r.member ? r.unread ?? 0 : 0), 0);
  const totalMentions = rooms.reduce((sum, r) => sum + (r.member ? r.mentions ?? 0 : 0), 0);
  const counts = [totalMentions ? `@${totalMentions}` : '', totalUnread ? String(totalUnread) : ''].filter(Boolean);
  byId('menu-toggle').textContent = counts.length ? `Rooms (${counts.join(' ')})` : 'Rooms';
  document.title = counts.length ? `(${counts.join(' ')}) natter` : 'natter';
  renderNotifyButton();
  renderPushButton();
  const status = byId('my-status');
  if (status.value !== chat.myStatus) status.value = chat.myStatus;
}

function renderMain() {
  const room = chat.current ? chat.room(chat.current) : null;
  const view = ['inbox', 'users', 'search'].includes(ui.view) ? ui.view : room ? 'room' : 'empty';
  byId('room-view').hidden = view !== 'room';
  byId('search-view').hidden = view !== 'search';
  if (view === 'search') renderSearch();
  byId('inbox-view').hidden = view !== 'inbox';
  byId('users-view').hidden = view !== 'users';
  byId('empty-view').hidden = view !== 'empty';
  if (view === 'room') renderRoom(room);
  if (view === 'inbox') renderInbox();
  if (view === 'users') renderUsers();
}

function renderRoom(room) {
  byId('room-title').textContent = roomLabel(room);
  byId('room-title').title = room.direct ? '' : `#${room.name}`;
  const topic = byId('room-topic');
  topic.hidden = !room.topic;
  topic.textContent = room.topic ?? '';
  renderOnChange(byId('room-members'),
    JSON.stringify(room.members.map((name) => [name, chat.presence.get(name)])),
    () => room.members.map((name) => h('span', { class: 'member' }, presenceDot(name), name)));
  const canAdd = !room.direct && room.visibility === 'private' && (room.owner === chat.me);
  byId('add-member-form').hidden = !canAdd;
  renderRoomMenu(room);

  const typing = chat.typingIn(room);
  byId('typing').textContent = typing.length === 0 ? ''
    : typing.length === 1 ? `${typing[0]} is typing…`
      : `${typing.slice(0, 3).join(', ')} are typing…`;

  const historyState = room.loading ? 'loading' : `${room.hasMore}|${room.persistent}|${room.loaded}`;
  renderOnChange(byId('history-status'), `${room.name}|${historyState}`, () => (
    room.loading ? 'Loading…'
      : room.hasMore && room.persistent
        ? h('button', { type: 'button', class: 'link-button', onclick: () => loadOlder(room) }, 'Load older messages')
        : room.loaded ? 'This is the beginning of the room.' : ''));

  renderMessages(room);
  renderComposer(room);
}

function renderComposer(room) {
  const banner = byId('reply-banner');
  const target = ui.editing ?? ui.replyTo;
  const message = target !== null ? room.messages.get(target) : null;
  banner.hidden = message === null || message === undefined;
  if (message) {
    byId('reply-text').textContent = ui.editing !== null
      ? 'Editing your message (Esc cancels)'
      : `Replying to ${message.author}: ${snippet(message.content)}`;
    byId('reply-cancel').textContent = ui.editing !== null ? 'Cancel edit' : 'Cancel reply';
  }
  byId('send-button').textContent = ui.editing !== null ? 'Save' : 'Send';
}

function snippet(text, max = 80) {
  const flat = (text ?? '').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** Renders the message list, reusing the elements of unchanged messages (so focus and
 * selection inside them survive updates) and keeping the scroll position sensible. */
function renderMessages(room) {
  const list = byId('message-list');
  const scroller = byId('messages');
  if (ui.renderedRoom !== room.name) {
    ui.renderedMessages.clear();
    list.replaceChildren();
    ui.renderedRoom = room.name;
    ui.stickToBottom = true;
  }
  const atBottom = ui.stickToBottom || ui.pinned || nearBottom(scroller);
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  const firstBefore = list.querySelector('li.msg');

  const wanted = [];
  const keys = [...room.messages.keys()].sort((a, b) => a - b);
  let previous = null;
  for (const key of keys) {
    const message = room.messages.get(key);
    // A day separator before the first message of each day.
    const day = dayOf(message.created_at_ms);
    if (!previous || dayOf(previous.created_at_ms) !== day) {
      const dayKey = `d${day}|${dayLabel(message.created_at_ms)}`;
      let separator = ui.renderedMessages.get(dayKey);
      if (!separator) {
        separator = { stamp: dayKey, el: h('li', { class: 'day-separator', role: 'separator', text: dayLabel(message.created_at_ms) }) };
        ui.renderedMessages.set(dayKey, separator);
      }
      wanted.push(separator.el);
    }
    // Consecutive messages of one author within a few minutes are one group: one header.
    const grouped = Boolean(previous && !previous.deleted && !message.deleted
      && previous.author === message.author && dayOf(previous.created_at_ms) === day
      && message.created_at_ms - previous.created_at_ms < GROUP_MS && !message.reply_to);
    previous = message;
    const cacheKey = `m${key}`;
    const mine = message.author === chat.me;
    const quoted = message.reply_to ? room.messages.get(message.reply_to)?.v : null;
    const person = grouped ? '' : JSON.stringify(chat.profile(message.author) ?? null);
    const stamp = `${message.v}|${quoted}|${ui.confirmDelete === message.seq}|${ui.replyTo === message.seq}|${ui.editing === message.seq}|${grouped}|${ui.picker === message.seq}|${person}`;
    let cached = ui.renderedMessages.get(cacheKey);
    if (!cached || cached.stamp !== stamp) {
      cached = { stamp, el: messageElement(room, message, mine, grouped) };
      ui.renderedMessages.set(cacheKey, cached);
    }
    wanted.push(cached.el);
  }
  for (const entry of chat.pendingIn(room.name)) {
    const cacheKey = `p${entry.clientMsgId}`;
    const stamp = `${entry.error}|${chat.connectionState.state}`;
    let cached = ui.renderedMessages.get(cacheKey);
    if (!cached || cached.stamp !== stamp) {
      cached = { stamp, el: pendingElement(room, entry) };
      ui.renderedMessages.set(cacheKey, cached);
    }
    wanted.push(cached.el);
  }
  const keep = new Set(wanted);
  for (const [key, cached] of ui.renderedMessages) if (!keep.has(cached.el)) ui.renderedMessages.delete(key);
  // In-place reconciliation: nodes already in the right place are not touched.
  wanted.forEach((el, index) => {
    const at = list.children[index];
    if (at !== el) list.insertBefore(el, at ?? null);
  });
  while (list.children.length > wanted.length) list.lastElementChild.remove();

  if (atBottom) {
    scroller.scrollTop = scroller.scrollHeight;
    ui.stickToBottom = false;
    ui.pinned = true;
  } else if (firstBefore && list.querySelector('li.msg') !== firstBefore) {
    // Older messages were added above: keep what the reader was looking at in place.
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
  }
  if (ui.jumpTo?.room === room.name) showJumpTarget(list, scroller);
  // Not enough to scroll yet: fetch older pages until there is (or there are none).
  if (room.loaded && room.hasMore && !room.loading && scroller.scrollHeight <= scroller.clientHeight) {
    loadOlder(room);
  }
}

function nearBottom(scroller) {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
}

// Content that grows after it was rendered (images decode late) moves the bottom away: a view
// that was pinned follows it.
const follow = new ResizeObserver(() => {
  if (ui.pinned) byId('messages').scrollTop = byId('messages').scrollHeight;
});
follow.observe(byId('message-list'));
follow.observe(byId('messages'));

/** Messages of one author closer than this are grouped under one header. */
const GROUP_MS = 5 * 60 * 1000;

/** The local calendar day of a time, as a comparable string. */
function dayOf(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

/** "Today", "Yesterday", or the date. */
function dayLabel(ms) {
  const now = Date.now();
  if (dayOf(ms) === dayOf(now)) return 'Today';
  if (dayOf(ms) === dayOf(now - 86_400_000)) return 'Yesterday';
  return new Date(ms).toLocaleDateString(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}

function messageElement(room, message, mine, grouped = false) {
  const classes = ['msg'];
  if (mine) classes.push('mine');
  if (grouped) classes.push('grouped');
  if (message.deleted) classes.push('deleted');
  // A message that mentions you (not every message of a direct room, which all do).
  if (!mine && !room.direct && (message.mentions ?? []).includes(chat.me)) classes.push('mentions-me');
  if (ui.editing === message.seq) classes.push('editing');
  const time = h('time', {
    datetime: new Date(message.created_at_ms).toISOString(),
    title: new Date(message.created_at_ms).toLocaleString(),
    text: formatTime(message.created_at_ms),
  });
  const profile = chat.profile(message.author);
  const shown = displayName(message.author);
  const head = h('div', { class: 'msg-head' },
    grouped ? null : avatarElement(message.author, profile ? profile.avatar_url : message.author_avatar),
    h('span', { class: 'author', title: `@${message.author}`, text: shown }),
    shown !== message.author ? h('span', { class: 'username', text: `@${message.author}` }) : null,
    ' ', time,
    message.edited_at && !message.deleted ? h('span', { class: 'edited', text: ' (edited)' }) : null);
  let quote = null;
  if (message.reply_to) {
    const original = room.messages.get(message.reply_to);
    quote = h('button', {
      type: 'button',
      class: 'reply-quote',
      'aria-label': `In reply to message ${message.reply_to}`,
      onclick: () => document.getElementById(`msg-${message.reply_to}`)?.scrollIntoView({ block: 'center' }),
    }, original
      ? `↪ ${original.author}: ${original.deleted ? 'message deleted' : snippet(original.content, 60)}`
      : `↪ an earlier message (#${message.reply_to})`);
  }
  const attachments = message.deleted ? [] : message.attachments ?? [];
  // A file's message says the file's name: the attachment shows it already.
  const justTheFile = attachments.length === 1 && message.content === attachments[0].file_name;
  const body = message.deleted
    ? h('div', { class: 'msg-body', text: 'Message deleted' })
    : justTheFile ? null : h('div', { class: 'msg-body' }, richText(message.content, chat.me));
  const files = attachments.length
    ? h('ul', { class: 'attachments' }, attachments.map(attachmentElement))
    : null;
  const actions = [];
  const persistent = room.persistent && message.seq > 0;
  const reactions = !message.deleted && persistent && (message.reactions ?? []).length
    ? h('div', { class: 'reactions' }, message.reactions.map((r) => {
      const own = r.users.includes(chat.me);
      return h('button', {
        type: 'button',
        class: `reaction${own ? ' own' : ''}`,
        'aria-pressed': String(own),
        'aria-label': `${r.emoji} ${r.count}: ${own ? 'take back your reaction' : 'react'}`,
        title: r.users.join(', '),
        onclick: () => react(room, message.seq, r.emoji, own),
      }, `${r.emoji} ${r.count}`);
    }))
    : null;
  const picker = ui.picker === message.seq && !message.deleted
    ? h('div', { class: 'reaction-picker', role: 'group', 'aria-label': 'Pick a reaction' },
      REACTIONS.map((emoji) => h('button', {
        type: 'button', class: 'reaction',
        'aria-label': `React with ${emoji}`,
        onclick: () => {
          ui.picker = null;
          const own = (message.reactions ?? []).some((r) => r.emoji === emoji && r.users.includes(chat.me));
          react(room, message.seq, emoji, own);
        },
      }, emoji)))
    : null;
  if (!message.deleted && persistent) {
    actions.push(h('button', {
      type: 'button', class: 'action',
      'aria-label': `Reply to ${message.author}`,
      onclick: () => startReply(message.seq),
    }, 'Reply'));
    actions.push(h('button', {
      type: 'button', class: 'action',
      'aria-label': `React to ${message.author}'s message`,
      'aria-expanded': String(ui.picker === message.seq),
      onclick: () => {
        ui.picker = ui.picker === message.seq ? null : message.seq;
        scheduleRender();
      },
    }, 'React'));
    if (mine) {
      actions.push(h('button', {
        type: 'button', class: 'action',
        'aria-label': 'Edit your message',
        onclick: () => startEdit(message.seq),
      }, 'Edit'));
      const confirming = ui.confirmDelete === message.seq;
      actions.push(h('button', {
        type: 'button', class: `action${confirming ? ' danger' : ''}`,
        'aria-label': confirming ? 'Confirm: delete your message' : 'Delete your message',
        onclick: () => deleteMessage(room, message.seq),
      }, confirming ? 'Really delete?' : 'Delete'));
    }
  }
  return h('li', {
    class: classes.join(' '),
    id: persistent ? `msg-${message.seq}` : null,
    dataset: { seq: message.seq, author: message.author },
  }, head, quote, body, files, reactions, picker, actions.length ? h('div', { class: 'msg-actions' }, actions) : null);
}

/** The emoji the picker offers. */
const REACTIONS = ['👍', '❤️', '😂', '🎉', '😮', '😢', '👀', '✅'];

async function react(room, seq, emoji, remove) {
  try {
    await chat.react(room.name, seq, emoji, remove);
  } catch (e) {
    showComposerError(e);
  }
  scheduleRender();
}

/** Image types shown inline (fetched with the token, shown from a blob: URL the CSP allows). */
const PREVIEWABLE = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);
/** Object URLs of previews, by file id, so a re-rendered message does not fetch again. */
const previews = new Map();

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function attachmentElement(file) {
  const name = String(file.file_name ?? 'file');
  const item = h('li', { class: 'attachment' },
    h('button', {
      type: 'button',
      class: 'attachment-button',
      'aria-label': `Download ${name}`,
      onclick: () => downloadAttachment(file),
    }, h('span', { class: 'file-icon', 'aria-hidden': 'true' }), name, ' ',
    h('span', { class: 'size', text: formatSize(Number(file.file_size) || 0) })));
  if (PREVIEWABLE.has(file.file_type) && chat) {
    if (!previews.has(file.id)) {
      previews.set(file.id, chat.download(file).then((blob) => URL.createObjectURL(blob)).catch(() => null));
    }
    previews.get(file.id).then((url) => {
      if (url) item.append(h('img', { class: 'attachment-preview', src: url, alt: name }));
    });
  }
  return item;
}

async function downloadAttachment(file) {
  try {
    const blob = await chat.download(file);
    const url = URL.createObjectURL(blob);
    const link = h('a', { href: url, download: String(file.file_name ?? 'file'), hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (e) {
    showComposerError(e);
  }
}

function pendingElement(room, entry) {
  const offline = chat.connectionState.state !== 'online';
  const status = entry.error
    ? h('span', { class: 'pending-status error' }, `Not sent: ${entry.error} `,
      h('button', { type: 'button', class: 'link-button', onclick: () => chat.retry(entry.clientMsgId) }, 'Retry'),
      ' ',
      h('button', { type: 'button', class: 'link-button', onclick: () => chat.discard(entry.clientMsgId) }, 'Discard'))
    : h('span', { class: 'pending-status', text: offline ? 'Waiting for the connection…' : 'Sending…' });
  return h('li', { class: 'msg mine pending', dataset: { pending: entry.clientMsgId } },
    h('div', { class: 'msg-head' }, h('span', { class: 'author', text: chat.me }), ' ', status),
    h('p', { class: 'msg-body', text: entry.content }));
}

function renderInbox() {
  const items = chat.notifications.map((n) => {
    const actions = [];
    if (n.url) actions.push(h('a', { href: safeUrl(n.url), target: '_blank', rel: 'noopener noreferrer', text: 'Open link' }));
    for (const action of Array.isArray(n.actions) ? n.actions.slice(0, 10) : []) {
      if (action && typeof action.url === 'string' && typeof action.label === 'string') {
        actions.push(h('a', { href: safeUrl(action.url), target: '_blank', rel: 'noopener noreferrer', text: action.label }));
      }
    }
    if (!n.read) {
      actions.push(h('button', { type: 'button', class: 'small', onclick: () => chat.markNotificationRead(n.id).catch(() => {}) }, 'Mark read'));
    }
    return h('li', { class: `notification level-${['info', 'success', 'warning', 'error'].includes(n.level) ? n.level : 'info'}${n.read ? '' : ' unread'}` },
      h('div', { class: 'msg-head' },
        h('strong', { text: n.title }), ' ',
        h('time', { text: formatTime(n.created_at * 1000) })),
      h('p', { class: 'msg-body', text: n.message }),
      actions.length ? h('div', { class: 'notification-actions' }, actions) : null);
  });
  renderOnChange(byId('inbox-list'), JSON.stringify(chat.notifications.map((n) => [n.id, n.read])), () => (items.length ? items : h('li', { class: 'hint', text: 'No notifications.' })));
}

function renderUsers() {
  renderUserList(accounts, chat);
}

/** Only http(s) links are followed; anything else (javascript:, data:) becomes inert. */
// ----- attention: desktop notifications and in-page toasts ----------------------------------

/** Toasts shown at once, at most: the oldest goes first. */
const MAX_TOASTS = 4;
/** How long a toast stays. */
const TOAST_MS = 10_000;

const notificationsSupported = () => typeof window.Notification === 'function';

/** The account menu's control asks for the Notification permission (never on load). */
function renderNotifyButton() {
  const button = byId('notify-button');
  if (!notificationsSupported()) {
    button.hidden = true;
    return;
  }
  const permission = Notification.permission;
  const text = permission === 'granted' ? 'Desktop notifications on'
    : permission === 'denied' ? 'Desktop notifications blocked' : 'Enable desktop notifications';
  if (button.textContent !== text) button.textContent = text;
  button.disabled = permission !== 'default';
  button.hidden = false;
}

/** A message that mentions you (or a direct message) arrived while its room is not in view:
 * a desktop notification when allowed, else a toast in the page. */
function notifyAttention(room, message) {
  // A muted room asks for no attention: its unread counts still show in the room list.
  if (room.muted) return;
  const title = room.direct ? `${message.author} (direct message)` : `${message.author} in #${room.name}`;
  const body = message.deleted ? '' : snippet(message.content, 140);
  if (notificationsSupported() && Notification.permission === 'granted') {
    try {
      const note = new Notification(title, { body, tag: room.name });
      note.onclick = () => {
        window.focus();
        openRoom(room.name);
        note.close();
      };
      return;
    } catch {
      // Some browsers allow only service-worker notifications: fall back to the toast.
    }
  }
  showToast(room, title, body);
}

function showToast(room, title, body) {
  const box = byId('toasts');
  while (box.children.length >= MAX_TOASTS) box.firstElementChild.remove();
  const toast = h('div', { class: 'toast', role: 'status' },
    h('button', {
      type: 'button',
      class: 'toast-open',
      'aria-label': `${title}: ${body}. Open ${roomLabel(room)}`,
      onclick: () => {
        toast.remove();
        openRoom(room.name);
      },
    }, h('strong', { text: title }), h('span', { class: 'toast-body', text: body })),
    h('button', {
      type: 'button',
      class: 'toast-close icon-button',
      'aria-label': 'Dismiss',
      onclick: () => toast.remove(),
    }, '×'));
  box.append(toast);
  setTimeout(() => toast.remove(), TOAST_MS);
}

/** The account menu's Web Push control and what it last said (an error, in words). */
function renderPushButton() {
  const button = byId('push-button');
  const label = push.label();
  if (button.textContent !== label) button.textContent = label;
  button.disabled = push.state === 'unsupported' || push.state === 'working';
  button.setAttribute('aria-pressed', String(push.state === 'on'));
  byId('push-status').textContent = push.error;
}

byId('push-button').addEventListener('click', () => {
  if (chat) push.toggle(session);
});

/** The room a `#room=NAME` address names (a push notification's click opens one), or null;
 * the hash is cleared, so a reload does not open it again. */
function roomFromHash() {
  const match = /^#room=(.+)$/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, '', location.pathname + location.search);
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return null;
  }
}

/** The service worker passes on a click on a push notification: open its room here. */
function openFromPush(room) {
  if (typeof room !== 'string' || !room) return;
  if (!chat) {
    // Not logged in: the room opens after the login, as with a new tab.
    location.hash = `room=${encodeURIComponent(room)}`;
    return;
  }
  window.focus();
  openRoom(room);
  // A conversation this tab has not listed yet (a first direct message): list, then it opens.
  if (!chat.room(room)) chat.refreshRooms().catch(() => {});
}

navigator.serviceWorker?.addEventListener('message', (event) => {
  if (event.data?.type === 'natter-open-room') openFromPush(event.data.room);
});

byId('mute-room').addEventListener('click', async () => {
  const room = chat?.current && chat.room(chat.current);
  if (!room || room.muted === null) return;
  try {
    await chat.setMuted(room.name, !room.muted);
  } catch (e) {
    showComposerError(e);
  }
  scheduleRender();
});

byId('notify-button').addEventListener('click', async () => {
  if (!notificationsSupported()) return;
  try {
    await Notification.requestPermission();
  } catch {
    // An old callback-only API: nothing to wait for.
  }
  renderNotifyButton();
});

function safeUrl(url) {
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : '#';
  } catch {
    return '#';
  }
}

// ----- search ------------------------------------------------------------------------------

/** The search shown in the search view: its query, the hits so far and where the next page
 * starts. */
const search = { query: '', hits: [], next: null, truncated: false, loading: false, error: '' };

/** Runs a search (or, with `more`, fetches its next page) and shows the search view. */
async function runSearch(query, more = false) {
  if (!chat) return;
  if (!more) Object.assign(search, { query, hits: [], next: null, truncated: false });
  search.loading = true;
  search.error = '';
  ui.view = 'search';
  document.body.classList.remove('nav-open');
  byId('menu-toggle').setAttribute('aria-expanded', 'false');
  scheduleRender();
  try {
    const page = await chat.search(query, { cursor: more ? search.next : null });
    if (search.query !== query) return; // a newer search replaced this one
    search.hits.push(...(page.results ?? []));
    search.next = page.next_cursor ?? null;
    search.truncated = Boolean(page.truncated);
  } catch (e) {
    if (search.query === query) search.error = e.message;
  } finally {
    if (search.query === query) search.loading = false;
    scheduleRender();
  }
}

function renderSearch() {
  byId('search-title').textContent = search.query ? `Search: ${search.query}` : 'Search';
  const count = search.hits.length;
  byId('search-status').textContent = search.error ? `Search failed: ${search.error}`
    : search.loading ? 'Searching…'
      : count === 0 ? 'No messages found.'
        : `${count}${search.next ? '+' : ''} message${count === 1 ? '' : 's'} found${search.truncated ? ' (search stopped early; narrow it with more words)' : ''}.`;
  byId('search-more').hidden = !search.next || search.loading;
  renderOnChange(byId('search-list'), JSON.stringify([search.query, search.hits.map((hit) => [hit.room, hit.seq])]),
    () => search.hits.map(searchHitElement));
}

function searchHitElement(hit) {
  const room = chat.room(hit.room);
  const where = room ? roomLabel(room) : `#${hit.room}`;
  return h('li', { class: 'search-hit' },
    h('button', { type: 'button', class: 'search-open', onclick: () => jumpTo(hit) },
      h('span', { class: 'msg-head' },
        h('span', { class: 'search-room', text: where }), ' ',
        h('span', { class: 'author', text: hit.author }), ' ',
        h('time', { datetime: new Date(hit.created_at_ms).toISOString(), text: formatTime(hit.created_at_ms) })),
      h('span', { class: 'msg-body' }, highlighted(hit.content, hit.highlights))));
}

/** Characters of a hit shown at most, around its first highlight. */
const HIT_WINDOW = 240;

/**
 * `content` as text nodes with its highlights in `<mark>`s. Highlights are `[start, end)` in
 * Unicode characters (code points, as `Array.from` counts them), as the server gives them.
 */
function highlighted(content, highlights) {
  const chars = Array.from(content ?? '');
  const spans = (Array.isArray(highlights) ? highlights : [])
    .filter((span) => Array.isArray(span) && Number.isInteger(span[0]) && Number.isInteger(span[1])
      && span[0] >= 0 && span[0] < span[1] && span[1] <= chars.length)
    .sort((a, b) => a[0] - b[0]);
  let from = 0;
  let to = chars.length;
  if (chars.length > HIT_WINDOW) {
    from = Math.max(0, (spans[0]?.[0] ?? 0) - 60);
    to = Math.min(chars.length, from + HIT_WINDOW);
  }
  const nodes = from > 0 ? ['…'] : [];
  let at = from;
  for (const [start, end] of spans) {
    if (end <= at || start >= to) continue;
    const begin = Math.max(start, at);
    const stop = Math.min(end, to);
    if (begin > at) nodes.push(chars.slice(at, begin).join(''));
    nodes.push(h('mark', { text: chars.slice(begin, stop).join('') }));
    at = stop;
  }
  if (at < to) nodes.push(chars.slice(at, to).join(''));
  if (to < chars.length) nodes.push('…');
  return nodes;
}

/** Opens a hit's room, loads history back to it if needed, and shows it highlighted. */
async function jumpTo(hit) {
  if (!chat.room(hit.room)) await chat.refreshRooms().catch(() => {});
  if (!chat.room(hit.room)) {
    search.error = `the room ${hit.room} is no longer there`;
    scheduleRender();
    return;
  }
  await openRoom(hit.room);
  const room = chat?.room(hit.room);
  if (!room) return;
  const loaded = await chat.loadBackTo(room, hit.seq).catch(() => false);
  if (loaded) ui.jumpTo = { room: hit.room, seq: hit.seq };
  else showComposerError(new Error('That message is too far back to show here.'));
  scheduleRender();
}

/** Scrolls the message a search jumped to into the middle of the view and marks it. */
function showJumpTarget(list, scroller) {
  const target = document.getElementById(`msg-${ui.jumpTo.seq}`);
  if (!target) return;
  ui.jumpTo = null;
  ui.pinned = false;
  ui.stickToBottom = false;
  for (const el of list.querySelectorAll('.jump-target')) el.classList.remove('jump-target');
  target.classList.add('jump-target');
  target.setAttribute('tabindex', '-1');
  target.scrollIntoView({ block: 'center' });
  ui.lastScrollTop = scroller.scrollTop;
  target.focus({ preventScroll: true });
}

byId('search-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const query = byId('search-input').value.trim();
  if (query) runSearch(query);
});

byId('search-more').addEventListener('click', () => runSearch(search.query, true));

// ----- actions -----------------------------------------------------------------------------

/** Focuses the composer, except on a narrow (phone) screen, where focus would pop up the
 * on-screen keyboard over the room the user came to read. */
function focusComposer() {
  if (!window.matchMedia('(max-width: 720px)').matches) byId('message-input').focus();
}

function openRoom(name) {
  ui.view = 'room';
  ui.replyTo = null;
  ui.editing = null;
  ui.confirmDelete = null;
  sessionStorage.setItem('natter.current', name);
  document.body.classList.remove('nav-open');
  byId('menu-toggle').setAttribute('aria-expanded', 'false');
  const opened = chat.open(name).catch((e) => showComposerError(e));
  scheduleRender();
  requestAnimationFrame(focusComposer);
  return opened;
}

async function joinPublic(name) {
  try {
    await chat.joinPublic(name);
    openRoom(name);
  } catch (e) {
    showComposerError(e);
  }
}

async function loadOlder(room) {
  try {
    await chat.loadOlder(room);
  } catch {
    // Shown as "Load older messages" again; the user can retry.
  }
}

function startReply(seq) {
  ui.editing = null;
  ui.replyTo = seq;
  scheduleRender();
  byId('message-input').focus();
}

function startEdit(seq) {
  const room = chat.room(chat.current);
  const message = room?.messages.get(seq);
  if (!message) return;
  ui.replyTo = null;
  ui.editing = seq;
  const input = byId('message-input');
  input.value = message.content;
  autosize(input);
  scheduleRender();
  input.focus();
}

function cancelComposerMode() {
  if (ui.editing !== null) byId('message-input').value = '';
  ui.editing = null;
  ui.replyTo = null;
  autosize(byId('message-input'));
  scheduleRender();
}

async function deleteMessage(room, seq) {
  if (ui.confirmDelete !== seq) {
    ui.confirmDelete = seq;
    scheduleRender();
    setTimeout(() => {
      if (ui.confirmDelete === seq) {
        ui.confirmDelete = null;
        scheduleRender();
      }
    }, 5000);
    return;
  }
  ui.confirmDelete = null;
  try {
    await chat.remove(room.name, seq);
  } catch (e) {
    showComposerError(e);
  }
  scheduleRender();
  byId('message-input').focus();
}

function showComposerError(e) {
  const text = e?.code === 0 ? 'You are offline: try again once connected.' : e?.message ?? String(e);
  byId('composer-error').textContent = text;
  setTimeout(() => {
    if (byId('composer-error').textContent === text) byId('composer-error').textContent = '';
  }, 6000);
}

async function submitComposer() {
  const input = byId('message-input');
  const content = input.value;
  const room = chat.current && chat.room(chat.current);
  if (!room || content.trim() === '') return;
  byId('composer-error').textContent = '';
  if (ui.editing !== null) {
    const seq = ui.editing;
    try {
      await chat.edit(room.name, seq, content);
      ui.editing = null;
      input.value = '';
    } catch (e) {
      showComposerError(e);
    }
  } else {
    chat.send(room.name, content, ui.replyTo);
    ui.replyTo = null;
    input.value = '';
    ui.stickToBottom = true;
  }
  autosize(input);
  stopTyping(room.name);
  scheduleRender();
}

function stopTyping(roomName) {
  clearTimeout(ui.typingIdleTimer);
  if (ui.lastTypingSent) {
    chat.typing(roomName, false);
    ui.lastTypingSent = 0;
  }
}

function autosize(input) {
  input.rows = Math.min(8, Math.max(1, input.value.split('\n').length));
}

byId('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  submitComposer();
});

// ----- @mention completion: the room's members and the authors seen in it ------------------

const mentions = { open: false, options: [], selected: 0, start: 0 };

/** The `@prefix` being typed just before the caret, or null. */
function mentionAtCaret(input) {
  const before = input.value.slice(0, input.selectionStart);
  const match = /(^|\s)@([A-Za-z0-9_.-]*)$/.exec(before);
  return match ? { prefix: match[2].toLowerCase(), start: before.length - match[2].length - 1 } : null;
}

function updateMentions() {
  const input = byId('message-input');
  const room = chat?.current && chat.room(chat.current);
  const at = room && input.selectionStart === input.selectionEnd ? mentionAtCaret(input) : null;
  const names = new Set(room?.members ?? []);
  for (const message of room?.messages.values() ?? []) names.add(message.author);
  names.delete(chat?.me);
  const options = at ? [...names].filter((n) => n.toLowerCase().startsWith(at.prefix)).sort().slice(0, 8) : [];
  // A name typed out in full needs no list (Enter then sends, as it would without one).
  mentions.open = options.length > 0 && !(options.length === 1 && options[0].toLowerCase() === at.prefix);
  mentions.options = options;
  mentions.start = at?.start ?? 0;
  mentions.selected = Math.min(mentions.selected, Math.max(options.length - 1, 0));
  renderMentions();
}

function renderMentions() {
  const list = byId('mention-list');
  const input = byId('message-input');
  list.hidden = !mentions.open;
  input.setAttribute('aria-expanded', String(mentions.open));
  replaceChildren(list, mentions.options.map((name, i) => h('li', {
    id: `mention-${i}`,
    role: 'option',
    'aria-selected': String(i === mentions.selected),
    text: name,
    onmousedown: (event) => {
      event.preventDefault(); // keep the composer's focus
      completeMention(name);
    },
  })));
  if (mentions.open) input.setAttribute('aria-activedescendant', `mention-${mentions.selected}`);
  else input.removeAttribute('aria-activedescendant');
}

function closeMentions() {
  mentions.open = false;
  mentions.options = [];
  mentions.selected = 0;
  renderMentions();
}

function completeMention(name) {
  const input = byId('message-input');
  const end = input.selectionStart;
  const inserted = `@${name} `;
  input.value = input.value.slice(0, mentions.start) + inserted + input.value.slice(end);
  const caret = mentions.start + inserted.length;
  input.setSelectionRange(caret, caret);
  closeMentions();
  autosize(input);
}

byId('message-input').addEventListener('keydown', (event) => {
  if (!mentions.open || event.isComposing) return;
  const count = mentions.options.length;
  if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    mentions.selected = (mentions.selected + (event.key === 'ArrowDown' ? 1 : count - 1)) % count;
    renderMentions();
  } else if ((event.key === 'Enter' && !event.shiftKey) || event.key === 'Tab') {
    completeMention(mentions.options[mentions.selected]);
  } else if (event.key === 'Escape') {
    closeMentions();
  } else {
    return;
  }
  // The completion took the key: the composer's own handler below must not see it.
  event.preventDefault();
  event.stopImmediatePropagation();
});
byId('message-input').addEventListener('input', updateMentions);
byId('message-input').addEventListener('click', updateMentions);
byId('message-input').addEventListener('blur', closeMentions);

byId('message-input').addEventListener('keydown', (event) => {
  const input = event.currentTarget;
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submitComposer();
  } else if (event.key === 'Escape' && (ui.editing !== null || ui.replyTo !== null)) {
    event.preventDefault();
    cancelComposerMode();
  } else if (event.key === 'ArrowUp' && input.value === '' && chat?.current) {
    // Up in an empty composer edits one's last message, as in most chat clients.
    const room = chat.room(chat.current);
    const last = room && [...room.messages.values()]
      .filter((m) => m.author === chat.me && !m.deleted && m.seq > 0)
      .sort((a, b) => b.seq - a.seq)[0];
    if (last) {
      event.preventDefault();
      startEdit(last.seq);
    }
  }
});

byId('message-input').addEventListener('input', (event) => {
  const input = event.currentTarget;
  autosize(input);
  const room = chat?.current;
  if (!room || ui.editing !== null) return;
  if (input.value.trim() === '') {
    stopTyping(room);
    return;
  }
  const now = Date.now();
  // At most one Typing every 3 s (the server passes on 30 a minute), and a stop after 4 s idle.
  if (now - ui.lastTypingSent > 3000) {
    chat.typing(room, true);
    ui.lastTypingSent = now;
  }
  clearTimeout(ui.typingIdleTimer);
  ui.typingIdleTimer = setTimeout(() => stopTyping(room), 4000);
});

byId('attach-button').addEventListener('click', () => byId('attach-input').click());

/** Uploads files into the open room, one after another (the file picker, paste, a drop). */
async function uploadFiles(files) {
  const room = chat?.current;
  if (!room || ui.view !== 'room' || files.length === 0) return;
  const status = byId('composer-status');
  for (const file of files) {
    status.textContent = `Uploading ${file.name}…`;
    try {
      await chat.upload(room, file);
    } catch (e) {
      showComposerError(e.status === 413 ? new Error(`${file.name} is too large: ${e.message}`) : e);
    }
  }
  status.textContent = '';
  focusComposer();
}

byId('attach-input').addEventListener('change', (event) => {
  const input = event.currentTarget;
  const files = [...input.files];
  input.value = '';
  uploadFiles(files);
});

// A pasted image or file (a screenshot from the clipboard) is uploaded; pasted text stays text.
byId('message-input').addEventListener('paste', (event) => {
  const files = [...(event.clipboardData?.files ?? [])];
  if (files.length === 0) return;
  event.preventDefault();
  uploadFiles(files);
});

// Files dragged onto the room are uploaded into it.
const roomView = byId('room-view');
const carriesFiles = (event) => [...(event.dataTransfer?.types ?? [])].includes('Files');
roomView.addEventListener('dragover', (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = 'copy';
  roomView.classList.add('dropping');
});
roomView.addEventListener('dragleave', (event) => {
  if (!roomView.contains(event.relatedTarget)) roomView.classList.remove('dropping');
});
roomView.addEventListener('drop', (event) => {
  roomView.classList.remove('dropping');
  if (!carriesFiles(event)) return;
  event.preventDefault();
  uploadFiles([...event.dataTransfer.files]);
});

byId('reply-cancel').addEventListener('click', () => {
  cancelComposerMode();
  byId('message-input').focus();
});

// On a touch screen a tap on a message shows its actions (Reply, Edit, Delete); a tap on
// another message moves them there, a second tap hides them.
byId('message-list').addEventListener('click', (event) => {
  if (!window.matchMedia('(hover: none)').matches) return;
  if (event.target.closest('button, a, input, textarea, select')) return;
  const item = event.target.closest('li.msg');
  for (const other of byId('message-list').querySelectorAll('li.msg.selected')) {
    if (other !== item) other.classList.remove('selected');
  }
  item?.classList.toggle('selected');
});

byId('messages').addEventListener('scroll', () => {
  // Only the reader scrolling up unpins: content that grew below (the scroll event of the last
  // render can come after an image grew the list) leaves scrollTop where it was.
  const scroller = byId('messages');
  ui.pinned = nearBottom(scroller) || (ui.pinned && scroller.scrollTop >= ui.lastScrollTop);
  ui.lastScrollTop = scroller.scrollTop;
  const room = chat?.current && chat.room(chat.current);
  if (room && byId('messages').scrollTop < 80 && room.hasMore && !room.loading && room.loaded) loadOlder(room);
});

byId('new-room-toggle').addEventListener('click', () => {
  const form = byId('new-room-form');
  form.hidden = !form.hidden;
  byId('new-room-toggle').setAttribute('aria-expanded', String(!form.hidden));
  if (!form.hidden) byId('new-room-name').focus();
});

byId('new-room-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = byId('new-room-name').value.trim().toLowerCase();
  const error = byId('new-room-error');
  error.textContent = '';
  if (!name) return;
  try {
    const created = await chat.createRoom(name, byId('new-room-visibility').value);
    byId('new-room-name').value = '';
    byId('new-room-form').hidden = true;
    byId('new-room-toggle').setAttribute('aria-expanded', 'false');
    openRoom(created);
  } catch (e) {
    error.textContent = e.message;
  }
});

byId('new-dm-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const error = byId('new-dm-error');
  error.textContent = '';
  const user = byId('new-dm-user').value;
  if (!user.trim()) return;
  try {
    const name = await chat.openDirect(user);
    byId('new-dm-user').value = '';
    openRoom(name);
  } catch (e) {
    error.textContent = e.message;
  }
});

byId('room-menu-toggle').addEventListener('click', () => {
  ui.roomMenu = ui.roomMenu === chat?.current ? null : chat?.current ?? null;
  ui.confirmRoomDelete = null;
  ui.roomEdit = null;
  scheduleRender();
});

function openRoomEdit(field) {
  ui.roomEdit = ui.roomEdit === field ? null : field;
  scheduleRender();
}

byId('rename-room').addEventListener('click', () => openRoomEdit('title'));
byId('edit-topic').addEventListener('click', () => openRoomEdit('topic'));
byId('room-edit-cancel').addEventListener('click', () => {
  ui.roomEdit = null;
  scheduleRender();
});
byId('room-edit-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = chat?.current;
  const field = ui.roomEdit;
  if (!name || !field) return;
  const value = byId('room-edit-input').value.trim();
  try {
    await chat.updateRoom(name, { [field]: value === '' ? null : value });
    ui.roomEdit = null;
    ui.roomMenu = null;
  } catch (e) {
    byId('room-edit-error').textContent = e.message;
  }
  scheduleRender();
});

byId('leave-room').addEventListener('click', async () => {
  const name = chat?.current;
  if (!name) return;
  ui.roomMenu = null;
  try {
    await chat.leaveRoom(name);
    sessionStorage.removeItem('natter.current');
  } catch (e) {
    showComposerError(e);
  }
  scheduleRender();
});

byId('delete-room').addEventListener('click', async () => {
  const name = chat?.current;
  if (!name) return;
  if (ui.confirmRoomDelete !== name) {
    ui.confirmRoomDelete = name;
    scheduleRender();
    return;
  }
  ui.confirmRoomDelete = null;
  ui.roomMenu = null;
  try {
    await chat.deleteRoom(name);
    sessionStorage.removeItem('natter.current');
  } catch (e) {
    showComposerError(e);
  }
  scheduleRender();
});

byId('add-member-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = byId('add-member-user');
  try {
    await chat.addMember(chat.current, input.value);
    input.value = '';
  } catch (e) {
    showComposerError(e);
  }
});

byId('refresh-rooms').addEventListener('click', () => {
  chat?.refreshRooms().catch((e) => showComposerError(e));
});

byId('inbox-button').addEventListener('click', () => {
  ui.view = 'inbox';
  document.body.classList.remove('nav-open');
  byId('menu-toggle').setAttribute('aria-expanded', 'false');
  chat.loadNotifications().catch(() => {});
  scheduleRender();
});

byId('users-button').addEventListener('click', () => {
  ui.view = 'users';
  document.body.classList.remove('nav-open');
  byId('menu-toggle').setAttribute('aria-expanded', 'false');
  chat.loadUsers().catch((e) => { byId('new-user-error').textContent = e.message; });
  scheduleRender();
  requestAnimationFrame(() => byId('new-user-name').focus());
});

byId('new-user-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const error = byId('new-user-error');
  const done = byId('new-user-done');
  error.textContent = '';
  done.textContent = '';
  const username = byId('new-user-name').value.trim().toLowerCase();
  const password = byId('new-user-password').value;
  if (!username || !password) return;
  try {
    await chat.createUser(username, password, byId('new-user-role').value);
    byId('new-user-name').value = '';
    byId('new-user-password').value = '';
    done.textContent = `Added ${username}. They can log in now.`;
  } catch (e) {
    error.textContent = e.message;
  }
});

byId('menu-toggle').addEventListener('click', () => {
  const open = document.body.classList.toggle('nav-open');
  byId('menu-toggle').setAttribute('aria-expanded', String(open));
});

function setAccountMenu(open) {
  document.body.classList.toggle('account-open', open);
  byId('account-toggle').setAttribute('aria-expanded', String(open));
}

byId('account-toggle').addEventListener('click', () => {
  setAccountMenu(!document.body.classList.contains('account-open'));
});

// The account menu closes on a click elsewhere, and on Escape.
document.addEventListener('click', (event) => {
  if (!event.target.closest?.('#account, #account-toggle')) setAccountMenu(false);
});
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && document.body.classList.contains('account-open')) setAccountMenu(false);
});

byId('my-status').addEventListener('change', (event) => {
  chat?.setStatus(event.currentTarget.value).catch((e) => showComposerError(e));
});

byId('reconnect-now').addEventListener('click', () => chat?.connection.retryNow());

byId('logout').addEventListener('click', async () => {
  setAccountMenu(false);
  const current = chat;
  chat = null;
  current?.stop();
  // Logging out abandons what was not sent: it must not go out under the next login.
  if (current) sessionStorage.removeItem(current.outboxKey);
  sessionStorage.removeItem('natter.current');
  await session.logout();
  showLogin();
});

document.addEventListener('visibilitychange', () => {
  const room = chat?.current && chat.room(chat.current);
  if (document.visibilityState !== 'visible' || !chat) return;
  // Back to the tab: rooms others created meanwhile show up without waiting for the poll.
  chat.refreshRooms().catch(() => {});
  if (room && ui.view === 'room') {
    chat.markRead(room);
    scheduleRender();
  }
});

// Typing indicators expire on their own; the connection countdown ticks.
setInterval(() => {
  if (chat) scheduleRender();
}, 1000);

const accounts = {
  chat: () => chat,
  scheduleRender: () => scheduleRender(),
  usersOpen: () => Boolean(chat) && ui.view === 'users',
  // Your own messages show the new name and picture at once (others' clients on reconnect).
  onProfile: (user) => chat?.loadProfiles([user.username]).catch(() => {}),
};
initAccounts(accounts);

const invite = inviteToken();
if (invite) showInvite(session, invite, () => showChat());
else if (session.loggedIn) showChat();
else showLogin();
