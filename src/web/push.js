//! Web Push in the page: the service worker (/sw.js), and the account menu's "Push
//! notifications" control that subscribes this browser with the server's VAPID key and hands
//! the subscription to natter (POST/DELETE /api/v1/push/subscriptions).
//!
//! Permission is asked only when the user turns the control on, never on load. Registering the
//! worker on load asks nothing: it lets a click on a push notification reach an open tab.
//! A browser subscription belongs to the browser, not to a login: the user who turned it on is
//! remembered in localStorage, and only their later logins re-send it to the server (a
//! subscription lives per session there); anyone else sees the control off.

import { ApiError } from './api.js';

const OWNER_KEY = 'natter.push.user';
/** How long the browser's push service may take to subscribe before we say it did not. */
const SUBSCRIBE_TIMEOUT_MS = 15_000;

/** Whether this browser can do Web Push here at all; else why not, in words. */
function unsupportedReason() {
  if (!window.isSecureContext) return 'Push notifications need the page over HTTPS.';
  if (!('serviceWorker' in navigator) || !('PushManager' in window) || typeof window.Notification !== 'function') {
    return 'This browser does not support push notifications.';
  }
  return null;
}

/** The bytes of an unpadded base64url string. */
function base64UrlBytes(text) {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function sameBytes(a, b) {
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** The client's service worker, at the root so that it serves the whole page. */
const registerWorker = () => navigator.serviceWorker.register('/sw.js', { scope: '/' });

function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class Push {
  constructor(onChange) {
    this.onChange = onChange;
    this.registration = null;
    // 'unsupported' | 'off' | 'on' | 'working'
    this.state = unsupportedReason() ? 'unsupported' : 'off';
    this.error = unsupportedReason() ?? '';
  }

  set(state, error = '') {
    this.state = state;
    this.error = error;
    this.onChange();
  }

  /** Registers the worker (no permission needed) and shows whether push is on; a
   * subscription this user made earlier is handed to this login's session again. */
  async start(session) {
    if (this.state === 'unsupported') return;
    try {
      this.registration = await registerWorker();
      const subscription = await this.registration.pushManager.getSubscription();
      const mine = subscription && localStorage.getItem(OWNER_KEY) === session.username;
      if (!mine || Notification.permission !== 'granted') {
        this.set('off');
        return;
      }
      const key = await this.serverKey(session);
      if (!sameBytes(subscription.options.applicationServerKey ?? new ArrayBuffer(0), key)) {
        // The server has a new key (a new data dir): that subscription can never work again.
        await subscription.unsubscribe().catch(() => {});
        this.set('off');
        return;
      }
      await session.api('POST', '/api/v1/push/subscriptions', subscription.toJSON());
      this.set('on');
    } catch (e) {
      this.set('off', this.explain(e));
    }
  }

  /** The server's VAPID public key (65 bytes, an uncompressed P-256 point). */
  async serverKey(session) {
    let reply;
    try {
      reply = await session.api('GET', '/api/v1/push/key');
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        throw new Error('This server does not send push notifications.');
      }
      throw e;
    }
    const key = typeof reply?.public_key === 'string' ? base64UrlBytes(reply.public_key) : null;
    if (!key || key.length !== 65 || key[0] !== 4) throw new Error('The server sent an unusable push key.');
    return key;
  }

  /** The account menu's control was used: on → off, off (or an error) → on. */
  toggle(session) {
    if (this.state === 'working' || this.state === 'unsupported') return Promise.resolve();
    return this.state === 'on' ? this.disable(session) : this.enable(session);
  }

  async enable(session) {
    this.set('working');
    try {
      const permission = await Notification.requestPermission();
      if (permission !== 'granted') {
        this.set('off', permission === 'denied'
          ? 'Notifications are blocked for this site: allow them in the browser\'s site settings, then try again.'
          : 'Push notifications stay off: the browser did not get your permission.');
        return;
      }
      this.registration ??= await registerWorker();
      const key = await this.serverKey(session);
      const old = await this.registration.pushManager.getSubscription();
      // Someone else's, or made with another key: the push service gives a new one.
      if (old) await old.unsubscribe().catch(() => {});
      let subscription;
      try {
        subscription = await withTimeout(
          this.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }),
          SUBSCRIBE_TIMEOUT_MS,
          'the push service did not answer',
        );
      } catch (e) {
        throw new Error(`This browser could not subscribe to its push service (${e?.message ?? e}). Some browsers, and headless ones, have none.`);
      }
      try {
        await session.api('POST', '/api/v1/push/subscriptions', subscription.toJSON());
      } catch (e) {
        await subscription.unsubscribe().catch(() => {});
        throw e;
      }
      localStorage.setItem(OWNER_KEY, session.username);
      this.set('on');
    } catch (e) {
      this.set('off', this.explain(e));
    }
  }

  async disable(session) {
    this.set('working');
    try {
      const subscription = await this.registration?.pushManager.getSubscription();
      if (subscription) {
        // The server first: should it fail, the control stays on and says so.
        await session.api('DELETE', '/api/v1/push/subscriptions', { endpoint: subscription.endpoint });
        await subscription.unsubscribe().catch(() => {});
      }
      localStorage.removeItem(OWNER_KEY);
      this.set('off');
    } catch (e) {
      this.set('on', this.explain(e));
    }
  }

  explain(e) {
    if (e instanceof ApiError) {
      if (e.status === 0) return 'Cannot reach the server: push notifications unchanged.';
      if (e.status === 404) return 'This server does not send push notifications.';
      return `The server refused: ${e.message}`;
    }
    return e?.message ?? String(e);
  }

  /** The control's label. */
  label() {
    return {
      unsupported: 'Push notifications: unavailable',
      off: 'Push notifications: off',
      on: 'Push notifications: on',
      working: 'Push notifications: …',
    }[this.state];
  }
}
