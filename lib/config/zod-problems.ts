import type { z } from 'zod';

/**
 * Turns zod issues into one line per problem that names the key path, what is allowed and what was
 * found ("training.schedule: expected one of cosine | linear | constant, got "cosin""). zod's own
 * messages name neither the key nor the value, and say "Invalid input" for unions.
 */

export type KeyPath = readonly (string | number)[];

export interface Problem {
  /** Where in the input, e.g. ['lora', 'targets', 1]. */
  path: KeyPath;
  message: string;
}

/** The keys an object at `path` accepts, used to suggest a fix for an unknown key. */
export type AllowedKeys = (path: KeyPath) => readonly string[] | undefined;

type Issue = z.core.$ZodIssue;

export function problemsFromIssues(
  issues: readonly Issue[],
  input: unknown,
  allowedKeys: AllowedKeys = () => undefined,
  base: KeyPath = [],
): Problem[] {
  return issues.flatMap((issue) => problemsFromIssue(issue, input, allowedKeys, base));
}

function problemsFromIssue(issue: Issue, input: unknown, allowedKeys: AllowedKeys, base: KeyPath): Problem[] {
  const path = [...base, ...issue.path.map(toKey)];
  const value = valueAt(input, path);
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({ path: [...path, key], message: unknownKeyMessage(key, allowedKeys(path)) }));
    case 'invalid_union':
      if (value === undefined) return [{ path, message: 'required, but missing' }];
      return unionProblems(issue, path, value, input, allowedKeys);
    default:
      return [{ path, message: messageFor(issue, value) }];
  }
}

function messageFor(issue: Issue, value: unknown): string {
  switch (issue.code) {
    case 'invalid_type':
      if (value === undefined) return 'required, but missing';
      return `expected ${typeNoun(issue.expected)}, got ${describeValue(value)}`;
    case 'invalid_value':
      return issue.values.length === 1
        ? `expected ${JSON.stringify(issue.values[0])}, got ${describeValue(value)}`
        : `expected one of ${issue.values.map((v) => String(v)).join(' | ')}, got ${describeValue(value)}`;
    case 'too_small':
      return `${boundText(issue.origin, 'min', Number(issue.minimum), issue.inclusive ?? true)}, got ${describeSize(issue.origin, value)}`;
    case 'too_big':
      return `${boundText(issue.origin, 'max', Number(issue.maximum), issue.inclusive ?? true)}, got ${describeSize(issue.origin, value)}`;
    case 'custom':
      return issue.message;
    default:
      return `${issue.message}, got ${describeValue(value)}`;
  }
}

/**
 * A union fails with one issue list per alternative. When exactly one alternative has the input's
 * shape (an object given where an object or "none" is allowed), its issues say what is wrong inside
 * it; otherwise the problem is the choice itself, so list the alternatives.
 */
function unionProblems(
  issue: Extract<Issue, { code: 'invalid_union' }>,
  path: KeyPath,
  value: unknown,
  input: unknown,
  allowedKeys: AllowedKeys,
): Problem[] {
  if (issue.errors.length === 0) {
    // A discriminated union whose discriminator matched no option.
    const options = 'options' in issue && Array.isArray(issue.options) ? issue.options.map(String) : undefined;
    const expected = options ? `expected one of ${options.join(' | ')}` : issue.message;
    return [{ path, message: `${expected}, got ${describeValue(value)}` }];
  }
  const fitting = issue.errors.filter((branch) => branchFits(branch, value));
  const only = fitting.length === 1 ? fitting[0] : undefined;
  if (only && !only.every((branchIssue) => branchIssue.path.length === 0 && branchIssue.code === 'invalid_value')) {
    return problemsFromIssues(only, input, allowedKeys, path);
  }
  const choices = issue.errors.map(expectation).join(' or ');
  return [{ path, message: `expected ${choices}, got ${describeValue(value)}` }];
}

/** Whether an alternative accepted the input's type, so that its complaints are about content. */
function branchFits(branch: readonly Issue[], value: unknown): boolean {
  return branch.every((issue) => {
    if (issue.path.length > 0) return true;
    if (issue.code === 'invalid_type') return false;
    if (issue.code === 'invalid_value') return issue.values.some((allowed) => typeof allowed === typeof value);
    if (issue.code === 'invalid_union') return issue.errors.some((inner) => branchFits(inner, value));
    return true;
  });
}

function expectation(branch: readonly Issue[]): string {
  const issue = branch.find((candidate) => candidate.path.length === 0) ?? branch[0];
  if (!issue) return 'something else';
  switch (issue.code) {
    case 'invalid_type':
      return typeNoun(issue.expected);
    case 'invalid_value':
      return issue.values.map((v) => JSON.stringify(v)).join(' | ');
    case 'too_small':
      return boundedNoun(issue.origin, 'min', Number(issue.minimum), issue.inclusive ?? true);
    case 'too_big':
      return boundedNoun(issue.origin, 'max', Number(issue.maximum), issue.inclusive ?? true);
    case 'invalid_union':
      return issue.errors.map(expectation).join(' or ');
    default:
      return issue.message;
  }
}

/** "a number >= 1", "a list of at least 1 item": an alternative in a union's message. */
function boundedNoun(origin: string, side: 'min' | 'max', bound: number, inclusive: boolean): string {
  const rule = boundText(origin, side, bound, inclusive);
  if (origin === 'array' || origin === 'set') return `a list that ${rule.replace(/^must have/, 'has')}`;
  if (origin === 'string') return `a string that ${rule.replace(/^must (not )?be/, (_, not: string | undefined) => (not ? 'is not' : 'is'))}`;
  return `${typeNoun(origin)} ${rule.replace(/^must be /, '')}`;
}

function boundText(origin: string, side: 'min' | 'max', bound: number, inclusive: boolean): string {
  if (origin === 'array' || origin === 'set') {
    return side === 'min' ? `must have at least ${bound} item${bound === 1 ? '' : 's'}` : `must have at most ${bound} items`;
  }
  if (origin === 'string') {
    if (side === 'min' && bound === 1) return 'must not be empty';
    return side === 'min' ? `must be at least ${bound} characters long` : `must be at most ${bound} characters long`;
  }
  const op = side === 'min' ? (inclusive ? '>=' : '>') : inclusive ? '<=' : '<';
  return `must be ${op} ${bound}`;
}

function describeSize(origin: string, value: unknown): string {
  if (Array.isArray(value)) return `${value.length} item${value.length === 1 ? '' : 's'}`;
  if (origin === 'string' && typeof value === 'string' && value.length === 0) return 'an empty string';
  return describeValue(value);
}

function typeNoun(expected: string): string {
  switch (expected) {
    case 'int':
      return 'an integer';
    case 'number':
      return 'a number';
    case 'string':
      return 'a string';
    case 'boolean':
      return 'true or false';
    case 'object':
    case 'record':
      return 'an object';
    case 'array':
      return 'a list';
    default:
      return expected;
  }
}

export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return String(value);
}

function unknownKeyMessage(key: string, allowed: readonly string[] | undefined): string {
  if (!allowed) return 'unknown key';
  const suggestion = closest(key, allowed);
  const hint = suggestion ? `; did you mean "${suggestion}"?` : '';
  return `unknown key${hint} (allowed: ${allowed.join(', ')})`;
}

/** The allowed key within a small edit distance, for typos such as `lerning_rate`. */
function closest(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const candidate of allowed) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function toKey(segment: PropertyKey): string | number {
  return typeof segment === 'number' ? segment : String(segment);
}

export function valueAt(input: unknown, path: KeyPath): unknown {
  let current = input;
  for (const segment of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[segment];
  }
  return current;
}

/** `lora.targets[1]`; the top level is named so that a message never starts with a colon. */
export function formatKeyPath(path: KeyPath): string {
  if (path.length === 0) return '(top level)';
  return path.reduce<string>(
    (text, segment) => (typeof segment === 'number' ? `${text}[${segment}]` : text ? `${text}.${segment}` : segment),
    '',
  );
}
