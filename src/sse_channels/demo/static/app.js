// The demo page: plain JavaScript and the browser's own EventSource, no build step.
"use strict";

const EVENT_TYPES = ["message", "presence", "broadcast", "notice", "gap"];
const $ = (id) => document.getElementById(id);

let source = null;
let opens = 0;

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

function describe(event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return event.data;
  }
  if (event.type === "gap") {
    return `some events on ${data.channel} are gone (${data.reason})`;
  }
  return typeof data === "object" && data !== null && "text" in data ? String(data.text) : event.data;
}

function show(event) {
  // Every event is shown as it arrives, without de-duplication: a resume that repeated or
  // lost an event would be visible here.
  const item = document.createElement("li");
  item.dataset.type = event.type;
  item.dataset.id = event.lastEventId;
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  const kind = document.createElement("span");
  kind.className = "kind";
  kind.textContent = event.type;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = describe(event);
  const id = document.createElement("code");
  id.className = "id";
  id.textContent = event.lastEventId;
  item.append(time, kind, text, id);
  $("feed").prepend(item);
  $("feed-empty").hidden = true;
  $("last-id").textContent = event.lastEventId || "none";
}

function connect() {
  disconnect();
  opens = 0;
  setState("connecting");
  // Same origin: the browser sends the session cookie itself, and on every reconnect the
  // Last-Event-ID header, so the server resumes where this tab left off.
  const es = new EventSource("/events");
  source = es;
  es.onopen = () => {
    opens += 1;
    $("reconnects").textContent = String(opens - 1);
    setState("live");
  };
  es.onerror = () => {
    if (es !== source) return;
    if (es.readyState === EventSource.CLOSED) {
      // A non-200 answer (401: the session is gone) stops EventSource for good.
      setState("closed");
      source = null;
      refresh(false).catch((error) => showError(error.message));
    } else {
      setState("reconnecting");
    }
  };
  for (const type of EVENT_TYPES) es.addEventListener(type, show);
}

function disconnect() {
  if (source !== null) {
    source.close();
    source = null;
  }
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
  } else if (source === null) {
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
