/**
 * `createConversationLogger`: lets a host process (ICEBURG's runtime) append conversations as JSONL
 * lines in ICEBURG's conversations.jsonl shape, which `prepare` reads as `iceburg-conversations`.
 *
 * - Each line goes out in ONE write(2) on a file opened O_APPEND, so concurrent writers (threads or
 *   processes) never interleave inside a line and a crash cannot leave half a line of ours.
 * - A line torn by an earlier crash of some other writer (file not ending in "\n") is closed off
 *   with a newline before our first line, so the damage stays one bad line, reported by `prepare`.
 * - Size-based rotation: when the file reaches `maxBytes`, it is moved to
 *   `<name>-<UTC timestamp>-<pid>-<n>.jsonl` under a lock file; writers holding the old file notice the
 *   rename and reopen. `prepare` reads the folder, so rotated files are included.
 */
import { closeSync, fstatSync, linkSync, mkdirSync, openSync, readSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { z } from 'zod';
import { ROLES } from './record.js';

export const conversationLoggerOptionsSchema = z.object({
  path: z.string(),
  /** Rotate when the file reaches this size; 0 never rotates. */
  maxBytes: z.number().int().nonnegative().default(64 * 1024 * 1024),
  /** Merged into every line's metadata (e.g. model, agent). */
  metadata: z.record(z.string(), z.unknown()).default({}),
});
export type ConversationLoggerOptions = z.input<typeof conversationLoggerOptionsSchema>;

const loggedMessageSchema = z.object({
  role: z.enum(ROLES),
  content: z.string().min(1),
  weight: z.union([z.literal(0), z.literal(1)]).optional(),
});

export const loggedConversationSchema = z.object({
  messages: z.array(loggedMessageSchema).min(1),
  qualityScore: z.number().min(0).max(1).nullable().default(null),
  conversationId: z.string().optional(),
  metadata: z.record(z.string(), z.unknown()).default({}),
});
export type LoggedConversation = z.input<typeof loggedConversationSchema>;

export interface ConversationLogger {
  /** Validates and appends one conversation; throws on invalid input or a failed write. */
  log(conversation: LoggedConversation): void;
  close(): void;
}

const LOCK_STALE_MS = 10_000;

interface AppendHandle {
  fd: number;
  inode: number;
}

/** The file's last byte, read through the handle itself (the path may already name a newer file). */
function lastByte(fd: number): number | undefined {
  const size = fstatSync(fd).size;
  if (size === 0) return undefined;
  const last = Buffer.alloc(1);
  return readSync(fd, last, 0, 1, size - 1) === 1 ? last[0] : undefined;
}

/**
 * Opens `path` for appending; a torn last line left by a crashed writer is closed with "\n". A
 * live writer's line can look torn for an instant while the kernel copies it in, so a torn end
 * counts only if it is still there a moment later.
 */
function openForAppend(path: string): AppendHandle {
  const fd = openSync(path, 'a+');
  const inode = fstatSync(fd).ino;
  let torn = false;
  for (let look = 0; look < 3; look++) {
    const last = lastByte(fd);
    torn = last !== undefined && last !== 0x0a;
    if (!torn) break;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
  }
  if (torn) writeSync(fd, '\n');
  return { fd, inode };
}

function currentInode(path: string): number {
  try {
    return statSync(path).ino;
  } catch {
    return -1;
  }
}

/** Moves a full log aside under a lock; another writer already rotating means nothing to do. */
function rotate(path: string, maxBytes: number): void {
  const lock = `${path}.lock`;
  let lockFd: number;
  try {
    lockFd = openSync(lock, 'wx');
  } catch {
    // Someone else is rotating; a lock older than LOCK_STALE_MS is from a crashed writer.
    try {
      if (Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS) unlinkSync(lock);
    } catch {
      /* gone already */
    }
    return;
  }
  try {
    // Another writer may have rotated it just before we took the lock: then there is nothing to move.
    const size = statSync(path, { throwIfNoEntry: false })?.size ?? 0;
    if (maxBytes > 0 && size >= maxBytes) {
      const ext = extname(path) || '.jsonl';
      const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('.', '');
      // link(2) refuses to replace an existing name, so an earlier rotated file is never overwritten.
      for (let n = 0; ; n++) {
        try {
          linkSync(path, join(dirname(path), `${basename(path, ext)}-${stamp}-${process.pid}-${n}${ext}`));
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
      }
      unlinkSync(path);
    }
  } finally {
    closeSync(lockFd);
    unlinkSync(lock);
  }
}

function conversationLine(defaults: Record<string, unknown>, conversation: LoggedConversation): Buffer {
  const c = loggedConversationSchema.parse(conversation);
  const metadata = {
    ...defaults,
    ...c.metadata,
    ...(c.conversationId !== undefined ? { conversation_id: c.conversationId } : {}),
    quality_score: c.qualityScore,
    timestamp: new Date().toISOString(),
  };
  return Buffer.from(`${JSON.stringify({ messages: c.messages, metadata })}\n`);
}

export function createConversationLogger(options: ConversationLoggerOptions): ConversationLogger {
  const opts = conversationLoggerOptionsSchema.parse(options);
  mkdirSync(dirname(opts.path), { recursive: true });
  let handle = openForAppend(opts.path);
  // Another writer rotated the file: reopen, so lines go to the live log, not the moved one.
  const followRotation = () => {
    if (currentInode(opts.path) === handle.inode) return;
    closeSync(handle.fd);
    handle = openForAppend(opts.path);
  };
  return {
    log(conversation) {
      const line = conversationLine(opts.metadata, conversation);
      followRotation();
      const written = writeSync(handle.fd, line);
      if (written !== line.length) throw new Error(`${opts.path}: short write (${written} of ${line.length} bytes)`);
      if (opts.maxBytes > 0 && fstatSync(handle.fd).size >= opts.maxBytes) {
        rotate(opts.path, opts.maxBytes);
        followRotation();
      }
    },
    close() {
      if (handle.fd >= 0) closeSync(handle.fd);
      handle = { fd: -1, inode: -1 };
    },
  };
}
