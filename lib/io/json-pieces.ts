/**
 * JSON.stringify's output (no indentation) in pieces, so that writing a large document (a 32,000-token
 * vocabulary with its merges) never holds the event loop for one long synchronous stringify.
 */
import { AtomicFile } from './atomic-file.js';

/** Objects and arrays with more entries than this are cut between entries. */
const ENTRIES_PER_PIECE = 2000;
/** Pieces are gathered up to about this many characters before a write. */
const WRITE_CHARS = 1 << 20;

function isContainer(value: unknown): value is Record<string, unknown> | unknown[] {
  return typeof value === 'object' && value !== null && typeof (value as { toJSON?: unknown }).toJSON !== 'function';
}

/** A container stringified in one piece: at most `perPiece` entries, none of them a container. */
function isSmall(value: Record<string, unknown> | unknown[], perPiece: number): boolean {
  if (Array.isArray(value)) return value.length <= perPiece && !value.some(isContainer);
  // Counted with an early exit: a 32,000-key vocabulary is not listed just to learn it is large.
  let entries = 0;
  for (const key in value) if (++entries > perPiece || isContainer(value[key])) return false;
  return true;
}

/** The pieces of an array; like JSON.stringify, an entry that has no JSON form is written as null. */
function* arrayPieces(value: unknown[], perPiece: number): Generator<string> {
  yield '[';
  for (let i = 0; i < value.length; i++) {
    const head = i > 0 ? ',' : '';
    const entry = value[i];
    if (isContainer(entry) && !isSmall(entry, perPiece)) {
      yield head;
      yield* jsonPieces(entry, perPiece);
    } else yield head + (JSON.stringify(entry) ?? 'null');
  }
  yield ']';
}

/** The pieces of an object; like JSON.stringify, a key whose value has no JSON form is left out. */
function* objectPieces(value: Record<string, unknown>, perPiece: number): Generator<string> {
  yield '{';
  let first = true;
  for (const key of Object.keys(value)) {
    const entry = value[key];
    const head = `${first ? '' : ','}${JSON.stringify(key)}:`;
    if (isContainer(entry) && !isSmall(entry, perPiece)) {
      first = false;
      yield head;
      yield* jsonPieces(entry, perPiece);
      continue;
    }
    const text = JSON.stringify(entry);
    if (text === undefined) continue;
    first = false;
    yield head + text;
  }
  yield '}';
}

/**
 * JSON.stringify(value) as a sequence of strings whose concatenation is exactly that text. Containers
 * are cut between entries down to those of at most `perPiece` plain values, which are one piece each.
 */
export function* jsonPieces(value: unknown, perPiece = ENTRIES_PER_PIECE): Generator<string> {
  if (!isContainer(value) || isSmall(value, perPiece)) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError('jsonPieces: the value has no JSON form');
    yield text;
    return;
  }
  yield* Array.isArray(value) ? arrayPieces(value, perPiece) : objectPieces(value, perPiece);
}

/**
 * Writes JSON.stringify(value) to `filePath` atomically, awaiting `turn()` between pieces so the
 * caller can give the event loop its turns.
 */
export async function writeJsonInPieces(filePath: string, value: unknown, turn: () => Promise<void>): Promise<void> {
  const file = await AtomicFile.create(filePath);
  try {
    let pending = '';
    for (const piece of jsonPieces(value)) {
      pending += piece;
      if (pending.length >= WRITE_CHARS) {
        await file.write(Buffer.from(pending, 'utf8'));
        pending = '';
      }
      await turn();
    }
    await file.write(Buffer.from(pending, 'utf8'));
    await file.commit();
  } catch (error) {
    await file.abort();
    throw error;
  }
}
