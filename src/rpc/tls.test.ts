import { createHash } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { bearerMatches, CredentialError, certificateNames, checkToken } from './tls.js';

const digest = (t: string) => createHash('sha256').update(t, 'utf8').digest();

describe('bearer token check', () => {
  const expected = digest('s3cret');

  it('accepts exactly one "Bearer <token>" with the right token', () => {
    expect(bearerMatches(['Bearer s3cret'], expected)).toBe(true);
  });

  it('refuses a missing, repeated, wrongly prefixed, binary, or different token', () => {
    expect(bearerMatches([], expected)).toBe(false);
    expect(bearerMatches(['Bearer s3cret', 'Bearer s3cret'], expected)).toBe(false);
    expect(bearerMatches(['bearer s3cret'], expected)).toBe(false);
    expect(bearerMatches(['s3cret'], expected)).toBe(false);
    expect(bearerMatches([Buffer.from('Bearer s3cret')], expected)).toBe(false);
    expect(bearerMatches(['Bearer s3cre'], expected)).toBe(false);
    expect(bearerMatches(['Bearer s3cret '], expected)).toBe(false);
  });

  it('a token with spaces, control characters or nothing at all is a credential error', () => {
    expect(() => checkToken('', 't')).toThrow(CredentialError);
    expect(() => checkToken('a b', 't')).toThrow(CredentialError);
    expect(() => checkToken('a\nb', 't')).toThrow(CredentialError);
    expect(checkToken('a-B_9.~', 't')).toBe('a-B_9.~');
  });
});

describe('certificateNames', () => {
  it('takes the CN and the DNS and URI subjectAltNames, not IP addresses, without repeats', () => {
    const cert = {
      subject: { CN: 'n1' },
      subjectaltname: 'DNS:n1, DNS:localhost, IP Address:127.0.0.1, URI:spiffe://skv/n1',
    } as unknown as PeerCertificate;
    expect(certificateNames(cert)).toEqual(['n1', 'localhost', 'spiffe://skv/n1']);
  });

  it('a certificate without names names nobody', () => {
    expect(certificateNames({ subject: {} } as unknown as PeerCertificate)).toEqual([]);
  });
});
