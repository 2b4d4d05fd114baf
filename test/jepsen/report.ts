// The Jepsen run's configuration and report (the runner writes it as JSON; the vitest file and
// the soak CLI read it). Times are ms since the runner started, on its monotonic clock.

export const SESSION_TIMEOUT_MS = 2000;
/** DESIGN/TESTING C4: writes succeed again within 2 × session timeout + 5 s after the last heal. */
export const RECOVERY_MS_MAX = 2 * SESSION_TIMEOUT_MS + 5000;
/** C3: replicas of every range have equal digests within this after healing. */
export const CONVERGENCE_MS_MAX = 10_000;
/** C4: share of ops that succeed while exactly one node is down. */
export const ONE_DOWN_SUCCESS_MIN = 0.9;
/**
 * C4 judges one schedule's one-node-down share only on at least this many ops: a short window
 * with a few dozen ops (seen: 39) is noise. The suite also judges the share over all schedules.
 */
export const ONE_DOWN_OPS_MIN = 500;

export interface JepsenConfig {
  readonly seed: number;
  readonly durationMs: number;
  /** Extra `skv server` flags (the unsafe switches for the sanity run). */
  readonly serverArgs: readonly string[];
  /** SKV_FAILPOINTS for every node process (sleep points), '' for none. */
  readonly failpoints: string;
  /**
   * Which faults the nemesis draws (default 'mixed': every category, one at a time, plus power
   * cuts); 'power-cuts': only power cuts, most of them with a lost disk (the durability sanity run).
   */
  readonly schedule?: ScheduleKind;
  /**
   * The emulated disks' flush latency (SKV_TEST_POWER_LOSS_SYNC_MS; default 0: the VM's own
   * ~0.25 ms fdatasync). Nodes start at half of it; each power cut gives one node a fast disk
   * (0..this/10 ms) and the others slow ones (this/2..this ms), drawn from the seed (nemesis.ts).
   * Every node always runs with SKV_TEST_POWER_LOSS=1.
   */
  readonly powerLossSyncMs?: number;
}

export type ScheduleKind = 'mixed' | 'power-cuts';

export type FaultCategory =
  | 'kill'
  | 'pause'
  | 'partition'
  | 'damage'
  | 'link'
  | 'zookeeper'
  | 'power';

export interface FaultRecord {
  readonly category: FaultCategory;
  /** e.g. "kill leader of range 2", "partition leader-from-zk". */
  readonly kind: string;
  readonly target: string;
  readonly startMs: number;
  healMs: number;
  /** From the heal to one acknowledged write in every range. */
  recoveredMs: number | null;
  detail: string;
}

export interface JepsenReport {
  readonly config: JepsenConfig;
  /** Set when the run could not happen here (no namespace, no iptables): the caller skips. */
  readonly skipped?: string;
  readonly ok: boolean;
  readonly failures: string[];
  readonly faults: FaultRecord[];
  readonly figures: Record<string, unknown>;
}
