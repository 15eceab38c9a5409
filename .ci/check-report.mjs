// Reads vitest's JSON report: fails when the native test files are missing, skipped or failing,
// and prints the plain closing line CI reads.
import { readFileSync } from 'node:fs';

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
for (const file of report.testResults.filter((f) => f.status !== 'passed')) {
  console.error(`failed: ${file.name}${file.message ? `: ${file.message}` : ''}`);
  ok = false;
}
console.log(`native: ${nativePassed} passed, ${nativeTests.length - nativePassed} failed`);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(ok ? 0 : 1);
