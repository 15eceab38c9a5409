/**
 * Synchronous buffered file writer and sequential reader. prepare is a single-threaded pipeline,
 * so plain positional I/O with large buffers is simpler than streams and keeps memory flat.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

export class BufferedFileWriter {
  private readonly fd: number;
  private readonly buffer: Buffer;
  private used = 0;
  private hash: Hash | undefined;
  bytesWritten = 0;

  constructor(
    readonly path: string,
    options: { bufferBytes?: number; sha256?: boolean; append?: boolean } = {},
  ) {
    this.fd = openSync(path, options.append ? 'a' : 'w');
    this.buffer = Buffer.allocUnsafe(options.bufferBytes ?? 1 << 20);
    if (options.sha256) this.hash = createHash('sha256');
  }

  write(bytes: Uint8Array): void {
    this.bytesWritten += bytes.length;
    if (bytes.length > this.buffer.length - this.used) this.flush();
    if (bytes.length >= this.buffer.length) {
      this.hash?.update(bytes);
      writeAll(this.fd, bytes);
      return;
    }
    this.buffer.set(bytes, this.used);
    this.used += bytes.length;
  }

  writeTyped(view: ArrayBufferView): void {
    this.write(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
  }

  flush(): void {
    if (this.used === 0) return;
    const chunk = this.buffer.subarray(0, this.used);
    this.hash?.update(chunk);
    writeAll(this.fd, chunk);
    this.used = 0;
  }

  /** Flushes and closes; returns the sha256 hex of everything written if requested. */
  close(): string | undefined {
    this.flush();
    closeSync(this.fd);
    return this.hash?.digest('hex');
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
}

export class SequentialFileReader {
  private readonly fd: number;
  private position = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'r');
  }

  /** Reads exactly `out.length` bytes or throws. */
  readInto(out: Uint8Array): void {
    let off = 0;
    while (off < out.length) {
      const n = readSync(this.fd, out, off, out.length - off, this.position);
      if (n === 0) throw new Error(`${this.path}: unexpected end of file at byte ${this.position}`);
      off += n;
      this.position += n;
    }
  }

  skip(bytes: number): void {
    this.position += bytes;
  }

  close(): void {
    closeSync(this.fd);
  }
}
