// sse-channels.js: the browser's own EventSource as Svelte-compatible stores.
//
// A plain ES module, no build step and no dependency: serve it (sse_channels.browser),
// copy it, or import it from a bundler. Every store keeps the Svelte store contract:
// subscribe(fn) calls fn at once with the current value and returns the function that
// unsubscribes. So `$store` works in Svelte components, and svelte/store's get() and
// derived() work on them, as does plain JavaScript.
//
//   import { source } from "/sse-channels.js";
//   const feed = source("/events");
//   const news = feed.json("news");                 // the latest "news" event, parsed
//   const stop = news.subscribe((value) => render(value));
//   feed.state.subscribe((state) => badge(state));  // connecting, open, reconnecting, closed
//   stop();                                         // the last one out closes the connection
//
// The connection opens with the first subscriber to an event store (select, json, gap,
// onGap) and closes after the last one leaves; state and lastEventId only watch. While
// open, the browser reconnects by itself after a dropped connection and sends the
// Last-Event-ID header, so the server resumes. A new connection made later (a subscriber
// after all had left, or reconnect()) sends the last id as a query parameter instead
// (`?last_event_id=`, which sse-channels' SSEApp reads), since EventSource cannot set
// headers. For the same reason it cannot send an Authorization header: use a same-origin
// cookie session (HttpOnly), and never put a long-lived token in the URL, where logs and
// referrers keep it.

const CLOSED = 2; // EventSource.CLOSED, without needing EventSource to exist (SSR, Node)

/** The four connection states, in the order a connection goes through them. */
export const STATES = Object.freeze(["connecting", "open", "reconnecting", "closed"]);

/**
 * The current value of a store: subscribe, read, unsubscribe (as svelte/store's get).
 * @template T
 * @param {{subscribe(run: (value: T) => void): () => void}} store
 * @returns {T}
 */
export function get(store) {
  let value;
  store.subscribe((current) => {
    value = current;
  })();
  return value;
}

// A value with subscribers; start() runs when the first subscribes, stop() after the last.
function cell(initial, start, stop) {
  let value = initial;
  const subscribers = new Set();
  const store = {
    subscribe(run) {
      if (typeof run !== "function") {
        throw new TypeError("subscribe() needs a function");
      }
      const subscriber = { run };
      subscribers.add(subscriber);
      if (subscribers.size === 1 && start) start();
      run(value);
      return () => {
        if (!subscribers.delete(subscriber)) return; // unsubscribing twice is harmless
        if (subscribers.size === 0 && stop) stop();
      };
    },
  };
  return {
    store,
    get: () => value,
    set(next) {
      value = next;
      for (const subscriber of [...subscribers]) {
        if (subscribers.has(subscriber)) subscriber.run(value);
      }
    },
  };
}

function withParam(url, name, value) {
  const hash = url.indexOf("#");
  const base = hash < 0 ? url : url.slice(0, hash);
  const fragment = hash < 0 ? "" : url.slice(hash);
  const sep = base.includes("?") ? "&" : "?";
  return `${base}${sep}${encodeURIComponent(name)}=${encodeURIComponent(value)}${fragment}`;
}

/**
 * A stream of server-sent events as stores, connected while anyone listens.
 *
 * @param {string | URL} url the event stream (same origin: the cookie session goes along).
 * @param {object} [options]
 * @param {boolean} [options.withCredentials] send cookies to another origin (CORS).
 * @param {string} [options.lastEventId] resume from this id on the first connection.
 * @param {string | null} [options.resumeParam] the query parameter that carries the last
 *   id on a new connection ("last_event_id"); null to never add it.
 * @param {typeof EventSource} [options.EventSource] the EventSource to use (a polyfill,
 *   or a fake in tests); default the browser's. Without one (server-side rendering) the
 *   stores keep their initial values and state stays "closed".
 * @param {(error: unknown) => void} [options.onError] called when json() cannot parse an
 *   event's data (the store keeps its value); default console.error.
 */
export function source(url, options = {}) {
  if (typeof url !== "string" && !(url instanceof URL)) {
    throw new TypeError("source() needs a URL string");
  }
  const target = String(url);
  const {
    withCredentials = false,
    lastEventId: initialId = "",
    resumeParam = "last_event_id",
    EventSource: Impl = globalThis.EventSource,
    onError = (error) => console.error(error),
  } = options;
  if (typeof initialId !== "string") throw new TypeError("lastEventId must be a string");

  const state = cell("closed");
  const last = cell(initialId);
  /** @type {Map<string, {handler: (event: MessageEvent) => void, sinks: Set<Function>}>} */
  const types = new Map();
  let es = null;
  let users = 0;

  function open() {
    if (es !== null || Impl === undefined) return;
    const id = last.get();
    const current = new Impl(id && resumeParam ? withParam(target, resumeParam, id) : target, {
      withCredentials,
    });
    es = current;
    for (const [type, entry] of types) current.addEventListener(type, entry.handler);
    current.addEventListener("open", () => {
      if (es === current) state.set("open");
    });
    current.addEventListener("error", () => {
      if (es !== current) return;
      if (current.readyState === CLOSED) {
        // A refusal (any status but 200, or not text/event-stream): the browser gives up.
        es = null;
        state.set("closed");
      } else {
        state.set("reconnecting"); // the browser tries again by itself, with Last-Event-ID
      }
    });
    state.set("connecting");
  }

  function shut() {
    if (es === null) return;
    const current = es;
    es = null;
    current.close();
    state.set("closed");
  }

  function acquire() {
    users += 1;
    if (users === 1) open();
  }

  function release() {
    users -= 1;
    if (users === 0) shut();
  }

  // Deliver events of `type` to `sink` until the returned function is called.
  function listen(type, sink) {
    let entry = types.get(type);
    if (entry === undefined) {
      const sinks = new Set();
      const handler = (event) => {
        // The id first, so that a sink that reads lastEventId sees this event's.
        if (typeof event.lastEventId === "string" && event.lastEventId !== last.get()) {
          last.set(event.lastEventId);
        }
        for (const deliver of [...sinks]) deliver(event);
      };
      entry = { handler, sinks };
      types.set(type, entry);
      if (es !== null) es.addEventListener(type, handler);
    }
    const { sinks } = entry;
    const wrapped = (event) => sink(event);
    sinks.add(wrapped);
    return () => {
      sinks.delete(wrapped);
      if (sinks.size === 0) {
        types.delete(type);
        if (es !== null) es.removeEventListener(type, entry.handler);
      }
    };
  }

  // A store of the latest event of `type`, mapped by `pick`; it holds the connection.
  function eventStore(type, initial, pick) {
    if (typeof type !== "string" || type === "") {
      throw new TypeError("an event type must be a non-empty string");
    }
    let stop = null;
    const value = cell(
      initial,
      () => {
        stop = listen(type, (event) => {
          let next;
          try {
            next = pick(event);
          } catch (error) {
            onError(error);
            return;
          }
          value.set(next);
        });
        acquire();
      },
      () => {
        stop();
        stop = null;
        release();
      },
    );
    return value.store;
  }

  // Who is online: one member list per source, folded from the presence events.
  let members = null;
  function presenceStore() {
    const view = memberList();
    const stops = [];
    const value = cell(
      view.value(),
      () => {
        for (const type of PRESENCE_EVENTS) {
          stops.push(
            listen(type, (event) => {
              let changed;
              try {
                changed = view.apply(type, JSON.parse(event.data));
              } catch (error) {
                onError(error);
                return;
              }
              if (changed) value.set(view.value());
            }),
          );
        }
        acquire();
      },
      () => {
        for (const stop of stops.splice(0)) stop();
        release();
      },
    );
    return value.store;
  }

  const selected = new Map();
  const parsed = new Map();
  const gap = eventStore("gap", null, (event) => {
    const data = JSON.parse(event.data);
    return { reason: data.reason, channel: data.channel ?? null, id: event.lastEventId };
  });

  return Object.freeze({
    url: target,
    /** "connecting" | "open" | "reconnecting" | "closed"; watching it opens nothing. */
    state: state.store,
    /** The id the next connection resumes from ("" for none); watching it opens nothing. */
    lastEventId: last.store,
    /** The latest gap signal, {reason, channel, id}, or null. */
    gap,
    /**
     * The data (a string) of the latest event of `type`; `initial` until one arrives.
     * Every event calls the subscribers, even with the same data as the one before.
     */
    select(type = "message", initial = undefined) {
      if (!selected.has(type)) selected.set(type, eventStore(type, initial, (e) => e.data));
      return selected.get(type);
    },
    /** As select(), with the data parsed as JSON. */
    json(type = "message", initial = undefined) {
      if (!parsed.has(type)) {
        parsed.set(
          type,
          eventStore(type, initial, (e) => JSON.parse(e.data)),
        );
      }
      return parsed.get(type);
    },
    /**
     * Who is online, {members, count}, rebuilt from the presence events this stream
     * carries (subscribe the stream to one "presence:<channel>"): a snapshot, then joins
     * and leaves (alone, or several in a "diff"), applied by version, so a resumed or
     * repeated change is applied once.
     * `members` maps each member to the metadata of its connections; `count` is its
     * size, or, in a counts-only channel, the count the server sends. Every change
     * brings a new value (a copy: one handed out never changes); it holds the
     * connection like select().
     */
    presence() {
      if (members === null) members = presenceStore();
      return members;
    },
    /** Call fn({reason, channel, id}) for every gap signal; returns the unsubscribe. */
    onGap(fn) {
      if (typeof fn !== "function") throw new TypeError("onGap() needs a function");
      const stop = listen("gap", (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch (error) {
          onError(error);
          return;
        }
        fn({ reason: data.reason, channel: data.channel ?? null, id: event.lastEventId });
      });
      acquire();
      let done = false;
      return () => {
        if (done) return;
        done = true;
        stop();
        release();
      };
    },
    /** Close the connection now; reconnect() opens it again, as does the first subscriber
     *  after all have left. */
    close: shut,
    /** Open a new connection (after close() or a refusal), resuming from lastEventId. */
    reconnect() {
      shut();
      if (users > 0) open();
    },
  });
}

// -- presence -------------------------------------------------------------------------------

const PRESENCE_EVENTS = ["snapshot", "join", "leave", "diff", "count"];
// Members who left, remembered to ignore a join that arrives after its leave (as the
// Python PresenceView).
const TOMBSTONES = 4096;

// The member list of one presence channel, as sse_channels.PresenceView keeps it: each
// member's version is the last change applied; an older change, or one the snapshot
// already covers, changes nothing.
function memberList() {
  const metas = new Map(); // member -> metadata of its connections
  const versions = new Map(); // member -> version of the change that put it there
  const gone = new Map(); // member -> version of its leave (insertion order: oldest first)
  let base = 0;
  let count = 0;
  let current = null;
  return {
    value() {
      // A copy per change: a value once handed out never changes under its holder.
      if (current === null) current = Object.freeze({ members: new Map(metas), count });
      return current;
    },
    // Apply one event's parsed data; true if the list changed.
    apply(type, data) {
      if (type === "count") {
        count = Number(data.count);
      } else if (type === "snapshot") {
        const at = Number(data.v);
        const fresh = data.members;
        for (const [member, version] of [...versions]) {
          if (!Object.hasOwn(fresh, member) && version <= at) {
            versions.delete(member);
            metas.delete(member);
          }
        }
        for (const [member, entry] of Object.entries(fresh)) {
          // A change newer than the snapshot (a join, or a leave) stands.
          if ((versions.get(member) ?? -1) > at || (gone.get(member) ?? -1) > at) continue;
          versions.set(member, Number(entry.v));
          metas.set(member, Object.freeze([...entry.metas]));
        }
        base = Math.max(base, at);
        for (const [member, version] of [...gone]) {
          if (version <= at) gone.delete(member);
        }
        count = metas.size;
      } else if (type === "diff") {
        // Several changes announced together: each as if it came alone.
        let changed = false;
        for (const join of data.joins ?? []) changed = change(true, join) || changed;
        for (const leave of data.leaves ?? []) changed = change(false, leave) || changed;
        if (!changed) return false;
      } else if (!change(type === "join", data)) {
        return false;
      }
      current = null;
      return true;
    },
  };

  // One join or leave, if newer than what the list has for its member.
  function change(joined, data) {
    const { member } = data;
    const version = Number(data.v);
    if (version <= base || version <= (versions.get(member) ?? -1)) return false;
    if (version <= (gone.get(member) ?? -1)) return false;
    if (joined) {
      gone.delete(member);
      versions.set(member, version);
      metas.set(member, Object.freeze([data.meta ?? {}]));
    } else {
      versions.delete(member);
      metas.delete(member);
      gone.delete(member);
      gone.set(member, version);
      if (gone.size > TOMBSTONES) gone.delete(gone.keys().next().value);
    }
    count = metas.size;
    return true;
  }
}
