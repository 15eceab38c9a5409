/**
 * Seeds for tests that draw random schedules: MLX_QLORA_TEST_SEED replays a failure, otherwise a
 * fresh seed from the clock, so repeated runs keep exploring. The seed is written to stderr and
 * should go into every assertion message, so a failure report carries what reproduces it.
 */
export const TEST_SEED_ENV = 'MLX_QLORA_TEST_SEED';

export function testSeed(label: string, env: NodeJS.ProcessEnv = process.env): number {
  const given = env[TEST_SEED_ENV];
  let seed: number;
  if (given === undefined || given === '') {
    seed = Date.now() % 1_000_003;
  } else {
    if (!/^\d+$/.test(given.trim())) throw new Error(`${TEST_SEED_ENV}=${JSON.stringify(given)}: expected a non-negative integer`);
    seed = Number(given.trim());
  }
  process.stderr.write(`${label}: seed ${seed} (replay with ${TEST_SEED_ENV}=${seed})\n`);
  return seed;
}
