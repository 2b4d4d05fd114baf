// Polling an outside condition (another process's files or answers) until it holds, for tests
// that drive real processes and have no event to wait on.

/** Resolves with the first truthy value of `probe`; a probe that throws counts as not yet. */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown = null;
  while (performance.now() < deadline) {
    try {
      const v = await probe();
      if (v !== null && v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(
    `${what}: not within ${timeoutMs} ms${last === null ? '' : ` (last: ${String(last)})`}`,
  );
}
