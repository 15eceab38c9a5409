/**
 * The one way files are written when they must survive a crash or power loss whole or not at
 * all: into a temp name beside the target, synced, renamed over it, and the folder synced.
 * Readers see the old file or the complete new one, never a mix. fsync through libuv uses
 * F_FULLFSYNC on macOS, so "synced" there means on the disk, not in its cache.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/** Prefix of every temporary name, so a recovering reader can tell leftovers from real files. */
export const TEMP_PREFIX = '.tmp-';

const BUFFER_BYTES = 4 << 20;
/**
 * Bytes written between background flushes of a large file. Without them the kernel may hold
 * gigabytes of dirty pages until commit's fsync, which then waits for all of them at the end;
 * flushed as the file grows, the writing overlaps the work that produces the next bytes.
 */
const FLUSH_EVERY_BYTES = 256 << 20;

export function tempName(finalName: string): string {
  return `${TEMP_PREFIX}${finalName}-${randomBytes(4).toString('hex')}`;
}

export function isErrno(error: unknown, ...codes: string[]): boolean {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? '');
}

export async function fsyncFile(filePath: string): Promise<void> {
  // r+ because Windows cannot flush a handle opened read-only.
  const handle = await open(filePath, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes entries created, renamed or removed in a folder durable. */
export async function fsyncDir(dirPath: string): Promise<void> {
  let handle;
  try {
    handle = await open(dirPath, 'r');
  } catch (error) {
    // Windows cannot open folders; its renames are durable once they return.
    if (process.platform === 'win32') return;
    throw error;
  }
  try {
    await handle.sync();
  } catch (error) {
    // Some filesystems (network, FUSE) cannot sync folders; nothing better is possible there.
    if (!isErrno(error, 'EINVAL', 'ENOTSUP', 'EISDIR', 'EPERM')) throw error;
  } finally {
    await handle.close();
  }
}

/** A file streamed into place: write() chunks (buffered), then commit() or abort(). */
export class AtomicFile {
  private buf = Buffer.allocUnsafe(BUFFER_BYTES);
  private used = 0;
  /** Bytes written so far, buffered or not. */
  written = 0;
  private done = false;
  private unflushed = 0;
  /** The background flush in flight; its failure is kept for commit() to throw. */
  private flushing: Promise<void> | undefined;
  private flushError: unknown;

  private constructor(
    readonly path: string,
    readonly tempPath: string,
    private readonly fh: FileHandle,
  ) {}

  static async create(filePath: string): Promise<AtomicFile> {
    const tempPath = path.join(path.dirname(filePath), tempName(path.basename(filePath)));
    return new AtomicFile(filePath, tempPath, await open(tempPath, 'wx'));
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.written += chunk.byteLength;
    if (this.used + chunk.byteLength <= this.buf.length) {
      this.buf.set(chunk, this.used);
      this.used += chunk.byteLength;
      return;
    }
    await this.flush();
    if (chunk.byteLength >= this.buf.length) await this.writeAll(chunk);
    else {
      this.buf.set(chunk, 0);
      this.used = chunk.byteLength;
    }
  }

  async zeros(n: number): Promise<void> {
    if (n > 0) await this.write(new Uint8Array(n));
  }

  private async flush(): Promise<void> {
    if (this.used > 0) await this.writeAll(this.buf.subarray(0, this.used));
    this.used = 0;
  }

  private async writeAll(data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.byteLength) {
      const { bytesWritten } = await this.fh.write(data, off, data.byteLength - off);
      off += bytesWritten;
    }
    this.unflushed += data.byteLength;
    if (this.unflushed >= FLUSH_EVERY_BYTES && this.flushing === undefined) {
      this.unflushed = 0;
      this.flushing = this.fh.datasync().then(
        () => {
          this.flushing = undefined;
        },
        (error: unknown) => {
          this.flushError ??= error;
          this.flushing = undefined;
        },
      );
    }
  }

  async commit(): Promise<void> {
    await this.flush();
    await this.flushing;
    if (this.flushError !== undefined) throw this.flushError;
    await this.fh.sync();
    await this.fh.close();
    this.done = true;
    await rename(this.tempPath, this.path);
    await fsyncDir(path.dirname(this.path));
  }

  /** Removes the temp file; the target is untouched. Safe to call after a failed commit. */
  async abort(): Promise<void> {
    // The handle is closed only once no flush of it is in flight.
    await this.flushing;
    if (!this.done) await this.fh.close().catch(() => undefined);
    this.done = true;
    await unlink(this.tempPath).catch(() => undefined);
  }
}

/** Replaces `filePath` with `data` atomically. */
export async function writeFileAtomic(filePath: string, data: string | Uint8Array): Promise<void> {
  const file = await AtomicFile.create(filePath);
  try {
    await file.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    await file.commit();
  } catch (error) {
    await file.abort();
    throw error;
  }
}
