// Reads vitest's JSON report: fails when any test file on disk under a required folder (the native
// tests, the README examples, the new-user smoke test) is missing from it, skipped, or failing, and
// prints the plain closing line CI reads.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const report = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const tests = report.testResults.flatMap((file) =>
  file.assertionResults.map((t) => ({ file: file.name, status: t.status, title: t.fullName })),
);
const nativeTests = tests.filter((t) => t.file.includes('/test/native/'));
const nativePassed = nativeTests.filter((t) => t.status === 'passed').length;
const passed = tests.filter((t) => t.status === 'passed').length;
const failed = tests.filter((t) => t.status === 'failed').length;
const skipped = tests.length - passed - failed;

let ok = failed === 0;
if (nativePassed === 0 || nativePassed !== nativeTests.length) {
  console.error(`native tests: ${nativePassed} of ${nativeTests.length} passed; every one must run and pass`);
  ok = false;
}
// Per file, from the disk: a required test file that the run left out (a narrowed include, a
// filter, a crash before reporting) would otherwise go unnoticed while the others pass.
const testRoot = join(dirname(fileURLToPath(import.meta.url)), '..', 'test');
for (const folder of ['native', 'docs', 'smoke']) {
  const names = existsSync(join(testRoot, folder)) ? readdirSync(join(testRoot, folder)).filter((f) => f.endsWith('.test.ts')).sort() : [];
  if (names.length === 0) {
    console.error(`test/${folder}/ holds no test file`);
    ok = false;
  }
  for (const name of names) {
    const entry = report.testResults.find((f) => f.name.replaceAll('\\', '/').endsWith(`/test/${folder}/${name}`));
    const results = entry?.assertionResults ?? [];
    const filePassed = results.filter((t) => t.status === 'passed').length;
    let problem;
    if (!entry) problem = 'not in the report';
    else if (entry.status === 'skipped' || (results.length > 0 && results.every((t) => t.status !== 'passed' && t.status !== 'failed'))) {
      problem = 'skipped';
    }
    else if (filePassed === 0) problem = 'no test passed';
    else if (filePassed !== results.length) problem = `${filePassed} of ${results.length} tests passed`;
    if (problem) {
      console.error(`test file test/${folder}/${name}: ${problem}`);
      ok = false;
    }
  }
}
for (const file of report.testResults.filter((f) => f.status !== 'passed')) {
  console.error(`failed: ${file.name}${file.message ? `: ${file.message}` : ''}`);
  ok = false;
}
console.log(`native: ${nativePassed} passed, ${nativeTests.length - nativePassed} failed`);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(ok ? 0 : 1);
