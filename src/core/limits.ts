// Every limit of the product, declared once (TIGER_STYLE: put a limit on everything; units last).

/** DESIGN.md §2: keys are 1..4 KiB. */
export const KEY_SIZE_BYTES_MAX = 4 * 1024;
/** DESIGN.md §2: values up to 1 MiB. */
export const VALUE_SIZE_BYTES_MAX = 1024 * 1024;
/** Column names share the key limit. */
export const COLUMN_SIZE_BYTES_MAX = 4 * 1024;
/** A row write may touch this many columns at most. */
export const ROW_COLUMNS_MAX = 1024;
/** A batch call may carry this many items at most. */
export const BATCH_ITEMS_MAX = 1024;
/** Scan rows returned when the request gives no limit. */
export const SCAN_ROWS_DEFAULT = 1000;
/** Scan rows returned at most per call. */
export const SCAN_ROWS_MAX = 100_000;
/** One commit-log record's payload, with room for a full row write of maximal values. */
export const LOG_RECORD_PAYLOAD_BYTES_MAX = 16 * 1024 * 1024;
/** gRPC message size, a little above the largest record. */
export const GRPC_MESSAGE_BYTES_MAX = 20 * 1024 * 1024;
/**
 * A request's deadline at most, however long the client asked for (issue #8). A deadline bounds
 * how long a node keeps a request's state (a session slot, a timer, the retries of a refused
 * forward); one hour is far past any legitimate operation here (a 100k-row scan or a write that
 * waits out an election takes seconds) yet far below 2^31 ms, where Node's setTimeout overflows
 * and fires at once. A longer deadline is not refused: the node gives up at the hour, and says
 * DEADLINE_EXCEEDED (for a write: outcome unknown), as it would at the client's own deadline.
 */
export const REQUEST_TIMEOUT_MS_MAX = 60 * 60 * 1000;
/** setTimeout's largest delay (Node: a longer one overflows and fires after 1 ms). */
export const TIMER_DELAY_MS_MAX = 2 ** 31 - 1;

/** setTimeout's delay for a deadline (a performance.now() instant): 1 ms..TIMER_DELAY_MS_MAX. */
export function timerDelayMs(deadlineMs: number): number {
  return Math.min(TIMER_DELAY_MS_MAX, Math.max(1, deadlineMs - performance.now()));
}
/**
 * Requests in one Session frame at most (issue #8): twice what the client library puts in one
 * (SESSION_BATCH_REQUESTS_MAX = 512), and a quarter of a stream's in-flight bound, so a frame's
 * cost is known before it is decoded. A frame over it ends the stream with RESOURCE_EXHAUSTED.
 */
export const SESSION_FRAME_REQUESTS_MAX = 1024;
/**
 * Bytes of answers (an upper bound of their encoding) gathered into one Session frame before the
 * next frame starts: well under GRPC_MESSAGE_BYTES_MAX, so a frame never fails the stream, and
 * within a plain gRPC client's default receive limit (4 MiB) unless one answer alone is larger.
 */
export const SESSION_FRAME_BYTES_SOFT_MAX = 4 * 1024 * 1024;
