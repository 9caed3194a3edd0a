// Test support for the browser tests: a real natter process (the already built binary, a
// temporary data dir, a loopback port), headless Debian Chromium through playwright-core, and
// small helpers that wait for observable conditions (never fixed sleeps).

import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '../..');
export const SCREENSHOTS = path.join(HERE, 'screenshots');

/** The natter binary under test: NATTER_BIN, else the debug build. Nothing is built here. */
export function natterBin() {
  return process.env.NATTER_BIN
    ? path.resolve(process.env.NATTER_BIN)
    : path.join(REPO, 'target/debug/natter');
}

/** Longest wait for anything the tests expect to happen. */
export const WAIT_MS = 20_000;

/** A natter daemon in a child process. */
export class Natter {
  constructor(dataDir) {
    this.dataDir = dataDir;
    this.child = null;
    this.log = '';
    this.address = null;
  }

  /** A fresh temporary data dir; the first start creates the initial admin there. */
  static async fresh() {
    return new Natter(await mkdtemp(path.join(tmpdir(), 'natter-browser-')));
  }

  get base() {
    return `http://${this.address}`;
  }

  /** Starts `natter serve` on `listen` (port 0: any free port) and waits until it serves. */
  async start(listen = '127.0.0.1:0', settings = {}) {
    const env = { ...process.env };
    // Only the settings given here: none of the caller's NATTER_* variables.
    for (const key of Object.keys(env)) if (key.startsWith('NATTER_')) delete env[key];
    Object.assign(env, { NATTER_LOG: 'info' }, settings);
    this.settings = settings;
    const child = spawn(natterBin(), ['serve', '--data-dir', this.dataDir, '--listen', listen], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    this.exited = exited;
    this.address = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`natter did not start within ${WAIT_MS} ms:\n${this.log}`)), WAIT_MS);
      const onData = (chunk) => {
        this.log += chunk.toString();
        // The log line "natter is serving" carries the bound address as listen=ADDR.
        const match = /natter is serving.*?listen=(\S+)/.exec(this.log);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`natter exited (${code ?? signal}) before serving:\n${this.log}`));
      });
    });
    return this;
  }

  /** SIGTERM, then waits for a clean exit (0). */
  async stop() {
    if (!this.child) return;
    const child = this.child;
    this.child = null;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), WAIT_MS);
    const { code, signal } = await this.exited;
    clearTimeout(timer);
    if (code !== 0) throw new Error(`natter exited with ${code ?? signal}:\n${this.log}`);
  }

  async adminPassword() {
    return (await readFile(path.join(this.dataDir, 'initial-admin-password'), 'utf8')).trim();
  }

  async removeDataDir() {
    await rm(this.dataDir, { recursive: true, force: true });
  }

  /** A JSON API call; throws on a non-2xx answer. */
  async api(method, route, { token, body } = {}) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`${this.base}${route}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await response.json().catch(() => null);
    if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${JSON.stringify(json)}`);
    return json;
  }

  async token(username, password) {
    return (await this.api('POST', '/api/token/', { body: { username, password } })).access;
  }
}

/** Headless Debian Chromium. Without the background-networking flags a closed network makes
 * Chromium stall on its own update and sync requests. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // Pages served by the NATTER_WEB_DIR route have no server address, so Chromium's local
      // network access checks would count them as public and block their loopback WebSocket.
      ...(process.env.NATTER_WEB_DIR ? ['--disable-features=LocalNetworkAccessChecks'] : []),
    ],
  });
}

const CONTENT_TYPES = { '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.html': 'text/html' };

/**
 * A browser context (its own cookies and sessionStorage: one user). Records dialogs (none may
 * ever open) and page errors. For working on the client without rebuilding natter,
 * NATTER_WEB_DIR=src/web serves the page's files from disk instead of the binary's copies.
 */
export async function newContext(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  context.dialogs = [];
  context.errors = [];
  const devDir = process.env.NATTER_WEB_DIR;
  if (devDir) {
    await context.route((url) => url.pathname === '/' || url.pathname.startsWith('/assets/'), async (route) => {
      const url = new URL(route.request().url());
      const file = url.pathname === '/' ? 'index.html' : url.pathname.slice('/assets/'.length);
      const response = await route.fetch();
      const body = await readFile(path.join(path.resolve(REPO, devDir), file)).catch(() => null);
      if (!body) return route.fulfill({ response });
      const headers = { ...response.headers(), 'content-type': CONTENT_TYPES[path.extname(file) || '.html'] };
      delete headers['content-length'];
      delete headers.etag;
      return route.fulfill({ status: 200, body, headers });
    });
  }
  context.on('page', (page) => watchPage(context, page));
  return context;
}

function watchPage(context, page) {
  page.setDefaultTimeout(WAIT_MS);
  page.on('dialog', (dialog) => {
    context.dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => context.errors.push(String(error)));
}

/** The end of a suite: no dialog ever opened and no uncaught page error in any of its
 * contexts; then the browser closes and natter stops, its data dir removed. */
export async function finish({ contexts, browser, natter }) {
  for (const context of contexts) {
    assert.deepEqual(context.dialogs, [], 'no dialog ever opened');
    assert.deepEqual(context.errors, [], 'no uncaught page error');
  }
  await browser?.close();
  await natter?.stop();
  await natter?.removeDataDir();
}

/** Polls `probe` until it returns a truthy value (returned) or the deadline passes. */
export async function eventually(probe, what, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export async function screenshot(page, name) {
  await mkdir(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
}

// ----- the client's UI ------------------------------------------------------------------------

export async function login(page, base, username, password) {
  await page.goto(`${base}/`);
  await page.locator('#login-form').getByLabel('Username', { exact: true }).fill(username);
  await page.locator('#login-form').getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await connected(page);
}

export async function connected(page) {
  await page.locator('#connection[data-state="online"]').waitFor();
}

/** The stored messages shown in the open room: [{seq, author, text}] in display order. */
export function shownMessages(page) {
  return page.$$eval('#message-list li.msg:not(.pending)', (items) => items.map((li) => ({
    seq: Number(li.dataset.seq),
    author: li.dataset.author,
    text: li.querySelector('.msg-body')?.textContent ?? '',
  })));
}

export async function openRoom(page, label) {
  await page.locator('#sidebar').getByRole('button', { name: new RegExp(`^${label}(,|$)`) }).click();
  await page.locator('#room-title', { hasText: label }).waitFor();
}

export async function send(page, text) {
  const input = page.getByLabel('Message', { exact: true });
  await input.fill(text);
  await input.press('Enter');
}

/** The shown message with exactly this text. */
export function message(page, text) {
  return page.locator('#message-list li.msg:not(.pending)').filter({
    has: page.locator('.msg-body', { hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }),
  });
}

/** Waits until `text` is shown exactly once, and returns the list. */
export async function seeOnce(page, text) {
  return eventually(async () => {
    const all = await shownMessages(page);
    return all.filter((m) => m.text === text).length === 1 ? all : null;
  }, `"${text}" shown once`);
}

/** Sequence numbers shown are strictly increasing without gaps (nothing lost or doubled). */
export function assertContiguous(assert, list) {
  const seqs = list.map((m) => m.seq);
  for (let i = 1; i < seqs.length; i++) {
    assert.equal(seqs[i], seqs[i - 1] + 1, `seq ${seqs[i]} follows ${seqs[i - 1]}: ${seqs.join(',')}`);
  }
}

/** A valid PNG of one colour, `width` x `height` (an image of a real size for layout tests). */
export function solidPng(width, height) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (bytes) => {
    let c = 0xffffffff;
    for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), body.length + 4);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // truecolour RGB
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(width * 3, 0x5a)]);
  const pixels = deflateSync(Buffer.concat(Array.from({ length: height }, () => row)));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header), chunk('IDAT', pixels), chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Whether the open room's message view is scrolled to its bottom. */
export function atBottom(page) {
  return page.locator('#messages').evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 2);
}
