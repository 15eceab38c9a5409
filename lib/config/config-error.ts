import { formatKeyPath, type KeyPath } from './zod-problems.js';

/** One thing wrong with a config, located as precisely as the source allows. */
export interface ConfigProblem {
  /** The key at fault; absent for problems with the file as a whole (unreadable, bad syntax). */
  path?: KeyPath;
  message: string;
  /** 1-based line in the config file, when it came from a file whose layout is known. */
  line?: number;
}

/**
 * A config that cannot be used. The message has one line per problem, each naming the file, the
 * line and the key path, so that a user can fix them all in one go:
 *   train.yaml:12: training.schedule: expected one of cosine | linear | constant, got "cosin"
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';

  constructor(
    readonly problems: readonly ConfigProblem[],
    readonly file?: string,
    what = 'training config',
  ) {
    super(formatProblems(problems, file, what));
  }
}

function formatProblems(problems: readonly ConfigProblem[], file: string | undefined, what: string): string {
  const lines = problems.map((problem) => {
    const where = file ? `${file}${problem.line ? `:${problem.line}` : ''}: ` : '';
    const key = problem.path ? `${formatKeyPath(problem.path)}: ` : '';
    return `${where}${key}${problem.message}`;
  });
  if (lines.length === 1) return lines[0] ?? '';
  return [`invalid ${what} (${lines.length} problems):`, ...lines.map((line) => `  ${line}`)].join('\n');
}
