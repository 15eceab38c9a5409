/** `mlx-qlora route`: the rollout proxy in front of Ollama, or (`--summary`) where the rollout stands. */
import { Command, InvalidArgumentError } from 'commander';
import { loadRolloutPlan, type RolloutPlan } from '../../rollout/plan.js';
import { readOutcomes } from '../../rollout/outcome-log.js';
import { startRolloutProxy } from '../../rollout/proxy.js';
import { summarizeOutcomes, type ArmSummary, type RolloutSummary } from '../../rollout/summary.js';

interface RouteFlags {
  plan: string;
  listen: number;
  host: string;
  upstream: string;
  summary?: boolean;
}

function portArg(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('expected a port number 0–65535');
  return port;
}

const percent = (x: number) => (Number.isNaN(x) ? '–' : `${(100 * x).toFixed(1)}%`);

function armLine(name: string, a: ArmSummary, metric: RolloutPlan['metric']): string {
  const p = metric === 'feedback' ? a.feedback : a.success;
  return `  ${name.padEnd(9)} ${a.model}: ${a.requests} requests, ${metric} ${percent(p.rate)} [${percent(p.low)}, ${percent(p.high)}] of ${p.trials}, errors ${a.requests - a.success.successes}`;
}

export function formatSummary(s: RolloutSummary): string {
  return [
    `share ${percent(s.share)} to the candidate; ${s.metric} with 95% Wilson intervals:`,
    armLine('control', s.arms.control, s.metric),
    armLine('candidate', s.arms.candidate, s.metric),
    `recommendation: ${s.recommendation.action}${s.recommendation.action === 'promote' ? ` to ${percent(s.recommendation.nextShare)}` : ''} — ${s.recommendation.reason}`,
  ].join('\n');
}

async function serve(plan: RolloutPlan, flags: RouteFlags): Promise<void> {
  const proxy = await startRolloutProxy({ plan, upstream: flags.upstream, port: flags.listen, host: flags.host });
  process.stdout.write(
    `routing ${plan.model ?? plan.control}: ${percent(plan.share)} of keys to ${plan.candidate}, the rest to ${plan.control}\n` +
      `listening on ${proxy.url} (set OLLAMA_HOST=${proxy.url.replace('http://', '')}), forwarding to ${flags.upstream}; outcomes in ${plan.log}\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      void proxy.close().then(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

export function register(program: Command): void {
  program
    .command('route')
    .description('A/B rollout proxy for Ollama: routes chat/generate requests by key between two model versions and records outcomes')
    .requiredOption('--plan <file>', 'rollout plan (YAML): model, control, candidate, salt, share, stages, rules')
    .option('--listen <port>', 'port to listen on', portArg, 11435)
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--upstream <host>', 'Ollama to forward to (OLLAMA_HOST forms)', process.env.OLLAMA_HOST ?? '127.0.0.1:11434')
    .option('--summary', 'print per-arm results and the recommendation, then exit')
    .action(async (flags: RouteFlags) => {
      const plan = await loadRolloutPlan(flags.plan);
      if (flags.summary) {
        process.stdout.write(`${formatSummary(summarizeOutcomes(await readOutcomes(plan.log), plan))}\n`);
        return;
      }
      await serve(plan, flags);
    });
}
