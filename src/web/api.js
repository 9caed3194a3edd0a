//! The session (access and refresh tokens) and the HTTP API calls, with token refresh.
//!
//! Tokens are kept in sessionStorage, not localStorage: a refresh token may be used only once
//! (natter rotates it, and treats a second use as theft by revoking the whole session). Two tabs
//! sharing one refresh token through localStorage would race to rotate it and log each other
//! out; with sessionStorage each tab is its own session. It survives a reload of the tab and is
//! gone when the tab is closed.

const STORAGE_KEY = 'natter.session';

/** An HTTP API error: `status` (0 when the server could not be reached), `code`, `message`. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** The claims of a JWT (not verified: the server does that; the client only reads `exp`). */
export function jwtClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = part + '='.repeat((4 - (part.length % 4)) % 4);
    return JSON.parse(atob(padded));
  } catch {
    return {};
  }
}

async function request(method, path, { body, token } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    throw new ApiError(0, 'network', 'cannot reach the server');
  }
  let json = null;
  try {
    json = await response.json();
  } catch {
    json = null;
  }
  if (!response.ok) {
    const retryAfter = Number(response.headers.get('retry-after')) || null;
    throw new ApiError(
      response.status,
      json?.code ?? 'http_error',
      json?.error ?? `HTTP ${response.status}`,
      retryAfter,
    );
  }
  return json;
}

export class Session {
  constructor() {
    this.tokens = null;
    this.refreshing = null;
    /** Called once the session is gone for good (refresh refused): back to the login form. */
    this.onExpired = () => {};
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? 'null');
      if (saved?.access && saved?.refresh) this.tokens = saved;
    } catch {
      this.tokens = null;
    }
  }

  get loggedIn() {
    return this.tokens !== null;
  }

  get access() {
    return this.tokens?.access ?? null;
  }

  get username() {
    return this.tokens ? jwtClaims(this.tokens.access).username ?? '' : '';
  }

  get role() {
    return this.tokens ? jwtClaims(this.tokens.access).role ?? 'user' : 'user';
  }

  /** Seconds until the access token expires (negative once it has). */
  accessSecondsLeft() {
    const exp = this.tokens ? jwtClaims(this.tokens.access).exp : 0;
    return (exp ?? 0) - Date.now() / 1000;
  }

  store(pair) {
    this.tokens = { access: pair.access, refresh: pair.refresh };
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(this.tokens));
  }

  clear() {
    this.tokens = null;
    sessionStorage.removeItem(STORAGE_KEY);
  }

  async login(username, password) {
    const pair = await request('POST', '/api/token/', { body: { username, password } });
    this.store(pair);
  }

  /** Signs up with an invite token (no login): the new account's tokens become this tab's. */
  async acceptInvite(token, username, password, displayName) {
    const body = { username, password };
    if (displayName) body.display_name = displayName;
    this.store(await request('POST', `/api/v1/invites/${encodeURIComponent(token)}/accept`, { body }));
  }

  /**
   * Rotates the token pair. Only one rotation runs at a time: every caller waits for the same
   * one, because presenting the old refresh token twice would revoke the session.
   */
  refresh() {
    if (!this.refreshing) {
      const refresh = this.tokens?.refresh;
      this.refreshing = (async () => {
        if (!refresh) throw new ApiError(401, 'invalid_token', 'not logged in');
        try {
          this.store(await request('POST', '/api/token/refresh/', { body: { refresh } }));
        } catch (e) {
          if (e.status === 401) {
            this.clear();
            this.onExpired();
          }
          throw e;
        }
      })().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  /**
   * An access token valid for at least `margin` more seconds (at most a third of its lifetime,
   * for servers configured with short-lived tokens), refreshed if needed.
   */
  async freshAccess(margin = 30) {
    const claims = this.tokens ? jwtClaims(this.tokens.access) : {};
    const lifetime = (claims.exp ?? 0) - (claims.iat ?? 0);
    const wanted = lifetime > 0 ? Math.min(margin, lifetime / 3) : margin;
    if (this.accessSecondsLeft() < wanted) await this.refresh();
    return this.access;
  }

  async logout() {
    const refresh = this.tokens?.refresh;
    this.clear();
    if (refresh) {
      // Best effort: the tokens are gone from this tab either way.
      await request('POST', '/api/token/revoke/', { body: { refresh } }).catch(() => {});
    }
  }

  /** An authenticated API call; a 401 refreshes the tokens and tries once more. */
  async api(method, path, body) {
    const token = await this.freshAccess();
    try {
      return await request(method, path, { body, token });
    } catch (e) {
      if (e.status !== 401 || !this.tokens) throw e;
      await this.refresh();
      return request(method, path, { body, token: this.access });
    }
  }

  /** Uploads `file` as the raw body of a POST; a 401 refreshes the tokens and tries once more. */
  async upload(path, file) {
    const send = async (token) => {
      let response;
      try {
        response = await fetch(path, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': file.type || 'application/octet-stream',
          },
          body: file,
          cache: 'no-store',
        });
      } catch {
        throw new ApiError(0, 'network', 'cannot reach the server');
      }
      const json = await response.json().catch(() => null);
      if (!response.ok) {
        throw new ApiError(response.status, json?.code ?? 'http_error', json?.error ?? `HTTP ${response.status}`);
      }
      return json;
    };
    try {
      return await send(await this.freshAccess());
    } catch (e) {
      if (e.status !== 401 || !this.tokens) throw e;
      await this.refresh();
      return send(this.access);
    }
  }

  /** Downloads an authenticated file as a Blob. */
  async fetchBlob(path) {
    const token = await this.freshAccess();
    const response = await fetch(path, { headers: { authorization: `Bearer ${token}` } });
    if (!response.ok) throw new ApiError(response.status, 'http_error', `HTTP ${response.status}`);
    return response.blob();
  }
}
