import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const BUFFER_BYTES = 4 << 20;

/**
 * A file written to a temp name beside its target, buffered, then fsynced and renamed over the
 * target, so readers see either the old file or the complete new one. `abort` removes the temp.
 */
export class AtomicFile {
  private buf = Buffer.allocUnsafe(BUFFER_BYTES);
  private used = 0;
  /** Bytes written so far, buffered or not. */
  written = 0;
  private done = false;

  private constructor(
    readonly path: string,
    readonly tempPath: string,
    private readonly fh: FileHandle,
  ) {}

  static async create(path: string): Promise<AtomicFile> {
    const tempPath = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    return new AtomicFile(path, tempPath, await open(tempPath, 'wx'));
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
  }

  async commit(): Promise<void> {
    await this.flush();
    await this.fh.sync();
    await this.fh.close();
    this.done = true;
    await rename(this.tempPath, this.path);
    await syncDirectory(dirname(this.path));
  }

  async abort(): Promise<void> {
    if (!this.done) await this.fh.close().catch(() => undefined);
    this.done = true;
    await unlink(this.tempPath).catch(() => undefined);
  }
}

/** Makes the rename durable; some platforms cannot open directories, which is harmless. */
async function syncDirectory(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Not supported here (e.g. Windows); the data itself is already fsynced.
  } finally {
    await fh?.close().catch(() => undefined);
  }
}
