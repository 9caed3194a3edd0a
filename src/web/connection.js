//! The WebSocket connection to `/ws` (natter's native protocol): connecting with the access
//! token, requests matched to their replies by id, server Pings, token renewal in-band, and
//! reconnecting with exponential backoff. What to do once connected (joining rooms, flushing the
//! outbox) is the chat state's business (`onOpen`).

import { ApiError } from './api.js';

/** Backoff before reconnect attempt n (ms): 0.5 s doubling up to 30 s, with ±20 % jitter so a
 * restarted server is not hit by every client at the same instant. */
function backoffDelay(attempt) {
  const base = Math.min(30_000, 500 * 2 ** attempt);
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** No frame at all for this long means the link is dead (the server pings every 30 s). */
const SILENCE_LIMIT_MS = 75_000;

/** An Error frame answering a request: `code` is the protocol's (400, 403, 404, 429, ...). */
export class RequestError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class Connection {
  /**
   * handlers: onOpen(welcome), onEvent(frame), onState({state, retryInMs, reason}),
   * onFatal(reason) when reconnecting is pointless (account disabled or session gone).
   */
  constructor(session, handlers) {
    this.session = session;
    this.handlers = handlers;
    this.socket = null;
    this.state = 'idle';
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map();
    this.retryTimer = null;
    this.silenceTimer = null;
    this.stopped = false;
    this.onOnline = () => this.retryNow();
    window.addEventListener('online', this.onOnline);
  }

  get isOpen() {
    return this.state === 'online';
  }

  setState(state, extra = {}) {
    this.state = state;
    this.handlers.onState({ state, ...extra });
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.silenceTimer);
    window.removeEventListener('online', this.onOnline);
    if (this.socket) this.socket.close(1000, 'bye');
    this.socket = null;
    this.failPending('disconnected');
    this.setState('stopped');
  }

  /** Skips the remaining backoff wait. */
  retryNow() {
    if (this.stopped || this.state !== 'waiting') return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  async connect() {
    if (this.stopped) return;
    this.setState('connecting');
    let token;
    try {
      token = await this.session.freshAccess(60);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return this.fatal('Your session has ended.');
      return this.scheduleRetry('cannot reach the server');
    }
    if (this.stopped) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    let socket;
    try {
      // The token travels as a subprotocol: browsers cannot set headers on a WebSocket, and a
      // query string could end up in a proxy's log.
      socket = new WebSocket(`${scheme}://${location.host}/ws`, [`access_token.${token}`]);
    } catch {
      return this.scheduleRetry('cannot connect');
    }
    this.socket = socket;
    let welcomed = false;
    socket.onmessage = (message) => {
      if (socket !== this.socket) return;
      this.heard();
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (!welcomed) {
        if (frame.type === 'Status' && frame.data?.status === 'connected') {
          welcomed = true;
          this.attempt = 0;
          this.setState('online');
          this.handlers.onOpen(frame.data.details);
        }
        // Anything before the welcome is the refusal's Error frame; its close code follows.
        return;
      }
      this.dispatch(frame);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      clearTimeout(this.silenceTimer);
      this.failPending('disconnected');
      this.closed(event.code, event.reason);
    };
    this.heard();
  }

  /** Restarts the dead-link timer (any frame proves the link works). */
  heard() {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => {
      if (this.socket) this.socket.close(4000, 'no frames from the server');
    }, SILENCE_LIMIT_MS);
  }

  async closed(code, reason) {
    if (this.stopped) return;
    if (code === 4403) return this.fatal(`Disconnected: ${reason || 'account disabled'}.`);
    if (code === 4401) {
      // The access token was refused or expired: a new pair, then straight back.
      try {
        await this.session.refresh();
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) {
          return this.fatal('Your session has ended.');
        }
        return this.scheduleRetry('cannot reach the server');
      }
      // Straight back once; if the fresh token is refused too, back off like any failure.
      if (this.attempt === 0) {
        this.attempt = 1;
        return this.connect();
      }
      return this.scheduleRetry('authentication refused');
    }
    // 1001 server going away, 4008 slow consumer, 4000 heartbeat, 1006 dropped, 4429, ...
    this.scheduleRetry(reason || (code === 1006 ? 'connection lost' : `closed (${code})`));
  }

  scheduleRetry(reason) {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt);
    this.attempt = Math.min(this.attempt + 1, 10);
    this.setState('waiting', { retryInMs: delay, reason });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  fatal(reason) {
    this.stopped = true;
    this.setState('stopped', { reason });
    this.handlers.onFatal(reason);
  }

  failPending(reason) {
    for (const { reject } of this.pending.values()) reject(new RequestError(0, reason));
    this.pending.clear();
  }

  dispatch(frame) {
    if (frame.id !== undefined && this.pending.has(frame.id)) {
      const { resolve, reject } = this.pending.get(frame.id);
      this.pending.delete(frame.id);
      if (frame.type === 'Error') reject(new RequestError(frame.data?.code, frame.data?.message));
      else resolve(frame);
      return;
    }
    if (frame.id !== undefined) return; // a second reply (the Ack after a Status): not needed
    switch (frame.type) {
      case 'Ping':
        this.send('Pong', frame.data);
        return;
      case 'AuthStatus':
        this.renew();
        return;
      default:
        this.handlers.onEvent(frame);
    }
  }

  /** In-band renewal before the server's expiry: a new pair over HTTP, then Authenticate. */
  async renew() {
    try {
      await this.session.refresh();
      await this.request('Authenticate', { token: this.session.access });
    } catch {
      // The server closes with 4401 if it was not renewed; `closed` takes it from there.
    }
  }

  /** Sends a frame without waiting for a reply. False when not connected. */
  send(type, data) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify({ type, data }));
    return true;
  }

  /** Sends a request and resolves with its reply frame (rejects with a RequestError). */
  request(type, data) {
    return new Promise((resolve, reject) => {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN || this.state !== 'online') {
        reject(new RequestError(0, 'not connected'));
        return;
      }
      const id = `r${this.nextId++}`;
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ type, data, id }));
    });
  }
}
