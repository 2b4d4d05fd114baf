// The simulated network between endpoints (nodes, clients, the ZooKeeper server), with TCP
// semantics: each ordered pair (from, to) is a connection that delivers in FIFO order with a
// random delay, until it breaks. A break loses everything in flight on it; the next send opens a
// new connection. Faults: a random drop (= the connection breaks, as TCP would report it), a
// duplicate delivery (an application-level resend after a reconnect), and partitions, which cut
// chosen directed links until healed (breaking their connections).

import type { EventLoop } from './event-loop.js';
import type { Prng } from './prng.js';

export interface NetworkFaults {
  /** Probability that a send breaks its connection (losing it and everything in flight). */
  dropProbability: number;
  /** Probability that a delivered message is delivered a second time right after. */
  duplicateProbability: number;
  delayMsMin: number;
  delayMsMax: number;
}

interface Connection {
  generation: number;
  lastDeliveryAt: number;
}

export class SimNetwork {
  private connections = new Map<string, Connection>();
  private blocked = new Set<string>();
  faults: NetworkFaults;
  sent = 0;
  dropped = 0;

  constructor(
    private readonly loop: EventLoop,
    private readonly rng: Prng,
    faults: NetworkFaults,
  ) {
    this.faults = { ...faults };
  }

  private conn(from: string, to: string): Connection {
    const k = `${from}>${to}`;
    let c = this.connections.get(k);
    if (c === undefined) {
      c = { generation: 0, lastDeliveryAt: 0 };
      this.connections.set(k, c);
    }
    return c;
  }

  /** Break the connection from -> to: what is in flight is lost. */
  breakConnection(from: string, to: string): void {
    const c = this.conn(from, to);
    c.generation += 1;
    c.lastDeliveryAt = this.loop.now();
  }

  /** Break every connection that touches `endpoint` (a crash, a restart). */
  breakAll(endpoint: string): void {
    for (const [k, c] of this.connections) {
      const [from, to] = k.split('>');
      if (from === endpoint || to === endpoint) {
        c.generation += 1;
        c.lastDeliveryAt = this.loop.now();
      }
    }
  }

  isBlocked(from: string, to: string): boolean {
    return this.blocked.has(`${from}>${to}`);
  }

  block(from: string, to: string): void {
    this.blocked.add(`${from}>${to}`);
    this.breakConnection(from, to);
  }

  unblock(from: string, to: string): void {
    this.blocked.delete(`${from}>${to}`);
    this.flushHeld();
  }

  healAll(): void {
    this.blocked.clear();
    this.flushHeld();
  }

  /**
   * A channel whose client library retransmits across reconnects (the ZooKeeper client): what
   * is sent while the link is cut is held and delivered, in order, once it heals. `alive()` is
   * checked at delivery (a crashed process's held requests die with it).
   */
  sendHeld(from: string, to: string, deliver: () => void, alive: () => boolean): void {
    const k = `${from}>${to}`;
    const q = this.held.get(k);
    if (this.blocked.has(k) || (q !== undefined && q.length > 0)) {
      if (q === undefined) this.held.set(k, [{ deliver, alive }]);
      else q.push({ deliver, alive });
      return;
    }
    this.deliverInOrder(from, to, deliver, alive);
  }

  private held = new Map<string, { deliver: () => void; alive: () => boolean }[]>();

  private flushHeld(): void {
    for (const [k, q] of this.held) {
      if (this.blocked.has(k) || q.length === 0) continue;
      const [from, to] = k.split('>') as [string, string];
      for (const m of q.splice(0)) this.deliverInOrder(from, to, m.deliver, m.alive);
    }
  }

  private deliverInOrder(
    from: string,
    to: string,
    deliver: () => void,
    alive: () => boolean,
  ): void {
    const c = this.conn(`held:${from}`, to);
    const delay = this.rng.range(this.faults.delayMsMin, this.faults.delayMsMax);
    const at = Math.max(this.loop.now() + delay, c.lastDeliveryAt);
    c.lastDeliveryAt = at;
    this.loop.after(at - this.loop.now(), () => {
      if (alive()) deliver();
    });
  }

  blockedLinks(): string[] {
    return [...this.blocked];
  }

  /**
   * Send `deliver` over from -> to. Duplicates model a peer's resend after a reconnect; client
   * requests are never duplicated (a duplicated write is a blind retry, which no test may do). It runs at the receiver unless the link is cut, the
   * connection breaks first, or `alive()` (checked at delivery) says the receiver is gone.
   */
  send(
    from: string,
    to: string,
    deliver: () => void,
    alive: () => boolean = () => true,
    opts: { duplicates: boolean } = { duplicates: true },
  ): void {
    this.sent += 1;
    const c = this.conn(from, to);
    if (this.isBlocked(from, to) || this.rng.chance(this.faults.dropProbability)) {
      this.dropped += 1;
      this.breakConnection(from, to);
      return;
    }
    const gen = c.generation;
    const delay = this.rng.range(this.faults.delayMsMin, this.faults.delayMsMax);
    const at = Math.max(this.loop.now() + delay, c.lastDeliveryAt);
    c.lastDeliveryAt = at;
    const dup = opts.duplicates && this.rng.chance(this.faults.duplicateProbability);
    const run = () => {
      if (c.generation !== gen || this.isBlocked(from, to) || !alive()) return;
      deliver();
    };
    this.loop.after(at - this.loop.now(), run);
    if (dup) this.loop.after(at - this.loop.now(), run);
  }
}
