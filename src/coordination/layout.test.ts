import { describe, expect, it } from 'vitest';
import { lsn } from '../core/lsn.js';
import {
  decodeCandidate,
  decodeCounter,
  decodeLeader,
  decodeRange,
  encodeCandidate,
  encodeCounter,
  encodeLeader,
  encodeRange,
  Layout,
  parseCandidateSequence,
  parseRangeIdName,
  parseRoundName,
  roundName,
} from './layout.js';

describe('layout', () => {
  const layout = new Layout('main');

  it('places every znode of DESIGN.md §4 under /skv/<cluster>', () => {
    expect(layout.node('n1')).toBe('/skv/main/nodes/n1');
    expect(layout.incarnation('n1')).toBe('/skv/main/nodes-meta/n1/incarnation');
    expect(layout.range(7)).toBe('/skv/main/ranges/7');
    expect(layout.epoch(7)).toBe('/skv/main/ranges/7/epoch');
    expect(layout.candidatePrefix(7, 3)).toBe('/skv/main/ranges/7/election/0000000003/c-');
    expect(layout.leader(7)).toBe('/skv/main/ranges/7/leader');
  });

  it('rejects ids that would escape their directory', () => {
    expect(() => layout.node('../x')).toThrow(
      expect.objectContaining({ code: 'invalid-argument' }),
    );
    expect(() => layout.range(-1)).toThrow(expect.objectContaining({ code: 'invalid-argument' }));
    expect(() => new Layout('a/b')).toThrow(expect.objectContaining({ code: 'invalid-argument' }));
    expect(() => roundName(-1)).toThrow(expect.objectContaining({ code: 'invalid-argument' }));
  });

  it('round names sort as numbers and parse back; foreign names are not rounds', () => {
    expect(roundName(12)).toBe('0000000012');
    expect(roundName(9) < roundName(10)).toBe(true);
    expect(parseRoundName('0000000012')).toBe(12);
    expect(parseRoundName('0000000000')).toBeNull();
    expect(parseRoundName('c-0000000001')).toBeNull();
    expect(parseCandidateSequence('c-0000000042')).toBe(42);
    expect(parseCandidateSequence('c-42')).toBeNull();
    expect(parseRangeIdName('007')).toBeNull();
    expect(parseRangeIdName('7')).toBe(7);
  });

  it('codecs round-trip, bytes as base64 and an empty end meaning unbounded', () => {
    const range = {
      rangeId: 3,
      start: new Uint8Array([0, 255, 10]),
      end: new Uint8Array(),
      members: ['n1', 'n2', 'n3'],
    };
    const encoded = encodeRange(range);
    expect(JSON.parse(encoded.toString())).toEqual({
      start: 'AP8K',
      end: '',
      members: ['n1', 'n2', 'n3'],
    });
    expect(decodeRange(3, encoded, 'p')).toEqual(range);
    const candidate = { nodeId: 'n2', lastLsn: lsn(4, 17), voter: false, incarnation: 2 };
    expect(JSON.parse(encodeCandidate(candidate).toString())).toEqual({
      nodeId: 'n2',
      lastLsn: '4.17',
      voter: false,
      incarnation: 2,
    });
    expect(decodeCandidate(encodeCandidate(candidate), 'p')).toEqual(candidate);
    const leader = { nodeId: 'n1', address: '127.0.0.1:7001', epoch: 9 };
    expect(decodeLeader(encodeLeader(leader), 'p')).toEqual(leader);
    expect(decodeCounter(encodeCounter(0), 'p')).toBe(0);
  });

  it('damaged znode contents are CorruptionErrors, never silently accepted', () => {
    const corrupt = expect.objectContaining({ code: 'corruption' });
    expect(() => decodeCounter(Buffer.from('01'), 'p')).toThrow(corrupt);
    expect(() => decodeCounter(Buffer.from('-1'), 'p')).toThrow(corrupt);
    expect(() => decodeCounter(undefined, 'p')).toThrow(corrupt);
    expect(() => decodeRange(1, Buffer.from('{"start":"!","end":"","members":[]}'), 'p')).toThrow(
      corrupt,
    );
    expect(() =>
      decodeCandidate(Buffer.from('{"nodeId":"n1","lastLsn":"4","voter":true}'), 'p'),
    ).toThrow(corrupt);
    expect(() => decodeLeader(Buffer.from('[1]'), 'p')).toThrow(corrupt);
    expect(() =>
      encodeRange({
        rangeId: 1,
        start: new Uint8Array(),
        end: new Uint8Array(),
        members: ['a', 'a'],
      }),
    ).toThrow(expect.objectContaining({ code: 'invalid-argument' }));
  });
});
