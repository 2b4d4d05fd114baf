// Errors at the edges of the product: typed classes with a stable machine-readable `code`.
// Expected outcomes inside the pure core are data, not exceptions; broken invariants are
// `assert`. Nobody matches on message text; the gRPC edge maps `code` to a status in one table.

export type SkvErrorCode =
  | 'invalid-argument'
  | 'version-mismatch'
  | 'not-leader'
  | 'unavailable'
  | 'deadline-exceeded'
  | 'corruption'
  | 'io-error'
  | 'closed'
  | 'overloaded'
  | 'not-found'
  | 'already-exists'
  | 'unauthenticated'
  | 'internal';

export class SkvError extends Error {
  override readonly name: string = 'SkvError';
  constructor(
    readonly code: SkvErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class InvalidArgumentError extends SkvError {
  override readonly name = 'InvalidArgumentError';
  constructor(message: string) {
    super('invalid-argument', message);
  }
}

/** Damaged persistent data: never returned as data, never silently skipped. */
export class CorruptionError extends SkvError {
  override readonly name = 'CorruptionError';
  constructor(
    message: string,
    readonly file?: string,
    readonly offset?: number,
  ) {
    super('corruption', message);
  }
}

export class ClosedError extends SkvError {
  override readonly name = 'ClosedError';
  constructor(what: string) {
    super('closed', `${what} is closed`);
  }
}
