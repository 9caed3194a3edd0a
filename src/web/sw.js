// The web client's service worker (served at /sw.js, scope /): it shows the Web Push messages
// natter sends while none of your tabs is connected, and a click on one opens its room, in an
// open tab of the client if there is one, else in a new one.
//
// It caches nothing and handles no fetch: the page and the API always come from the server.
// A push payload (decrypted by the browser) is the JSON documented in natter-protocol(7):
// {kind: "direct" | "mention" | "notification", room, room_title, seq, sender, sender_name,
// text, title, url, sent_at}. Every field is read defensively: a push must always show a
// notification (the subscription is userVisibleOnly), whatever it carries.

const ICON = '/assets/icon.svg';
/** The longest notification title and body shown (the server truncates the text already). */
const MAX_TITLE = 120;
const MAX_BODY = 300;

// A new version takes over at once (it holds no state to migrate), also for open tabs.
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

const text = (value, max) => (typeof value === 'string' ? value.slice(0, max) : '');

/** The notification's title for a payload: who wrote, and where. */
function titleOf(payload) {
  const sender = text(payload.sender_name, MAX_TITLE) || text(payload.sender, MAX_TITLE);
  const room = text(payload.room, MAX_TITLE);
  switch (payload.kind) {
    case 'direct':
      return sender || 'Direct message';
    case 'mention': {
      const where = text(payload.room_title, MAX_TITLE) || (room ? `#${room}` : '');
      return [sender || 'Someone', where].filter(Boolean).join(' in ');
    }
    default:
      return text(payload.title, MAX_TITLE) || 'natter';
  }
}

/** What to show for a push: [title, options]. A payload that is not JSON (or none) still
 * shows a notification, a generic one. */
function notificationFor(data) {
  let payload = null;
  try {
    payload = data ? data.json() : null;
  } catch {
    payload = null;
  }
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) {
    return ['natter', { body: 'Something new happened in natter.', tag: 'natter', icon: ICON, data: { room: null, url: null } }];
  }
  const room = typeof payload.room === 'string' && payload.room ? payload.room : null;
  const url = typeof payload.url === 'string' ? payload.url : null;
  return [titleOf(payload), {
    body: text(payload.text, MAX_BODY),
    // One notification per room: a newer message replaces the older one.
    tag: room || 'natter',
    icon: ICON,
    data: { room, url },
  }];
}

self.addEventListener('push', (event) => {
  const [title, options] = notificationFor(event.data);
  event.waitUntil(self.registration.showNotification(title, options));
});

/** The client's own windows (the page at /), the focused one first. */
async function appWindows() {
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const ours = windows.filter((client) => new URL(client.url).pathname === '/');
  return ours.sort((a, b) => Number(b.focused) - Number(a.focused));
}

/** Opens `room` (or just the client when null): tells an open window, else opens one. */
async function openRoom(room) {
  const [client] = await appWindows();
  if (client) {
    client.postMessage({ type: 'natter-open-room', room });
    try {
      await client.focus();
    } catch {
      // Focusing needs the click's user activation; the window has the room open either way.
    }
    return;
  }
  await self.clients.openWindow(room ? `/#room=${encodeURIComponent(room)}` : '/');
}

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const room = event.notification.data?.room ?? null;
  const opening = openRoom(typeof room === 'string' ? room : null).catch(() => {});
  try {
    event.waitUntil(opening);
  } catch {
    // An event not dispatched by the browser itself cannot be extended; the work runs anyway.
  }
});
