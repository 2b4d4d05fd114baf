// The shared commit log's public surface (FORMAT.md has the on-disk grammar).
export {
  type AppendOptions,
  CohortLog,
  CommitLog,
  type CommitLogOptions,
  EntriesCompactedError,
  type GcResult,
  type LogEntry,
  type LogStats,
  type OpenReport,
  type TornTail,
} from './commit-log.js';
export type { LogRecord, LogRecordType } from './format.js';
export { type LogFile, type LogFs, nodeLogFs } from './fs-port.js';
export {
  defaultLogFs,
  POWER_LOSS_ENV,
  POWER_LOSS_SYNC_MS_ENV,
  type PowerLossOptions,
  type PowerLossStats,
  powerLossLogFs,
} from './power-loss-fs.js';
