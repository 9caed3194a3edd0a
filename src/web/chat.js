//! The chat state: rooms with their messages (by sequence number), presence, typing, the
//! notifications inbox and the outbox of messages not yet acknowledged. It drives the
//! connection (joins with resume, sends) and tells the UI what changed through `onChange`.
//!
//! The rules it keeps (natter-protocol(7), ROOMS AND RESUME):
//! - messages are kept by seq, so a message seen twice (replay, history, live) is one message;
//! - `seen` is the highest seq received from the room's event stream; every (re)connect joins
//!   with `since: seen`, so the server replays exactly what was missed;
//! - every send carries a `client_msg_id` and stays in the outbox until its Ack: after a
//!   disconnect it is sent again with the same id, and the server stores it at most once.

import { Connection, RequestError } from './connection.js';
import { randomId } from './dom.js';

/** How many messages one history page asks for. */
const PAGE = 50;
/** Re-reading loaded messages after a reconnect (edits and deletes made meanwhile) stops after
 * this many pages of 200. */
const MAX_RESYNC_PAGES = 5;
/** Pages of 200 a jump to a search hit loads at most to reach it. */
const MAX_JUMP_PAGES = 25;
/** Someone's typing indicator lasts this long without a fresh Typing event. */
const TYPING_TTL_MS = 6000;
/** The room list is re-read this often while connected: it is how a client learns of public
 * rooms others created (rooms it is added to, and direct rooms others open, are announced by a
 * Membership event and listed at once). */
const ROOMS_POLL_MS = 30_000;
/** Read receipts for one room go out at most this often. */
const READ_INTERVAL_MS = 2000;
/** The server lets a connection join at most this many rooms (ws.max_joined_rooms default). */
const MAX_JOINED = 100;
/** Rooms asked for per page of GET /api/v1/rooms (the server allows up to 500). */
const ROOMS_PAGE = 200;
/** Pages of the room list read at most in one refresh (a bound, not an expectation). */
const MAX_ROOM_PAGES = 100;
/** Usernames one GET /api/v1/profiles asks for (the server's bound). */
const PROFILES_PAGE = 100;
/** Profiles kept in memory at most; beyond it the cache starts over (and refills as needed). */
const MAX_PROFILES = 2000;

/** The other user of a direct room `dm:A:B`, seen from `me`. */
export function directPeer(roomName, me) {
  if (!roomName.startsWith('dm:')) return null;
  const [, a, b] = roomName.split(':');
  return a === me ? b : a;
}

/** How long a 429's message ("... retry in 480 ms") says to wait, at least a second. */
function retryDelay(message) {
  const match = /retry in (\d+) ms/.exec(message ?? '');
  return Math.max(1000, match ? Number(match[1]) : 5000);
}

export class Chat {
  constructor(session) {
    this.session = session;
    this.me = session.username;
    this.role = session.role;
    this.users = [];
    this.rooms = new Map();
    this.presence = new Map();
    this.myStatus = 'online';
    this.current = null;
    this.notifications = [];
    this.unreadNotifications = 0;
    this.connectionState = { state: 'connecting' };
    this.outboxKey = `natter.outbox.${this.me}`;
    this.outbox = this.loadOutbox();
    this.flushing = false;
    this.listedOnce = false;
    this.pollTimer = null;
    this.localKey = 0;
    // username -> {display_name, avatar_url}, or null for a name that is no user (any more).
    this.profiles = new Map();
    this.profilesWanted = new Set();
    this.profilesTimer = null;
    this.onChange = () => {};
    this.onFatal = () => {};
    // A message that wants the user's attention arrived (it mentions them, or a direct
    // message) while its room is not in view: (room, message).
    this.onAttention = () => {};
    this.connection = new Connection(session, {
      onOpen: (welcome) => this.opened(welcome),
      onEvent: (frame) => this.event(frame),
      onState: (state) => {
        this.connectionState = state;
        if (state.state !== 'online') {
          for (const room of this.rooms.values()) room.joined = false;
          // Nobody's presence is known while we are not connected; re-read on reconnect.
          this.presence.clear();
        }
        this.changed('connection');
      },
      onFatal: (reason) => this.onFatal(reason),
    });
  }

  start() {
    this.connection.start();
    this.refreshRooms().catch(() => {});
  }

  stop() {
    clearInterval(this.pollTimer);
    this.connection.stop();
  }

  changed(what) {
    this.onChange(what);
  }

  // ----- rooms ----------------------------------------------------------------------------

  room(name) {
    return this.rooms.get(name) ?? null;
  }

  /** Creates or updates a room from a summary of GET /api/v1/rooms. */
  upsertRoom(summary) {
    let room = this.rooms.get(summary.name);
    if (!room) {
      room = {
        name: summary.name,
        messages: new Map(),
        seen: null,
        oldest: null,
        hasMore: true,
        loaded: false,
        stale: false,
        loading: false,
        joined: false,
        typing: new Map(),
        members: [],
        readSent: 0,
      };
      this.rooms.set(summary.name, room);
    }
    Object.assign(room, {
      id: summary.id,
      visibility: summary.visibility,
      owner: summary.owner,
      persistent: summary.persistent,
      member: summary.member,
      title: summary.title ?? null,
      topic: summary.topic ?? null,
      lastSeq: summary.last_seq,
      direct: summary.name.startsWith('dm:'),
      // Whether pushes (and this page's notices) for the room are off; null where the server
      // has no per-room mute.
      muted: typeof summary.muted === 'boolean' ? summary.muted : null,
    });
    // Resume point for a room never seen before: from now on (older ones come from History).
    if (room.seen === null && room.persistent) room.seen = summary.last_seq;
    room.unread = summary.name === this.current ? 0 : summary.unread;
    room.mentions = summary.name === this.current ? 0 : summary.mentions ?? 0;
    return room;
  }

  /** Every room we can see: GET /api/v1/rooms is paged, so follow next_cursor to the end. */
  async listRooms() {
    const rooms = [];
    let cursor = null;
    for (let page = 0; page < MAX_ROOM_PAGES; page++) {
      const query = cursor === null ? `?limit=${ROOMS_PAGE}` : `?limit=${ROOMS_PAGE}&cursor=${encodeURIComponent(cursor)}`;
      const reply = await this.session.api('GET', `/api/v1/rooms${query}`);
      rooms.push(...reply.rooms);
      cursor = reply.next_cursor ?? null;
      if (cursor === null) break;
    }
    return rooms;
  }

  async refreshRooms() {
    const rooms = await this.listRooms();
    const names = new Set();
    const arrived = [];
    for (const summary of rooms) {
      if (this.listedOnce && !this.rooms.has(summary.name)) arrived.push(summary.name);
      this.upsertRoom(summary);
      names.add(summary.name);
    }
    this.listedOnce = true;
    // A room that appeared since the last listing (a first direct message, a room we were
    // added to) and already mentions us: its messages came before we could hear them live.
    for (const name of arrived) this.attendArrived(this.room(name)).catch(() => {});
    for (const name of [...this.rooms.keys()]) {
      if (!names.has(name)) {
        this.rooms.delete(name);
        if (this.current === name) this.current = null;
      }
    }
    this.changed('rooms');
    const current = this.current && this.room(this.current);
    if (current && !current.loaded && !current.loading) this.open(current.name).catch(() => {});
    await this.joinAll();
  }

  async attendArrived(room) {
    if (!room?.member || !(room.mentions > 0) || room.name === this.current) return;
    const { messages } = await this.history(room, { limit: 1 });
    const last = messages?.[messages.length - 1];
    if (last && last.author !== this.me) this.onAttention(room, last);
  }

  /** Joins every member room not joined on this connection, resuming from `seen`. */
  async joinAll() {
    if (!this.connection.isOpen) return;
    const wanted = [...this.rooms.values()].filter((room) => room.member && !room.joined);
    const joinedCount = [...this.rooms.values()].filter((room) => room.joined).length;
    const fresh = wanted.slice(0, Math.max(0, MAX_JOINED - joinedCount));
    await Promise.all(fresh.map((room) => this.join(room)));
    const directs = fresh.filter((room) => room.direct);
    await Promise.all(directs.map((room) => this.loadMembers(room).catch(() => {})));
  }

  async join(room) {
    room.joined = true;
    const data = { room: room.name };
    if (room.persistent && room.seen !== null) data.since = room.seen;
    try {
      const reply = await this.connection.request('Join', data);
      const details = reply.data.details;
      if (room.persistent && details.complete === false && details.since !== null) {
        // More was missed than one replay holds, or the server has less than we think: start
        // this room over from the newest page.
        room.messages.clear();
        room.seen = details.last_seq;
        room.oldest = null;
        room.hasMore = true;
        room.loaded = false;
        if (this.current === room.name) this.loadLatest(room).catch(() => {});
      }
      this.changed('messages');
    } catch (e) {
      room.joined = false;
      if (e.code === 403 || e.code === 404) this.refreshRooms().catch(() => {});
      // Joins are rate-limited per user (a whole connection's rooms at once, then about one a
      // second): try again once the server says a join will pass.
      if (e.code === 429) setTimeout(() => this.joinAll().catch(() => {}), retryDelay(e.message));
    }
  }

  /** Joins a public room (it makes us a member) and shows it. */
  async joinPublic(name) {
    await this.session.api('POST', `/api/v1/rooms/${encodeURIComponent(name)}/members/${encodeURIComponent(this.me)}`);
    await this.refreshRooms();
  }

  async createRoom(name, visibility) {
    const room = await this.session.api('POST', '/api/v1/rooms', { name, visibility });
    await this.refreshRooms();
    return room.name;
  }

  /** Opens (creating if needed) the direct room with `username`; returns its name. */
  async openDirect(username) {
    const peer = username.replace(/^@/, '').trim().toLowerCase();
    // A Join of @peer creates the room on first use (HTTP reads never create rooms).
    if (!this.connection.isOpen) throw new Error('You are offline: try again once connected.');
    let reply;
    try {
      reply = await this.connection.request('Join', { room: `@${peer}` });
    } catch (e) {
      throw new Error(e.code === 404 ? `There is no user ${peer}.` : e.message);
    }
    const name = reply.data.details.room;
    await this.refreshRooms();
    const room = this.room(name);
    if (room) room.joined = true;
    return name;
  }

  /** Leaves a room: no longer a member, and this connection stops hearing it. */
  async leaveRoom(roomName) {
    await this.session.api('DELETE', `/api/v1/rooms/${encodeURIComponent(roomName)}/members/${encodeURIComponent(this.me)}`);
    if (this.connection.isOpen) await this.connection.request('Leave', { room: roomName }).catch(() => {});
    const room = this.room(roomName);
    if (room) room.joined = false;
    if (this.current === roomName) this.current = null;
    await this.refreshRooms();
  }

  /** Deletes a room with its messages (its owner or an admin). */
  async deleteRoom(roomName) {
    await this.session.api('DELETE', `/api/v1/rooms/${encodeURIComponent(roomName)}`);
    if (this.current === roomName) this.current = null;
    await this.refreshRooms();
  }

  /** Sets (a string) or clears (null) a room's title and/or topic (its owner or an admin).
   * The title is what the client shows as the room's name; the name itself never changes. */
  /** Mutes or unmutes a room's notifications (PUT / DELETE /api/v1/rooms/{room}/mute). */
  async setMuted(roomName, muted) {
    await this.session.api(muted ? 'PUT' : 'DELETE', `/api/v1/rooms/${encodeURIComponent(roomName)}/mute`);
    const room = this.room(roomName);
    if (room) room.muted = muted;
    this.changed('rooms');
  }

    async updateRoom(roomName, changes) {
    const updated = await this.session.api('PATCH', `/api/v1/rooms/${encodeURIComponent(roomName)}`, changes);
    const room = this.room(roomName);
    if (room) {
      room.title = updated.title ?? null;
      room.topic = updated.topic ?? null;
    }
    this.changed('rooms');
  }

  // ----- profiles -------------------------------------------------------------------------

  /** A user's profile if known (`undefined`: not yet asked; `null`: no such user); asks the
   * server for unknown ones in the background (batched), then re-renders. */
  profile(username) {
    const known = this.profiles.get(username);
    if (known === undefined && username) this.wantProfile(username);
    return known;
  }

  wantProfile(username) {
    this.profilesWanted.add(username);
    this.profilesTimer ??= setTimeout(() => {
      this.profilesTimer = null;
      this.loadProfiles().catch(() => {});
    }, 0);
  }

  /** Asks for the profiles wanted and not known yet; with `names`, asks for those again (a
   * refresh: what is shown stays until the answer replaces it). */
  async loadProfiles(names = null) {
    const refresh = names !== null;
    if (!refresh) {
      names = [...this.profilesWanted].filter((name) => !this.profiles.has(name));
      this.profilesWanted.clear();
      if (this.profiles.size + names.length > MAX_PROFILES) this.profiles.clear();
    }
    if (names.length === 0) return;
    for (let i = 0; i < names.length; i += PROFILES_PAGE) {
      const page = names.slice(i, i + PROFILES_PAGE);
      // Asked for: not asked again meanwhile (a failed ask is forgotten, to be retried).
      if (!refresh) for (const name of page) this.profiles.set(name, null);
      let reply;
      try {
        reply = await this.session.api('GET', `/api/v1/profiles?names=${page.map(encodeURIComponent).join(',')}`);
      } catch (e) {
        if (!refresh) for (const name of page) this.profiles.delete(name);
        throw e;
      }
      const found = new Map((reply.profiles ?? []).map((p) => [p.username, p]));
      for (const name of page) {
        const p = found.get(name);
        this.profiles.set(name, p ? { display_name: p.display_name, avatar_url: p.avatar_url ?? null } : null);
      }
    }
    this.changed('profiles');
  }

  async removeMember(roomName, username) {
    await this.session.api('DELETE', `/api/v1/rooms/${encodeURIComponent(roomName)}/members/${encodeURIComponent(username)}`);
    const room = this.room(roomName);
    if (room) await this.loadMembers(room);
  }

  async addMember(roomName, username) {
    await this.session.api('POST', `/api/v1/rooms/${encodeURIComponent(roomName)}/members/${encodeURIComponent(username.trim().toLowerCase())}`);
    const room = this.room(roomName);
    if (room) await this.loadMembers(room);
  }

  async loadMembers(room) {
    const detail = await this.session.api('GET', `/api/v1/rooms/${encodeURIComponent(room.name)}`);
    room.members = detail.members ?? [];
    for (const [user, status] of Object.entries(detail.presence ?? {})) {
      this.presence.set(user, status);
    }
    this.changed('members');
  }

  /** Shows a room: loads its newest page if needed, members, and marks it read. */
  async open(name) {
    this.current = name;
    const room = this.room(name);
    this.changed('current');
    if (!room) return;
    room.unread = 0;
    room.mentions = 0;
    if (!room.loaded || room.stale) await this.loadLatest(room);
    this.loadMembers(room).catch(() => {});
    this.markRead(room);
  }

  /** The newest page, or after a reconnect every loaded page again (edits made meanwhile). */
  async loadLatest(room) {
    if (room.loading) return;
    room.loading = true;
    try {
      if (room.loaded && room.stale && room.oldest !== null) {
        let after = room.oldest - 1;
        for (let page = 0; page < MAX_RESYNC_PAGES; page++) {
          const result = await this.history(room, { after, limit: 200 });
          this.merge(room, result.messages);
          if (!result.has_more || result.messages.length === 0) break;
          after = result.messages[result.messages.length - 1].seq;
        }
      } else {
        const result = await this.history(room, { limit: PAGE });
        this.merge(room, result.messages);
        room.hasMore = result.has_more;
        if (result.messages.length) room.oldest = Math.min(room.oldest ?? Infinity, result.messages[0].seq);
      }
      room.loaded = true;
      room.stale = false;
    } finally {
      room.loading = false;
      this.changed('messages');
    }
  }

  /** One more page of older messages (scrolling up). */
  async loadOlder(room) {
    if (room.loading || !room.hasMore || !room.persistent) return;
    room.loading = true;
    this.changed('messages');
    try {
      const query = { limit: PAGE };
      if (room.oldest !== null) query.before = room.oldest;
      const result = await this.history(room, query);
      this.merge(room, result.messages);
      room.hasMore = result.has_more;
      if (result.messages.length) room.oldest = Math.min(room.oldest ?? Infinity, result.messages[0].seq);
    } finally {
      room.loading = false;
      this.changed('history');
    }
  }

  /** Full-text search over what the user may read (`GET /api/v1/search`): one page. */
  search(q, { cursor = null, room = null } = {}) {
    const params = new URLSearchParams({ q });
    if (cursor) params.set('cursor', cursor);
    if (room) params.set('room', room);
    return this.session.api('GET', `/api/v1/search?${params}`);
  }

  /** Loads older pages until message `seq` is loaded (a search hit to jump to), at most
   * MAX_JUMP_PAGES of them. Whether it is loaded now. */
  async loadBackTo(room, seq) {
    room.loading = true;
    try {
      for (let page = 0; page < MAX_JUMP_PAGES && !room.messages.has(seq); page++) {
        if (!room.hasMore || !room.persistent) break;
        const query = { limit: 200 };
        if (room.oldest !== null) query.before = room.oldest;
        const result = await this.history(room, query);
        this.merge(room, result.messages);
        room.hasMore = result.has_more;
        if (!result.messages.length) break;
        room.oldest = Math.min(room.oldest ?? Infinity, result.messages[0].seq);
      }
    } finally {
      room.loading = false;
      this.changed('history');
    }
    return room.messages.has(seq);
  }

  history(room, query) {
    const params = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
    return this.session.api('GET', `/api/v1/rooms/${encodeURIComponent(room.name)}/messages?${params}`);
  }

  /** Stores messages from History (current state wins over what we had). */
  merge(room, messages) {
    for (const message of messages) this.putMessage(room, message);
  }

  putMessage(room, message) {
    const key = room.persistent ? message.seq : ++this.localKey;
    const old = room.messages.get(key);
    room.messages.set(key, { ...message, key, v: (old?.v ?? 0) + 1 });
  }

  // ----- the connection -------------------------------------------------------------------

  async opened(welcome) {
    this.me = welcome.user.username;
    this.role = welcome.user.role;
    // Edits and deletes of messages we already had are not replayed: re-read them when shown.
    for (const room of this.rooms.values()) {
      room.joined = false;
      if (room.loaded) room.stale = true;
    }
    clearInterval(this.pollTimer);
    // Names and avatars may have changed while we were away: ask for the known ones again.
    if (this.profiles.size) this.loadProfiles([...this.profiles.keys()]).catch(() => {});
    this.pollTimer = setInterval(() => this.refreshRooms().catch(() => {}), ROOMS_POLL_MS);
    try {
      await this.refreshRooms();
    } catch {
      // The rooms we know are joined below all the same.
      await this.joinAll();
    }
    if (this.myStatus !== 'online') this.setStatus(this.myStatus).catch(() => {});
    this.loadNotifications().catch(() => {});
    const current = this.current && this.room(this.current);
    if (current) {
      await this.loadLatest(current).catch(() => {});
      this.loadMembers(current).catch(() => {});
      this.markRead(current);
    }
    this.flush();
  }

  event(frame) {
    const data = frame.data ?? {};
    const room = typeof data.room === 'string' ? this.room(data.room) : null;
    switch (frame.type) {
      case 'Message': {
        if (!room) {
          // A room we did not know yet: refreshing the list lists it, and notifies of it if it
          // mentions us (see attendArrived).
          this.refreshRooms().catch(() => {});
          return;
        }
        this.putMessage(room, data);
        if (room.persistent && data.seq > (room.seen ?? 0)) room.seen = data.seq;
        room.lastSeq = Math.max(room.lastSeq ?? 0, data.seq);
        room.typing.delete(data.author);
        if (data.author === this.me && data.client_msg_id) this.dropFromOutbox(data.client_msg_id);
        if (data.author !== this.me) {
          // The server lists who a message mentions (in a direct room, the recipient too).
          const forMe = (data.mentions ?? []).includes(this.me) || room.direct;
          const inView = this.current === room.name && document.visibilityState === 'visible';
          if (inView) this.markRead(room);
          else {
            room.unread = (room.unread ?? 0) + 1;
            if (forMe) room.mentions = (room.mentions ?? 0) + 1;
          }
          if (forMe && !inView) this.onAttention(room, data);
        }
        this.changed('messages');
        return;
      }
      case 'MessageEdited':
      case 'MessageDeleted': {
        const message = room?.messages.get(data.seq);
        if (!message) return;
        const update = frame.type === 'MessageEdited'
          ? { content: data.content, edited_at: data.edited_at, mentions: data.mentions ?? message.mentions }
          : { content: '', deleted: true, edited_at: Math.floor(Date.now() / 1000) };
        room.messages.set(data.seq, { ...message, ...update, v: message.v + 1 });
        this.changed('messages');
        return;
      }
      case 'Reaction': {
        const message = room?.messages.get(data.seq);
        if (!message) return;
        room.messages.set(data.seq, { ...message, reactions: withReaction(message.reactions ?? [], data), v: message.v + 1 });
        this.changed('messages');
        return;
      }
      case 'RoomUpdated':
        if (room) {
          room.title = data.title ?? null;
          room.topic = data.topic ?? null;
          this.changed('rooms');
        }
        return;
      case 'Typing': {
        if (!room || data.user === this.me) return;
        if (data.is_typing) room.typing.set(data.user, Date.now() + TYPING_TTL_MS);
        else room.typing.delete(data.user);
        this.changed('typing');
        return;
      }
      case 'Presence':
        this.presence.set(data.username, data.status);
        this.changed('presence');
        return;
      case 'Membership':
        if (data.user === this.me) {
          this.refreshRooms().catch(() => {});
        } else if (room) {
          // Re-read the members with their presence: a newcomer's was never announced to us.
          this.loadMembers(room).catch(() => {});
        }
        return;
      case 'Read':
        if (room && data.user === this.me) {
          room.unread = Math.max(0, (room.seen ?? 0) - data.seq);
          if (room.unread === 0) room.mentions = 0;
          this.changed('rooms');
        }
        return;
      case 'Status':
        if (data.status === 'removed') this.refreshRooms().catch(() => {});
        return;
      case 'Notification':
        this.notifications.unshift(data);
        this.unreadNotifications += 1;
        this.changed('notifications');
        return;
      default:
        // Broadcast, DirectMessage (topic messaging) and admin Events are not shown here.
    }
  }

  /** Typing indicators still fresh in a room (expired ones are dropped). */
  typingIn(room) {
    const now = Date.now();
    for (const [user, until] of room.typing) if (until < now) room.typing.delete(user);
    return [...room.typing.keys()].sort();
  }

  markRead(room) {
    if (!room.member || !room.persistent || !this.connection.isOpen) return;
    const seq = room.seen ?? 0;
    room.unread = 0;
    room.mentions = 0;
    if (seq <= room.readSent) return;
    // Read counts against the connection's message rate like Send: in a busy room, one per
    // READ_INTERVAL_MS (the latest position) leaves the budget to what the user sends.
    const wait = (room.readAt ?? 0) + READ_INTERVAL_MS - Date.now();
    if (wait > 0) {
      room.readTimer ??= setTimeout(() => {
        room.readTimer = null;
        this.markRead(room);
      }, wait);
      return;
    }
    room.readAt = Date.now();
    room.readSent = seq;
    this.connection.request('Read', { room: room.name, seq }).catch(() => {
      room.readSent = 0;
    });
    this.changed('rooms');
  }

  // ----- sending ----------------------------------------------------------------------------

  loadOutbox() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(this.outboxKey) ?? '[]');
      return Array.isArray(saved) ? saved : [];
    } catch {
      return [];
    }
  }

  saveOutbox() {
    sessionStorage.setItem(this.outboxKey, JSON.stringify(this.outbox));
  }

  dropFromOutbox(clientMsgId) {
    const before = this.outbox.length;
    this.outbox = this.outbox.filter((entry) => entry.clientMsgId !== clientMsgId);
    if (this.outbox.length !== before) this.saveOutbox();
  }

  /** Queues a message; it is sent now if connected, else on reconnect. */
  send(roomName, content, replyTo = null) {
    this.outbox.push({
      clientMsgId: randomId(),
      room: roomName,
      content,
      replyTo,
      createdAt: Date.now(),
      error: null,
    });
    this.saveOutbox();
    this.changed('messages');
    this.flush();
  }

  pendingIn(roomName) {
    return this.outbox.filter((entry) => entry.room === roomName);
  }

  retry(clientMsgId) {
    const entry = this.outbox.find((e) => e.clientMsgId === clientMsgId);
    if (entry) entry.error = null;
    this.saveOutbox();
    this.changed('messages');
    this.flush();
  }

  discard(clientMsgId) {
    this.dropFromOutbox(clientMsgId);
    this.changed('messages');
  }

  /** Sends the outbox in order, one at a time, while connected. */
  async flush() {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.connection.isOpen) {
        const entry = this.outbox.find((e) => !e.error);
        if (!entry) break;
        const data = { room: entry.room, content: entry.content, client_msg_id: entry.clientMsgId };
        if (entry.replyTo) data.reply_to = entry.replyTo;
        let ack;
        try {
          ack = await this.connection.request('Send', data);
        } catch (e) {
          if (!(e instanceof RequestError) || e.code === 0) break; // disconnected: resent later
          if (e.code === 429 || e.code === 500) {
            setTimeout(() => this.flush(), 1500);
            break;
          }
          entry.error = e.message || `refused (${e.code})`;
          this.saveOutbox();
          this.changed('messages');
          continue;
        }
        this.acknowledged(entry, ack.data);
      }
    } finally {
      this.flushing = false;
    }
  }

  acknowledged(entry, ack) {
    const room = this.room(ack.room);
    if (room && room.persistent && !room.messages.has(ack.seq)) {
      // Shown at once; the room's Message event (right after the Ack) brings the stored copy.
      this.putMessage(room, {
        room: ack.room,
        seq: ack.seq,
        author: this.me,
        content: entry.content,
        reply_to: entry.replyTo,
        created_at_ms: Date.now(),
        edited_at: null,
        deleted: false,
        client_msg_id: entry.clientMsgId,
      });
    }
    this.dropFromOutbox(entry.clientMsgId);
    this.changed('messages');
    if (!room || !room.joined) this.refreshRooms().catch(() => {});
  }

  /** Uploads a file to a room; it arrives as a message with the file in its attachments. */
  async upload(roomName, file) {
    const name = encodeURIComponent(file.name || 'file');
    const posted = await this.session.upload(`/api/v1/rooms/${encodeURIComponent(roomName)}/files?name=${name}`, file);
    const room = this.room(posted.room);
    if (room && room.persistent && !room.messages.has(posted.seq)) this.putMessage(room, posted.message);
    this.changed('messages');
  }

  /** An attached file's content as a Blob (the download needs the access token). */
  download(attachment) {
    return this.session.fetchBlob(attachment.url);
  }

  async edit(roomName, seq, content) {
    await this.connection.request('Edit', { room: roomName, seq, content });
  }

  /** Adds (or, with `remove`, takes back) the user's reaction `emoji` to a message. */
  async react(roomName, seq, emoji, remove = false) {
    const reply = await this.connection.request('React', { room: roomName, seq, emoji, remove });
    const room = this.room(roomName);
    const message = room?.messages.get(seq);
    if (message && Array.isArray(reply?.data?.reactions)) {
      room.messages.set(seq, { ...message, reactions: reply.data.reactions, v: message.v + 1 });
      this.changed('messages');
    }
  }

  async remove(roomName, seq) {
    await this.connection.request('Delete', { room: roomName, seq });
  }

  typing(roomName, isTyping) {
    this.connection.send('Typing', { room: roomName, is_typing: isTyping });
  }

  async setStatus(status) {
    this.myStatus = status;
    await this.connection.request('SetStatus', { status });
    this.presence.set(this.me, status);
    this.changed('presence');
  }

  // ----- users (admins) ---------------------------------------------------------------------

  async loadUsers() {
    this.users = (await this.session.api('GET', '/api/v1/users')).users;
    this.changed('users');
  }

  async createUser(username, password, role) {
    await this.session.api('POST', '/api/v1/users', { username, password, role });
    await this.loadUsers();
  }

  async setUserEnabled(username, enabled) {
    await this.session.api('POST', `/api/v1/users/${encodeURIComponent(username)}/${enabled ? 'enable' : 'disable'}`);
    await this.loadUsers();
  }

  // ----- notifications --------------------------------------------------------------------

  async loadNotifications() {
    const inbox = await this.session.api('GET', '/api/v1/notifications?limit=100');
    this.notifications = inbox.notifications;
    this.unreadNotifications = inbox.unread;
    this.changed('notifications');
  }

  async markNotificationRead(id) {
    const updated = await this.session.api('POST', `/api/v1/notifications/${id}/read`);
    const item = this.notifications.find((n) => n.id === id);
    if (item && !item.read) {
      item.read = updated.read;
      this.unreadNotifications = Math.max(0, this.unreadNotifications - 1);
    }
    this.changed('notifications');
  }
}

/** A message's reactions after a `Reaction` event (the server's count is the truth). */
function withReaction(reactions, event) {
  const out = reactions.map((r) => ({ ...r, users: [...r.users] }));
  let entry = out.find((r) => r.emoji === event.emoji);
  if (!entry) {
    entry = { emoji: event.emoji, count: 0, users: [] };
    out.push(entry);
    out.sort((a, b) => (a.emoji < b.emoji ? -1 : a.emoji > b.emoji ? 1 : 0));
  }
  if (event.added && !entry.users.includes(event.user)) entry.users.push(event.user);
  if (!event.added) entry.users = entry.users.filter((u) => u !== event.user);
  entry.count = event.count;
  return out.filter((r) => r.count > 0);
}
