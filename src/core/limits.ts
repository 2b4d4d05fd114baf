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
