// The demo page: plain JavaScript, no build step. The stream is the package's browser
// module (sse-channels.js, served at /sse-channels.js): Svelte-style stores over the
// browser's own EventSource.
import { get, source } from "/sse-channels.js";

const EVENT_TYPES = ["message", "presence", "broadcast", "notice", "gap"];
// The module's states, as the badge shows them.
const LABELS = { connecting: "connecting", open: "live", reconnecting: "reconnecting", closed: "closed" };
const $ = (id) => document.getElementById(id);

let feed = null;
let stops = [];
let opens = 0;

// "Online now": the module's presence() store rebuilds the list from presence:broadcast (a
// snapshot, then joins and leaves, applied by version, as sse_channels.PresenceView does).
function renderOnline(online) {
  const list = $("online");
  list.replaceChildren();
  for (const member of [...online.members.keys()].sort()) {
    const item = document.createElement("li");
    item.dataset.user = member;
    item.textContent = member;
    list.append(item);
  }
  $("online-count").textContent = String(online.count);
}

function setState(state) {
  const badge = $("state");
  badge.textContent = state;
  badge.dataset.state = state;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function describe(type, text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    return text;
  }
  if (type === "gap") {
    return `some events on ${data.channel} are gone (${data.reason})`;
  }
  return typeof data === "object" && data !== null && "text" in data ? String(data.text) : text;
}

function show(type, data, lastEventId) {
  // Every event is shown as it arrives, without de-duplication: a resume that repeated or
  // lost an event would be visible here.
  const item = document.createElement("li");
  item.dataset.type = type;
  item.dataset.id = lastEventId;
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  const kind = document.createElement("span");
  kind.className = "kind";
  kind.textContent = type;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = describe(type, data);
  const id = document.createElement("code");
  id.className = "id";
  id.textContent = lastEventId;
  item.append(time, kind, text, id);
  $("feed").prepend(item);
  $("feed-empty").hidden = true;
  $("last-id").textContent = lastEventId || "none";
}

function connect() {
  disconnect();
  opens = 0;
  // Same origin: the browser sends the session cookie itself, and on every reconnect the
  // Last-Event-ID header, so the server resumes where this tab left off.
  const current = source("/events");
  feed = current;
  // The first event store to be subscribed opens the connection; one EventSource serves all.
  for (const type of EVENT_TYPES) {
    let first = true;
    const stop = current.select(type).subscribe((data) => {
      if (first) {
        first = false; // subscribe() hands over the current value at once: not an event
        return;
      }
      show(type, data, get(current.lastEventId));
    });
    stops.push(stop);
  }
  stops.push(current.presence().subscribe(renderOnline)); // a new source: an empty list first
  stops.push(
    current.state.subscribe((state) => {
      if (feed !== current) return;
      setState(LABELS[state]);
      if (state === "open") {
        opens += 1;
        $("reconnects").textContent = String(opens - 1);
      } else if (state === "closed") {
        // A non-200 answer (401: the session is gone) stops EventSource for good.
        disconnect();
        refresh(false).catch((error) => showError(error.message));
      }
    }),
  );
}

function disconnect() {
  feed = null;
  // The last unsubscribe closes the EventSource.
  for (const stop of stops.reverse()) stop();
  stops = [];
  setState("closed");
}

function render(session) {
  const users = $("users");
  users.replaceChildren();
  for (const [name, friends] of Object.entries(session.users)) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "user";
    button.dataset.user = name;
    const strong = document.createElement("strong");
    strong.textContent = name;
    const small = document.createElement("small");
    small.textContent = `friends: ${friends.join(", ")}`;
    button.append(strong, small);
    button.addEventListener("click", () => login(name));
    users.append(button);
  }
  const loggedIn = session.user !== null;
  $("login-panel").hidden = loggedIn;
  $("session-panel").hidden = !loggedIn;
  $("me").textContent = session.user || "";
  $("friends").textContent = session.friends.join(", ");
  document.title = loggedIn ? `${session.user} · sse-channels demo` : "sse-channels demo";
}

async function post(path, fields) {
  const response = await fetch(path, {
    method: "POST",
    body: new URLSearchParams(fields),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function refresh(autoConnect) {
  const response = await fetch("/session");
  const session = await response.json();
  render(session);
  if (session.user === null) {
    disconnect();
  } else if (feed === null) {
    if (autoConnect) connect();
    else showError("The server refused the event stream; reload the page to try again.");
  }
}

async function login(name) {
  showError("");
  disconnect();
  $("feed").replaceChildren();
  $("feed-empty").hidden = false;
  $("last-id").textContent = "none";
  render(await post("/login", { user: name }));
  connect();
}

async function logout() {
  disconnect();
  render(await post("/logout", {}));
}

$("logout").addEventListener("click", () => logout().catch((error) => showError(error.message)));
$("broadcast-form").addEventListener("submit", (submit) => {
  submit.preventDefault();
  const input = $("broadcast-text");
  post("/broadcast", { text: input.value })
    .then(() => {
      input.value = "";
      showError("");
    })
    .catch((error) => showError(error.message));
});

refresh(true).catch((error) => showError(error.message));
