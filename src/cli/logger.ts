// Structured logs (pino): one JSON object per line on stdout, with the node id on every line.

import { pino } from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string, bindings: Record<string, unknown>): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings } });
}
