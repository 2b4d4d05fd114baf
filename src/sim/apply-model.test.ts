import { describe, expect, it } from 'vitest';
import { encodeRowMutation } from '../core/mutation.js';
import type { Entry } from '../replication/types.js';
import { ApplyModel } from './apply-model.js';

const enc = new TextEncoder();
function put(seq: number, value: string | null, expectedVersion?: number): Entry {
  const w =
    expectedVersion === undefined
      ? { column: enc.encode('c'), value: value === null ? null : enc.encode(value) }
      : {
          column: enc.encode('c'),
          value: value === null ? null : enc.encode(value),
          expectedVersion,
        };
  return {
    lsn: { epoch: 1, seq },
    kind: 'data',
    payload: encodeRowMutation({ key: enc.encode('k'), writes: [w] }),
  };
}

describe('ApplyModel', () => {
  it('gives a column the seq of the record that wrote it and 0 when deleted', () => {
    const m = new ApplyModel();
    expect(m.apply(put(1, 'a'))).toEqual({ ok: true, previousVersions: [0], versions: [1] });
    expect(m.get('k/c')).toEqual({ value: 'a', version: 1 });
    expect(m.apply(put(2, null))).toEqual({ ok: true, previousVersions: [1], versions: [0] });
    expect(m.get('k/c')).toBeUndefined();
  });

  it('checks a conditional write at apply time and writes nothing when it fails', () => {
    const m = new ApplyModel();
    m.apply(put(1, 'a'));
    expect(m.apply(put(2, 'b', 0))).toEqual({
      ok: false,
      reason: 'version-mismatch',
      writeIndex: 0,
      actualVersion: 1,
    });
    expect(m.get('k/c')).toEqual({ value: 'a', version: 1 });
    expect(m.apply(put(3, 'c', 1))?.ok).toBe(true);
  });

  it('round-trips through its snapshot encoding', () => {
    const m = new ApplyModel();
    m.apply(put(1, 'a'));
    const back = ApplyModel.deserialize(m.serialize());
    expect(back.digest()).toBe(m.digest());
    expect(back.appliedSeq).toBe(1);
  });
});
