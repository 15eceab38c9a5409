import { readFileSync } from 'node:fs';
import { z } from 'zod';

const packageJsonSchema = z.object({ version: z.string().min(1) });
let cachedVersion: string | undefined;

/** This library's version from package.json (two levels up from lib/config and dist/config alike). */
export function libraryVersion(): string {
  if (cachedVersion === undefined) {
    try {
      const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
      cachedVersion = packageJsonSchema.parse(JSON.parse(text)).version;
    } catch {
      cachedVersion = '0.0.0-unknown';
    }
  }
  return cachedVersion;
}
