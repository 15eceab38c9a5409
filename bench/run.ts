/**
 * `npm run bench [-- name ... --option value]`: runs every bench/*.bench.ts (or the named ones) and prints its table.
 * Each bench module's default export is a `Bench`.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { renderTable, type Bench } from './table.js';

const here = dirname(fileURLToPath(import.meta.url));
// Options such as `--layers 2` belong to the benches, which read process.argv themselves.
const args = process.argv.slice(2);
const wanted = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)))
  .sort();

let failed = false;
for (const file of files) {
  const mod = (await import(pathToFileURL(join(here, file)).href)) as { default: Bench };
  try {
    console.log(renderTable(await mod.default()));
  } catch (error) {
    failed = true;
    console.error(`## ${file} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  }
  console.log('');
}
process.exitCode = failed ? 1 : 0;
