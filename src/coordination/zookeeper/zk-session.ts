// One ZooKeeper session (possibly replaced after expiry) with deadlines on every request, the
// last-contact clock of the leadership rule, and the withheld-reply workaround. The only module
// that touches node-zookeeper-client's client object; zk-coordinator.ts builds on `request`.
//
// Invariants:
// - Every `request` settles by its deadline; a reply that arrives later is dropped.
// - `lastContactSendMs` only moves forward, and only on a reply from the server (any reply that
//   is not a connection loss or an expiry), to the local send time of that request.
// - Events of a replaced client (after expiry or close) are ignored: `current` is checked.
//
// node-zookeeper-client 1.1.3 facts this relies on or works around (read in its source):
// - Its connect timeout is cleared once TCP connects, so a lost connect request hangs the
//   attempt forever; the heartbeat restarts attempts that take longer than leadershipGraceMs.
// - It has no read timeout: against a server that is stopped (not dead), the socket stays open,
//   pings go unanswered and it never reports `disconnected`. The heartbeat below notices the
//   silence and, after leadershipGraceMs without contact, destroys the socket so that the
//   library reconnects (what the Java client does at 2/3 of the session timeout).
// - It only learns of an expiry when it reconnects; then it emits `expired` and stops for good,
//   so a fresh client (a new session) is created here.
// - Transaction.check/setData treat version 0 as "any version" (`version || -1`): see txVersion.
//
// The withheld reply (the brief's report: a lone setData/sync reply held ~10 s, until the next
// ping). Measured on this machine (ZooKeeper 3.8.0 Debian, node-zookeeper-client 1.1.3, Node 20,
// test/support/zk-latency-probe.ts, 20–30 iterations per cell, one outstanding request vs 4):
//   session 2000:  setData p50 4.9 ms p99 20.9 ms; create p99 7.7 ms; getData/exists p99 < 6 ms;
//                  with 4 concurrent: setData p99 108.8 ms, create p99 69.5 ms
//   session 10000: setData p99 20.9 ms; create p99 8.2 ms; getData/exists p99 ≤ 5.1 ms
//   also with 900 ms idle gaps, 2 other sessions watching the znode, and multi: max 195.7 ms.
// The stall did NOT reproduce here (no reply ever waited for a ping). Reading the client: it
// already calls socket.setNoDelay() (before connect; Node applies it on connect), writes each
// request at once (no batching), and parses every complete frame in a data chunk recursively,
// so the client does not hold back a reply it has received. The server pipeline (ZooKeeper 3.8
// SyncRequestProcessor, flushDelay 0) flushes as soon as its queue is empty; a write's reply
// waits for the transaction log fsync, so a slow disk (other processes fsyncing) stalls setData
// and sync, and everything queued behind them, while reads pass. A "reply only on the next
// ping" on top of that cannot be ruled out from here, so the session defends against both:
//   1. nudge: when a request has no reply after nudgeAfterMs (default 25), an `exists /` read
//      is sent on the same session, and again every nudgeAfterMs while the request is pending
//      (at most one per nudgeAfterMs/2 per session and 16 outstanding). Any inbound traffic
//      that releases a withheld reply does so at once, instead of at the next ping
//      (sessionTimeout/3 later). A first version allowed only one outstanding nudge: when the
//      nudge overtook a slow (fsync-bound) reply, the nudge's own reply was held and blocked
//      every later nudge, and the op waited for the ping after all (seen in the test, 2001 ms).
//   2. linger: after a coordinator request (not a heartbeat) settles, nudges go on every
//      nudgeAfterMs for leadershipGraceMs. A withheld reply holds back everything the server
//      sends after it on that socket, watch notifications too, and a node waiting on a watch
//      (an election: the leader znode gone, the second candidate) has no request pending to
//      nudge for; without the linger the notification waited for the next heartbeat (up to
//      sessionTimeout/6).
//   Measured with three real nodes behind that proxy (test/cluster-zk-faults.test.ts, 2 s
//   sessions, replies withheld, load average ~10 on 2 cores; SIGKILL of a leader to the first
//   write served by its successor): no nudge (so no linger) 7735 ms; nudge 100 ms 3476–3863
//   ms, with the linger 3279–3551 ms (an election is a handful of sequential requests, each
//   waiting nudgeAfterMs);
//   nudge 25 ms with the linger 2411–2789 ms; the same cluster with nothing withheld 2595 ms;
//   notifications withheld as well ('all'): 3105 ms. Hence the 25 ms default: on a healthy
//   server a reply takes ~5 ms (p99 ~21 ms for setData, below), so a nudge is rare there.
//   3. every request has a deadline, so an election never waits on a stuck reply forever.
// skv never issues `sync` (neither this file nor zk-coordinator.ts calls it), so of the two
// reported requests only setData (the epoch CAS, inside the leadership multi) is on its path.
// test/coordination.test.ts proves (1) against a proxy that withholds every reply until the
// client sends its next packet (the reported behaviour, modelled; session 6000 ms, so the
// library pings after 2000 ms idle): casEpoch took 2000.1–2003.6 ms without the nudge and
// 100.3–103.6 ms with nudgeAfterMs 100; test/cluster-zk-faults.test.ts puts real `skv server`
// processes behind that proxy and times a leader's replacement after SIGKILL (the hidden
// SKV_TEST_ONLY_ZK_NUDGE_AFTER_MS=0 turns the nudge off there). Against the real server, loops
// of 50 of every Coordinator call (session 2000 ms, with the nudge on) measured p99 2.6–17.0 ms
// on a quiet machine and p99 ≤ 174.6 ms (writeLeader) at load average ~10; no nudge was needed
// there.

import zookeeper from 'node-zookeeper-client';
import { assert } from '../../core/assert.js';
import { ClosedError, SkvError } from '../../core/errors.js';
import type { SessionEvent, SessionState, Unsubscribe } from '../coordinator.js';

export const SESSION_TIMEOUT_MS_DEFAULT = 2000;
export const NUDGE_AFTER_MS_DEFAULT = 25;
/**
 * TEST ONLY, hidden (no flag): overrides the default nudgeAfterMs of every session in the process
 * (0 turns the nudge off), so a real-process test can show what the nudge is worth. Unset in
 * production; read once at load.
 */
const TEST_ONLY_NUDGE_AFTER_MS: number | undefined = (() => {
  const v = process.env.SKV_TEST_ONLY_ZK_NUDGE_AFTER_MS;
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  assert(Number.isInteger(n) && n >= 0, 'SKV_TEST_ONLY_ZK_NUDGE_AFTER_MS: a non-negative integer');
  return n;
})();
/** Nudges awaiting their reply, per session, at most (each is one small read). */
const NUDGES_OUTSTANDING_MAX = 16;
/** Listeners of one session's events; more is a leak. */
const SESSION_LISTENERS_MAX = 1024;

export interface ZkSessionOptions {
  readonly connectString: string;
  readonly sessionTimeoutMs?: number;
  /** Deadline of the first connect in start(). Default max(5000, 2 × session timeout). */
  readonly connectTimeoutMs?: number;
  /** Default deadline of a request. Default max(2000, session timeout). */
  readonly requestTimeoutMs?: number;
  /** 0 disables the nudge (used by the test that shows it is needed). */
  readonly nudgeAfterMs?: number;
  /** Default sessionTimeout / 6: three heartbeats inside the leadership grace. */
  readonly heartbeatIntervalMs?: number;
  /** Delay between reconnect attempts (the library's spinDelay). Default 200. */
  readonly reconnectDelayMs?: number;
}

/** A reply: the ZooKeeper error code (0 = OK) and the callback's values. */
export type ZkReply<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly code: number };

export type ZkCallback<T> = (error: unknown, value?: T) => void;

export const ZK = zookeeper.Exception;

interface ClientHandle {
  readonly client: zookeeper.Client;
  readonly generation: number;
  everConnected: boolean;
  dead: boolean;
}

export class ZkSession {
  private current: ClientHandle | null = null;
  private generation = 0;
  private state: SessionState = 'connecting';
  private readonly listeners = new Set<(event: SessionEvent) => void>();
  private lastContactSendMs = Number.NEGATIVE_INFINITY;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private heartbeatInFlight = false;
  private lastForcedReconnectMs = Number.NEGATIVE_INFINITY;
  private notConnectedSinceMs = 0;
  private nudgesOutstanding = 0;
  private lastNudgeMs = Number.NEGATIVE_INFINITY;
  /** Nudges go on until then (performance.now()); see the header, "linger". */
  private lingerUntilMs = Number.NEGATIVE_INFINITY;
  private lingerTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly requestedSessionTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly nudgeAfterMs: number;
  private readonly heartbeatIntervalMsOption: number | undefined;
  private readonly reconnectDelayMs: number;
  /** Counters for tests and metrics. */
  readonly stats = { requests: 0, nudges: 0, forcedReconnects: 0, expiries: 0, deadlines: 0 };

  constructor(private readonly options: ZkSessionOptions) {
    this.requestedSessionTimeoutMs = options.sessionTimeoutMs ?? SESSION_TIMEOUT_MS_DEFAULT;
    assert(this.requestedSessionTimeoutMs > 0, 'sessionTimeoutMs must be positive');
    this.connectTimeoutMs =
      options.connectTimeoutMs ?? Math.max(5000, 2 * this.requestedSessionTimeoutMs);
    this.requestTimeoutMs =
      options.requestTimeoutMs ?? Math.max(2000, this.requestedSessionTimeoutMs);
    this.nudgeAfterMs = options.nudgeAfterMs ?? TEST_ONLY_NUDGE_AFTER_MS ?? NUDGE_AFTER_MS_DEFAULT;
    this.heartbeatIntervalMsOption = options.heartbeatIntervalMs;
    this.reconnectDelayMs = options.reconnectDelayMs ?? 200;
  }

  get sessionState(): SessionState {
    return this.state;
  }

  get sessionTimeoutMs(): number {
    const handle = this.current;
    if (handle?.everConnected === true) return handle.client.getSessionTimeout();
    return this.requestedSessionTimeoutMs;
  }

  get leadershipGraceMs(): number {
    return Math.floor((this.sessionTimeoutMs * 2) / 3);
  }

  /** Hex id of the current session ('' before the first connect). */
  get sessionId(): string {
    const handle = this.current;
    if (handle === null || !handle.everConnected) return '';
    return handle.client.getSessionId().toString('hex');
  }

  /** The current session's id and password (for tests that expire it on purpose). */
  credentials(): { id: Buffer; password: Buffer } | null {
    const handle = this.current;
    if (handle === null || !handle.everConnected) return null;
    return { id: handle.client.getSessionId(), password: handle.client.getSessionPassword() };
  }

  msSinceLastContact(): number {
    return performance.now() - this.lastContactSendMs;
  }

  isLeadershipSafe(): boolean {
    return this.state === 'connected' && this.msSinceLastContact() < this.leadershipGraceMs;
  }

  onEvent(listener: (event: SessionEvent) => void): Unsubscribe {
    assert(this.listeners.size < SESSION_LISTENERS_MAX, 'too many session listeners');
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async start(): Promise<void> {
    if (this.closed) throw new ClosedError('coordinator');
    assert(this.current === null, 'ZkSession.start called twice');
    const connected = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        unsubscribe();
        reject(
          new SkvError(
            'deadline-exceeded',
            `no ZooKeeper session with ${this.options.connectString} within ${this.connectTimeoutMs} ms`,
          ),
        );
      }, this.connectTimeoutMs);
      const unsubscribe = this.onEvent((event) => {
        if (event.kind === 'connected') {
          clearTimeout(timer);
          unsubscribe();
          resolve();
        }
      });
    });
    this.openClient();
    try {
      await connected;
    } catch (error) {
      await this.close();
      throw error;
    }
    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.heartbeatIntervalMs());
    this.heartbeatTimer.unref();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    if (this.lingerTimer !== null) clearTimeout(this.lingerTimer);
    this.lingerTimer = null;
    const handle = this.current;
    this.current = null;
    this.state = 'closed';
    if (handle !== null) {
      handle.dead = true;
      // close() queues a closeSession request: the server drops our ephemerals at once. Wait
      // (bounded) for the socket to close so a test can rely on the ephemerals being gone.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        timer.unref();
        handle.client.once('disconnected', () => {
          clearTimeout(timer);
          resolve();
        });
        const wasConnected = handle.client.getState() === zookeeper.State.SYNC_CONNECTED;
        handle.client.close();
        if (!wasConnected) {
          // No session to close on the server side: drop the socket (CLOSING: no reconnect).
          destroySocket(handle.client);
          clearTimeout(timer);
          resolve();
        }
      });
    }
    this.emit({ kind: 'closed' });
  }

  /**
   * Issues one request on the current client. Resolves with the reply (a ZooKeeper error code is
   * a reply); rejects with SkvError `unavailable` (connection loss, expiry), `deadline-exceeded`
   * or `closed`.
   */
  request<T>(
    what: string,
    issue: (client: zookeeper.Client, callback: ZkCallback<T>) => void,
    options: { timeoutMs?: number } = {},
  ): Promise<ZkReply<T>> {
    if (this.closed) return Promise.reject(new ClosedError('coordinator'));
    const handle = this.current;
    // Fail fast unless connected. The library would otherwise queue the request and send it
    // after a reconnect, long after its caller got `deadline-exceeded` and moved on: a queued
    // writeLeader could then create a leader znode for a node that had given up.
    if (handle === null || this.state !== 'connected') {
      return Promise.reject(
        new SkvError('unavailable', `${what}: ZooKeeper session is ${this.state}`),
      );
    }
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    this.stats.requests += 1;
    return new Promise<ZkReply<T>>((resolve, reject) => {
      let settled = false;
      const sendMs = performance.now();
      const deadline = setTimeout(() => {
        finish();
        this.stats.deadlines += 1;
        reject(
          new SkvError('deadline-exceeded', `${what}: no reply from ZooKeeper in ${timeoutMs} ms`),
        );
      }, timeoutMs);
      let nudgeTimer: NodeJS.Timeout | null = null;
      const armNudge = (): void => {
        if (this.nudgeAfterMs <= 0) return;
        nudgeTimer = setTimeout(() => {
          if (settled) return;
          this.nudge(handle);
          armNudge();
        }, this.nudgeAfterMs);
      };
      const finish = (): void => {
        settled = true;
        clearTimeout(deadline);
        if (nudgeTimer !== null) clearTimeout(nudgeTimer);
        if (what !== 'heartbeat') this.linger();
      };
      armNudge();
      try {
        issue(handle.client, (error, value) => {
          if (settled) return;
          finish();
          const code = zkCode(error);
          if (code === null) {
            reject(new SkvError('internal', `${what}: ${String(error)}`, { cause: error }));
            return;
          }
          if (code === ZK.CONNECTION_LOSS || code === ZK.SESSION_EXPIRED) {
            reject(
              new SkvError('unavailable', `${what}: ZooKeeper ${zkCodeName(code)}`, {
                cause: error,
              }),
            );
            return;
          }
          this.contact(sendMs);
          resolve(code === ZK.OK ? { ok: true, value: value as T } : { ok: false, code });
        });
      } catch (error) {
        finish();
        reject(error);
      }
    });
  }

  private heartbeatIntervalMs(): number {
    return this.heartbeatIntervalMsOption ?? Math.max(50, Math.floor(this.sessionTimeoutMs / 6));
  }

  private contact(sendMs: number): void {
    if (sendMs > this.lastContactSendMs) this.lastContactSendMs = sendMs;
  }

  /** Keeps nudging for leadershipGraceMs from now (see the header, "linger"). */
  private linger(): void {
    if (this.nudgeAfterMs <= 0 || this.closed) return;
    this.lingerUntilMs = performance.now() + this.leadershipGraceMs;
    if (this.lingerTimer !== null) return;
    const step = (): void => {
      this.lingerTimer = null;
      const handle = this.current;
      if (this.closed || handle === null || performance.now() >= this.lingerUntilMs) return;
      this.nudge(handle);
      this.lingerTimer = setTimeout(step, this.nudgeAfterMs);
      this.lingerTimer.unref();
    };
    this.lingerTimer = setTimeout(step, this.nudgeAfterMs);
    this.lingerTimer.unref();
  }

  /** A cheap read on the same session; its traffic releases a withheld reply (see header). */
  private nudge(handle: ClientHandle): void {
    if (handle.dead || this.state !== 'connected') return;
    // A nudge's own reply can be held back too (then only the NEXT packet releases it), so an
    // outstanding nudge must not block the next one: nudges go out at most once per
    // nudgeAfterMs per session (several pending requests share them), with a bounded number
    // outstanding.
    const now = performance.now();
    if (this.nudgesOutstanding >= NUDGES_OUTSTANDING_MAX) return;
    if (now - this.lastNudgeMs < this.nudgeAfterMs / 2) return;
    this.lastNudgeMs = now;
    this.nudgesOutstanding += 1;
    this.stats.nudges += 1;
    const sendMs = now;
    handle.client.exists('/', (error) => {
      this.nudgesOutstanding -= 1;
      const code = zkCode(error);
      if (code !== null && code !== ZK.CONNECTION_LOSS && code !== ZK.SESSION_EXPIRED) {
        this.contact(sendMs);
      }
    });
  }

  private heartbeat(): void {
    const handle = this.current;
    if (handle === null || handle.dead) return;
    if (this.state !== 'connected') {
      // The library clears its connect timeout when TCP connects, so a connect request lost
      // in a partition leaves it waiting forever for the reply (its issue #57). Restart any
      // connection attempt that has not produced a session within a grace period.
      if (performance.now() - this.notConnectedSinceMs >= this.leadershipGraceMs) {
        this.forceReconnect(handle);
      }
      return;
    }
    if (this.msSinceLastContact() >= this.leadershipGraceMs) {
      // No reply for 2/3 of the session: the server is gone or stopped. Drop the connection so
      // the library reconnects (and learns of an expiry); the Java client does the same.
      this.forceReconnect(handle);
    }
    if (this.heartbeatInFlight) return;
    this.heartbeatInFlight = true;
    this.request('heartbeat', (c, cb) => c.exists('/', cb), { timeoutMs: this.leadershipGraceMs })
      .catch(() => {})
      .finally(() => {
        this.heartbeatInFlight = false;
      });
  }

  private forceReconnect(handle: ClientHandle): void {
    // At most one forced reconnect per grace period (a reconnect attempt takes time too).
    const now = performance.now();
    if (now - this.lastForcedReconnectMs < this.leadershipGraceMs) return;
    this.lastForcedReconnectMs = now;
    this.stats.forcedReconnects += 1;
    destroySocket(handle.client);
  }

  private openClient(previousSessionId = ''): void {
    this.generation += 1;
    const client = zookeeper.createClient(this.options.connectString, {
      sessionTimeout: this.requestedSessionTimeoutMs,
      spinDelay: this.reconnectDelayMs,
      retries: 0,
    });
    const handle: ClientHandle = {
      client,
      generation: this.generation,
      everConnected: false,
      dead: false,
    };
    this.current = handle;
    this.state = 'connecting';
    this.notConnectedSinceMs = performance.now();
    client.on('state', (state: zookeeper.State) =>
      this.onClientState(handle, state, previousSessionId),
    );
    client.connect();
  }

  private onClientState(
    handle: ClientHandle,
    state: zookeeper.State,
    previousSessionId: string,
  ): void {
    if (handle.dead || handle !== this.current || this.closed) return;
    const sessionId = (): string => handle.client.getSessionId().toString('hex');
    switch (state.code) {
      case zookeeper.State.SYNC_CONNECTED.code: {
        this.state = 'connected';
        // The connect reply is contact; its request left a round trip earlier (negligible
        // against the 1/3-session margin of the leadership rule).
        this.contact(performance.now());
        if (handle.everConnected) {
          this.emit({ kind: 'reconnected', sessionId: sessionId() });
        } else {
          handle.everConnected = true;
          if (handle.generation === 1) this.emit({ kind: 'connected', sessionId: sessionId() });
          else this.emit({ kind: 'new-session', sessionId: sessionId(), previousSessionId });
        }
        return;
      }
      case zookeeper.State.DISCONNECTED.code:
        if (this.state === 'connected') {
          this.state = 'disconnected';
          this.notConnectedSinceMs = performance.now();
          this.emit({ kind: 'disconnected', sessionId: sessionId() });
        }
        return;
      case zookeeper.State.EXPIRED.code: {
        const expiredId = sessionId();
        handle.dead = true;
        this.state = 'expired';
        this.stats.expiries += 1;
        handle.client.close();
        this.emit({ kind: 'expired', sessionId: expiredId });
        if (!this.closed) this.openClient(expiredId);
        return;
      }
      default:
        // AUTH_FAILED, CONNECTED_READ_ONLY: not used by skv (no auth, no read-only mode).
        return;
    }
  }

  private emit(event: SessionEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch {
        // A listener's bug must not break session handling; listeners own their errors.
      }
    }
  }
}

/** Closes the client's socket; the library reconnects unless it is closing. */
function destroySocket(client: zookeeper.Client): void {
  // The library keeps its socket private; these two lines are the only reach into it.
  const manager = (client as unknown as { connectionManager?: { socket?: unknown } })
    .connectionManager;
  const socket = manager?.socket as { destroy?: () => void } | undefined;
  if (typeof socket?.destroy === 'function') socket.destroy();
}

/** The ZooKeeper error code of a callback error: 0 for none, null for a non-ZooKeeper error. */
export function zkCode(error: unknown): number | null {
  if (error === null || error === undefined) return ZK.OK;
  if (error instanceof ZK) return error.getCode();
  if (typeof error === 'object' && typeof (error as { code?: unknown }).code === 'number') {
    return (error as { code: number }).code;
  }
  return null;
}

export function zkCodeName(code: number): string {
  for (const [name, value] of Object.entries(ZK)) {
    if (value === code && /^[A-Z_]+$/.test(name)) return name;
  }
  return `error ${code}`;
}

/**
 * node-zookeeper-client's Transaction.check/setData/remove store `version || -1`, turning an
 * expected version 0 into "any version". This sets the version of the op just added.
 */
export function txVersion(tx: zookeeper.Transaction, version: number): zookeeper.Transaction {
  const ops = (tx as unknown as { ops: { version?: number }[] }).ops;
  const last = ops[ops.length - 1];
  assert(last !== undefined, 'txVersion: no op');
  last.version = version;
  return tx;
}
