// Shared by test/log-crash.test.ts and its child: the deterministic payload of an entry (so any
// entry read back can be checked for integrity) and a small seeded PRNG.

/** The payload of cohort c's entry epoch.seq: 8..300 bytes that name it. */
export function crashPayload(cohort: number, epoch: number, seq: number): Buffer {
  const tag = `${cohort}:${epoch}:${seq};`;
  const len = 8 + ((cohort * 7919 + epoch * 104_729 + seq * 1_299_709) % 293);
  return Buffer.from(tag.repeat(Math.ceil(len / tag.length)).slice(0, len));
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
