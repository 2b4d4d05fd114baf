// PNG copies of the SVG plots, rendered by whatever is installed: `rsvg-convert` (Debian:
// librsvg2-bin) first, else a headless Chromium. Neither is a dependency: without them the
// report keeps the SVG only and says so. Each render is bounded by a timeout.

import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const RENDER_TIMEOUT_MS = 30_000;

export type PngRenderer =
  | { readonly kind: 'rsvg-convert'; readonly path: string }
  | { readonly kind: 'chromium'; readonly path: string };

/** The first executable named `name` on PATH, or null. */
export function which(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

export function findPngRenderer(): PngRenderer | null {
  const rsvg = which('rsvg-convert');
  if (rsvg !== null) return { kind: 'rsvg-convert', path: rsvg };
  for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
    const path = which(name);
    if (path !== null) return { kind: 'chromium', path };
  }
  return null;
}

export function renderPng(
  renderer: PngRenderer,
  svgPath: string,
  pngPath: string,
  size: { width: number; height: number },
): Promise<void> {
  let args: string[];
  switch (renderer.kind) {
    case 'rsvg-convert':
      args = ['--format', 'png', '--output', pngPath, svgPath];
      break;
    case 'chromium':
      args = [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--hide-scrollbars',
        `--window-size=${size.width},${size.height}`,
        `--screenshot=${pngPath}`,
        pathToFileURL(svgPath).href,
      ];
      break;
  }
  return new Promise((resolve, reject) => {
    execFile(renderer.path, args, { timeout: RENDER_TIMEOUT_MS }, (err) =>
      err ? reject(err) : resolve(),
    );
  });
}
