// Types of sse-channels.js: its stores are Svelte-compatible Readable stores.

/** What every store of a source has: the Svelte store contract. */
export interface Readable<T> {
  /** Calls `run` at once with the current value, then on every change. */
  subscribe(run: (value: T) => void): () => void;
}

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export const STATES: readonly ConnectionState[];

/** A gap signal: events this page should have had are gone; reload the state. */
export interface Gap {
  reason: string;
  channel: string | null;
  id: string;
}

/** Who is online in a presence channel: each member's connection metadata, and the count. */
export interface Online<Meta = unknown> {
  /** Read-only: a new value comes with every change. */
  readonly members: ReadonlyMap<string, readonly Meta[]>;
  /** The number of members (in a counts-only channel, the count the server sends). */
  readonly count: number;
}

export interface SourceOptions {
  withCredentials?: boolean;
  lastEventId?: string;
  resumeParam?: string | null;
  EventSource?: typeof EventSource;
  onError?: (error: unknown) => void;
}

export interface Source {
  readonly url: string;
  readonly state: Readable<ConnectionState>;
  readonly lastEventId: Readable<string>;
  readonly gap: Readable<Gap | null>;
  select(type?: string): Readable<string | undefined>;
  select<T>(type: string, initial: T): Readable<string | T>;
  json<T = unknown>(type?: string): Readable<T | undefined>;
  json<T = unknown>(type: string, initial: T): Readable<T>;
  presence<Meta = unknown>(): Readable<Online<Meta>>;
  onGap(fn: (gap: Gap) => void): () => void;
  close(): void;
  reconnect(): void;
}

export function source(url: string | URL, options?: SourceOptions): Source;

export function get<T>(store: Readable<T>): T;
