// The browser module's stores under Svelte's own svelte/store functions (get, derived),
// and in a compiled Svelte component that reads them with `$store`. Run: npm test
// (pytest runs it too: tests/test_browser_node.py).
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

import { compile } from "svelte/compiler";
import { render } from "svelte/server";
import { derived, get } from "svelte/store";

import { get as ownGet, source, STATES } from "../../src/sse_channels/browser/sse-channels.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

// An EventSource that the test drives by hand: it opens, delivers, drops and refuses.
class FakeEventSource extends EventTarget {
  static made = [];

  constructor(url, init) {
    super();
    this.url = url;
    this.withCredentials = Boolean(init?.withCredentials);
    this.readyState = 0;
    FakeEventSource.made.push(this);
  }

  close() {
    this.readyState = 2;
  }

  opens() {
    this.readyState = 1;
    this.dispatchEvent(new Event("open"));
  }

  emit(type, data, lastEventId = "") {
    this.dispatchEvent(new MessageEvent(type, { data, lastEventId }));
  }

  drops() {
    this.readyState = 0;
    this.dispatchEvent(new Event("error"));
  }

  refuses() {
    this.readyState = 2;
    this.dispatchEvent(new Event("error"));
  }

  static open() {
    return FakeEventSource.made.filter((es) => es.readyState !== 2);
  }

  static reset() {
    FakeEventSource.made = [];
  }
}

function feed(options = {}) {
  return source("/events", { EventSource: FakeEventSource, ...options });
}

test("svelte's get() reads a store's value at once and leaves no connection open", () => {
  FakeEventSource.reset();
  const events = feed();
  assert.equal(get(events.select("news", "none yet")), "none yet");
  assert.equal(FakeEventSource.made.length, 1, "get() subscribed, which opened a connection");
  assert.equal(FakeEventSource.open().length, 0, "and unsubscribed, which closed it");
  assert.equal(get(events.state), "closed");
  assert.equal(ownGet(events.lastEventId), "");
});

test("get() sees the latest event while another subscriber holds the connection", () => {
  FakeEventSource.reset();
  const events = feed();
  const news = events.json("news");
  const seen = [];
  const stop = news.subscribe((value) => seen.push(value));
  const [es] = FakeEventSource.made;
  es.opens();
  es.emit("news", '{"title":"one"}', "k-1");
  es.emit("news", '{"title":"one"}', "k-2"); // the same data again still notifies
  assert.deepEqual(get(news), { title: "one" });
  assert.deepEqual(seen, [undefined, { title: "one" }, { title: "one" }]);
  assert.equal(get(events.lastEventId), "k-2");
  assert.equal(get(events.state), "open");
  assert.equal(FakeEventSource.made.length, 1, "get() shared the open connection");
  stop();
  assert.equal(FakeEventSource.open().length, 0);
});

test("derived() over two event stores and the state follows every change", () => {
  FakeEventSource.reset();
  const events = feed();
  const count = events.json("count", 0);
  const label = events.select("label", "-");
  const summary = derived(
    [count, label, events.state],
    ([$count, $label, $state]) => `${$label}:${$count} (${$state})`,
  );
  const seen = [];
  const stop = summary.subscribe((value) => seen.push(value));
  assert.equal(FakeEventSource.made.length, 1, "one connection for all the stores");
  const [es] = FakeEventSource.made;
  es.opens();
  es.emit("count", "1", "1");
  es.emit("label", "apples", "2");
  es.emit("count", "2", "3");
  es.drops();
  es.opens();
  assert.deepEqual(seen, [
    "-:0 (connecting)",
    "-:0 (open)",
    "-:1 (open)",
    "apples:1 (open)",
    "apples:2 (open)",
    "apples:2 (reconnecting)",
    "apples:2 (open)",
  ]);
  stop();
  assert.equal(FakeEventSource.open().length, 0, "the last unsubscribe closed it");
  assert.equal(get(events.state), "closed");
});

test("a new connection after all had left resumes from the last id in the query", () => {
  FakeEventSource.reset();
  const events = feed();
  let stop = events.select("news").subscribe(() => {});
  FakeEventSource.made[0].emit("news", "a", "k-7");
  stop();
  stop = events.select("news").subscribe(() => {});
  assert.equal(FakeEventSource.made[1].url, "/events?last_event_id=k-7");
  stop();
  const tagged = source("/events?x=1#top", { EventSource: FakeEventSource, lastEventId: "a b" });
  get(tagged.gap);
  assert.equal(FakeEventSource.made[2].url, "/events?x=1&last_event_id=a%20b#top");
});

test("gap signals reach the gap store and the onGap hook", () => {
  FakeEventSource.reset();
  const events = feed();
  const gaps = [];
  const stopHook = events.onGap((gap) => gaps.push(gap));
  const values = [];
  const stopStore = events.gap.subscribe((gap) => values.push(gap));
  const [es] = FakeEventSource.made;
  es.emit("gap", '{"reason":"expired","channel":"news"}', "k-9");
  const expected = { reason: "expired", channel: "news", id: "k-9" };
  assert.deepEqual(gaps, [expected]);
  assert.deepEqual(values, [null, expected]);
  stopHook();
  stopHook(); // twice is harmless
  assert.equal(FakeEventSource.open().length, 1, "the gap store still holds it");
  stopStore();
  assert.equal(FakeEventSource.open().length, 0);
});

test("a refusal closes the stream for good until reconnect()", () => {
  FakeEventSource.reset();
  const events = feed();
  const states = [];
  events.state.subscribe((state) => states.push(state));
  const stop = events.select().subscribe(() => {});
  FakeEventSource.made[0].refuses();
  assert.equal(FakeEventSource.made.length, 1, "no new connection by itself");
  events.reconnect();
  assert.equal(FakeEventSource.made.length, 2);
  stop();
  assert.deepEqual(states, ["closed", "connecting", "closed", "connecting", "closed"]);
  assert.deepEqual(STATES, ["connecting", "open", "reconnecting", "closed"]);
});

test("bad arguments are refused at the call", () => {
  assert.throws(() => source(42), TypeError);
  assert.throws(() => source("/e", { lastEventId: 5 }), TypeError);
  assert.throws(() => feed().select(""), TypeError);
  assert.throws(() => feed().onGap("no"), TypeError);
  assert.throws(() => feed().state.subscribe(), TypeError);
});

test("json() keeps its value and reports data that is not JSON", () => {
  FakeEventSource.reset();
  const errors = [];
  const events = feed({ onError: (error) => errors.push(error) });
  const stop = events.json("news", "start").subscribe(() => {});
  FakeEventSource.made[0].emit("news", "{not json", "1");
  assert.equal(get(events.json("news")), "start");
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof SyntaxError);
  stop();
});

// A component that reads the stores with `$store`, compiled by Svelte and rendered by
// svelte/server, as a SvelteKit +page.svelte is on the server.
const PAGE = `
<script>
  let { events } = $props();
  const news = events.json("news", { title: "nothing yet" });
  const state = events.state;
</script>
<h1>{$news.title}</h1>
<p>{$state}</p>
`;

async function compilePage() {
  const { js } = compile(PAGE, { generate: "server", filename: "+page.svelte" });
  // Inside node_modules, so that the compiled code's `svelte/...` imports resolve.
  const dir = join(ROOT, "node_modules", ".cache", "sse-channels-tests");
  await mkdir(dir, { recursive: true });
  const file = join(dir, `page-${process.pid}.js`);
  await writeFile(file, js.code);
  return (await import(pathToFileURL(file).href)).default;
}

// A seeded generator (mulberry32), so a failing seed can be run again.
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Joins and leaves of a few members, versions 1..n; the state after the first `upTo`.
function history(next, n) {
  const online = new Map();
  const changes = [];
  for (let v = 1; v <= n; v += 1) {
    const member = `m${Math.floor(next() * 6)}`;
    const type = online.has(member) ? "leave" : "join";
    const data = type === "join" ? { member, v, meta: { at: v } } : { member, v };
    if (type === "join") online.set(member, v);
    else online.delete(member);
    changes.push({ type, data });
  }
  const at = (upTo) => {
    const members = {};
    for (const { type, data } of changes.slice(0, upTo)) {
      if (type === "join") members[data.member] = { v: data.v, metas: [data.meta] };
      else delete members[data.member];
    }
    return members;
  };
  return { changes, at };
}

test("presence() rebuilds the exact member list from changes in any order, twice, around a snapshot", () => {
  for (let seed = 1; seed <= 300; seed += 1) {
    const next = random(seed);
    const n = 1 + Math.floor(next() * 40);
    const { changes, at } = history(next, n);
    // What a reader may receive: every change, some twice, shuffled, and (sometimes) a
    // snapshot at some version standing in for a gap.
    const received = changes.map(({ type, data }) => [type, data]);
    for (const { type, data } of changes) if (next() < 0.3) received.push([type, data]);
    // Some changes come several at a time, in one "diff" (a connect storm).
    for (let i = 0; i + 1 < received.length; i += 1) {
      if (next() < 0.2) {
        const group = received.splice(i, 2 + Math.floor(next() * 3));
        const joins = group.filter(([type]) => type === "join").map(([, data]) => data);
        const leaves = group.filter(([type]) => type === "leave").map(([, data]) => data);
        received.splice(i, 0, ["diff", { joins, leaves }]);
      }
    }
    for (let i = received.length - 1; i > 0; i -= 1) {
      const j = Math.floor(next() * (i + 1));
      [received[i], received[j]] = [received[j], received[i]];
    }
    if (next() < 0.7) {
      const v = Math.floor(next() * (n + 1));
      const where = Math.floor(next() * (received.length + 1));
      received.splice(where, 0, ["snapshot", { v, members: at(v) }]);
    }
    FakeEventSource.reset();
    const events = feed();
    const values = [];
    const stop = events.presence().subscribe((value) => values.push(value));
    const [es] = FakeEventSource.made;
    es.opens();
    for (const [type, data] of received) es.emit(type, JSON.stringify(data));
    const want = Object.keys(at(n)).sort();
    const last = values.at(-1);
    assert.deepEqual([...last.members.keys()].sort(), want, `seed ${seed}`);
    assert.equal(last.count, want.length, `seed ${seed}`);
    for (const member of want) {
      assert.deepEqual(last.members.get(member), [at(n)[member].metas[0]], `seed ${seed}`);
    }
    stop();
    assert.equal(FakeEventSource.open().length, 0, "the last unsubscribe closed it");
  }
});

test("presence() in a counts-only channel follows the count, and keeps old values unchanged", () => {
  FakeEventSource.reset();
  const events = feed();
  const values = [];
  const stop = events.presence().subscribe((value) => values.push(value));
  assert.equal(events.presence(), events.presence(), "one store per source");
  const [es] = FakeEventSource.made;
  es.opens();
  es.emit("snapshot", JSON.stringify({ v: 3, members: { ann: { v: 3, metas: [{}] } } }));
  es.emit("count", JSON.stringify({ count: 100000 }));
  es.emit("join", JSON.stringify({ member: "ann", v: 2, meta: {} })); // older than the snapshot
  es.emit("snapshot", "not json");
  assert.equal(values.length, 3, "the initial value, the snapshot, the count: nothing else");
  assert.equal(values[0].count, 0);
  assert.equal(values[0].members.size, 0, "the first value was not changed by later events");
  assert.deepEqual([...values[1].members.keys()], ["ann"]);
  assert.equal(values[2].count, 100000);
  stop();
});

test("a Svelte component reads the stores with $store syntax", async () => {
  const Page = await compilePage();
  FakeEventSource.reset();
  const events = feed();
  const holder = events.json("news").subscribe(() => {});
  const [es] = FakeEventSource.made;
  es.opens();
  es.emit("news", '{"title":"Hello from Python"}', "k-1");
  const { body } = render(Page, { props: { events } });
  assert.match(body, /<h1>Hello from Python<\/h1>/);
  assert.match(body, /<p>open<\/p>/);
  holder();
  assert.equal(FakeEventSource.open().length, 0, "render() unsubscribed from every store");
});

test("server-side rendering without EventSource shows the initial values", async (t) => {
  if (typeof globalThis.EventSource !== "undefined") {
    t.skip("this Node has a global EventSource");
    return;
  }
  const Page = await compilePage();
  const { body } = render(Page, { props: { events: source("/events") } });
  assert.match(body, /<h1>nothing yet<\/h1>/);
  assert.match(body, /<p>closed<\/p>/);
});
