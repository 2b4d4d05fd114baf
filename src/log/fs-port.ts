// The file-system port of the commit log (leveldb's Env idea): the log does all its I/O through
// this interface so tests can inject failing writes/fsyncs without a FUSE mount.
// Durability contract of an implementation: `datasync()` returns only when every byte written
// through this handle is on stable storage; `syncDir()` makes renames/unlinks in it durable.

import * as fsp from 'node:fs/promises';

export interface LogFile {
  /** Writes all of `data` at `position` (positional; never moves a file offset). */
  write(data: Uint8Array, position: number): Promise<void>;
  /** Reads up to `length` bytes at `position` into `into[0..]`; returns the bytes read (short at EOF). */
  read(into: Uint8Array, length: number, position: number): Promise<number>;
  datasync(): Promise<void>;
  sizeBytes(): Promise<number>;
  close(): Promise<void>;
}

export interface LogFs {
  mkdirp(dir: string): Promise<void>;
  readdir(dir: string): Promise<string[]>;
  /** Opens an existing file for read and write. */
  openExisting(path: string): Promise<LogFile>;
  /** Creates a new file (fails if it exists) for read and write. */
  create(path: string): Promise<LogFile>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  syncDir(dir: string): Promise<void>;
}

class NodeLogFile implements LogFile {
  constructor(private readonly fh: fsp.FileHandle) {}

  async write(data: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, position + done);
      done += bytesWritten;
    }
  }

  async read(into: Uint8Array, length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(into, done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  datasync(): Promise<void> {
    return this.fh.datasync();
  }

  async sizeBytes(): Promise<number> {
    return (await this.fh.stat()).size;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

export const nodeLogFs: LogFs = {
  async mkdirp(dir) {
    await fsp.mkdir(dir, { recursive: true });
  },
  readdir: (dir) => fsp.readdir(dir),
  async openExisting(path) {
    return new NodeLogFile(await fsp.open(path, 'r+'));
  },
  async create(path) {
    return new NodeLogFile(await fsp.open(path, 'wx+'));
  },
  rename: (from, to) => fsp.rename(from, to),
  unlink: (path) => fsp.unlink(path),
  async syncDir(dir) {
    const fh = await fsp.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
};
