// Log sequence numbers (S§4.1, App. B). Each cohort numbers its own records: an LSN is
// (epoch, seq), written `e.seq`. `seq` is the record's position in the cohort's log (it keeps
// counting across epochs, like a Raft index) and `epoch` is the leadership epoch that created
// the record (like a Raft term). LSNs compare epoch first, then seq, so "highest last LSN" in an
// election means newest epoch first, then longest log (S§7).
//
// Both parts are plain numbers: seq stays below 2^53 (9e15 records), epoch below 2^32.

export interface Lsn {
  readonly epoch: number;
  readonly seq: number;
}

export const ZERO_LSN: Lsn = Object.freeze({ epoch: 0, seq: 0 });

export const EPOCH_MAX = 0xffff_ffff;

export function lsn(epoch: number, seq: number): Lsn {
  return { epoch, seq };
}

export function compareLsn(a: Lsn, b: Lsn): number {
  if (a.epoch !== b.epoch) return a.epoch < b.epoch ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

export function lsnEquals(a: Lsn, b: Lsn): boolean {
  return a.epoch === b.epoch && a.seq === b.seq;
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return compareLsn(a, b) >= 0 ? a : b;
}

export function formatLsn(l: Lsn): string {
  return `${l.epoch}.${l.seq}`;
}

export function parseLsn(text: string): Lsn {
  const m = /^(\d+)\.(\d+)$/.exec(text);
  if (m === null) throw new TypeError(`not an LSN: ${JSON.stringify(text)}`);
  return { epoch: Number(m[1]), seq: Number(m[2]) };
}
