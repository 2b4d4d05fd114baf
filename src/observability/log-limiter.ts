// Keeps a repeating log line from flooding the log: one line per key per interval, and the next
// line let through says how many were held back. For events that can repeat for every message
// of a peer stream (a follower rejecting a leader's proposals repeats it for each batch until
// something changes: 7 MB of lines in one wedged test run).

export class LogLimiter {
  private readonly keys = new Map<string, { atMs: number; held: number }>();

  constructor(private readonly intervalMs: number) {}

  /**
   * null: hold this line back. Otherwise let it through; the number is how many lines of this
   * key were held back since the last one let through.
   */
  admit(key: string, nowMs: number): number | null {
    const k = this.keys.get(key);
    if (k !== undefined && nowMs - k.atMs < this.intervalMs) {
      k.held++;
      return null;
    }
    this.keys.set(key, { atMs: nowMs, held: 0 });
    return k?.held ?? 0;
  }
}
