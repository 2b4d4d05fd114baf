// Byte-string helpers for key ranges: unsigned lexicographic order (LevelDB's bytewise
// comparator), so a range map, the storage engine and a scan agree on what "between" means.

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return compareBytes(a, b) === 0;
}

/** Printable form for error messages: UTF-8 when it round-trips, hex otherwise. */
export function formatBytes(b: Uint8Array): string {
  if (b.length === 0) return '""';
  const text = new TextDecoder('utf-8', { fatal: false }).decode(b);
  const printable = /^[\x20-\x7e]*$/.test(text) && bytesEqual(new TextEncoder().encode(text), b);
  if (printable) return JSON.stringify(text);
  return `0x${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
}

/** Standard base64 (RFC 4648 §4, with padding), without node:buffer so placement stays pure. */
export function toBase64(b: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < b.length; i += 0x8000) {
    binary += String.fromCharCode(...b.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Strict: returns null unless `text` is canonical standard base64. */
export function fromBase64(text: string): Uint8Array | null {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return null;
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return toBase64(out) === text ? out : null;
}
