// Small files that must be whole after any crash: written to a temp file, fsynced, renamed over
// the old one, and the directory fsynced, so a reader finds either the old or the new content.

import { open, rename } from 'node:fs/promises';
import path from 'node:path';

export async function writeFileDurably(dir: string, name: string, text: string): Promise<void> {
  const tmp = path.join(dir, `${name}.tmp`);
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path.join(dir, name));
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}
