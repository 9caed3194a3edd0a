//! DOM helpers: every element the client builds goes through `h`, which sets text with
//! `textContent` only. There is no path from user content to `innerHTML` in this client.

/**
 * Creates an element. `props` keys: `class`, `text` (textContent), `on<event>` (listeners),
 * `hidden`, `disabled`, `value`, `dataset` (object), anything else as an attribute.
 * Children are nodes or strings (strings become text nodes, never markup).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'hidden' || key === 'disabled' || key === 'checked') el[key] = Boolean(value);
    else if (key === 'value') el.value = value;
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces all children of `el`. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

const signatures = new WeakMap();

/**
 * Rebuilds `el`'s children with `build()` only when `signature` (a string describing what is
 * shown) differs from last time: a periodic re-render then does not replace buttons under a
 * keyboard user's focus.
 */
export function renderOnChange(el, signature, build) {
  if (signatures.get(el) === signature) return;
  signatures.set(el, signature);
  replaceChildren(el, build());
}

/** The element with this id (the page's fixed skeleton). */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

/** "14:05", or "Mon 14:05" / "3 Mar 14:05" for older times. */
export function formatTime(ms) {
  const date = new Date(ms);
  const now = new Date();
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (date.toDateString() === now.toDateString()) return time;
  const sixDays = 6 * 24 * 3600 * 1000;
  if (now - date < sixDays) return `${date.toLocaleDateString([], { weekday: 'short' })} ${time}`;
  return `${date.toLocaleDateString([], { day: 'numeric', month: 'short' })} ${time}`;
}

/** A random id for client_msg_id and request ids; works outside secure contexts too. */
export function randomId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
