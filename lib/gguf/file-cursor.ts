import type { FileHandle } from 'node:fs/promises';
import { GgufFormatError } from './format-error.js';

const CHUNK_BYTES = 1 << 20;

/**
 * Sequential little-endian reads over a file handle through a window buffer, so a 4 GB blob
 * is never read whole. `ensure(n)` must be awaited before up to n bytes of synchronous reads;
 * callers check `buffered()` first to avoid a microtask per value in big arrays.
 */
export class FileCursor {
  private buf: Buffer = Buffer.alloc(0);
  /** File offset of buf[0]. */
  private bufStart = 0;
  /** Absolute file offset of the next byte to read. */
  pos = 0;

  constructor(
    private readonly fh: FileHandle,
    readonly fileSize: number,
    readonly path: string,
  ) {}

  fail(detail: string, offset: number = this.pos): never {
    throw new GgufFormatError(this.path, detail, offset);
  }

  remaining(): number {
    return this.fileSize - this.pos;
  }

  buffered(): number {
    return this.bufStart + this.buf.length - this.pos;
  }

  /** Makes n bytes from `pos` readable synchronously; `what` names the item for the error. */
  async ensure(n: number, what: string): Promise<void> {
    if (this.buffered() >= n) return;
    if (n > this.remaining()) {
      this.fail(`file truncated: ${what} needs ${n} bytes but only ${this.remaining()} remain`);
    }
    const want = Math.min(Math.max(n, CHUNK_BYTES), this.remaining());
    const next = Buffer.allocUnsafe(want);
    const keep = Math.max(0, this.buffered());
    this.buf.copy(next, 0, this.pos - this.bufStart, this.pos - this.bufStart + keep);
    let filled = keep;
    while (filled < want) {
      const { bytesRead } = await this.fh.read(next, filled, want - filled, this.pos + filled);
      if (bytesRead === 0) this.fail(`file shrank while reading ${what}`);
      filled += bytesRead;
    }
    this.buf = next;
    this.bufStart = this.pos;
  }

  private at(size: number): number {
    const i = this.pos - this.bufStart;
    this.pos += size;
    return i;
  }

  u8(): number {
    return this.buf.readUInt8(this.at(1));
  }
  i8(): number {
    return this.buf.readInt8(this.at(1));
  }
  u16(): number {
    return this.buf.readUInt16LE(this.at(2));
  }
  i16(): number {
    return this.buf.readInt16LE(this.at(2));
  }
  u32(): number {
    return this.buf.readUInt32LE(this.at(4));
  }
  i32(): number {
    return this.buf.readInt32LE(this.at(4));
  }
  u64(): bigint {
    return this.buf.readBigUInt64LE(this.at(8));
  }
  i64(): bigint {
    return this.buf.readBigInt64LE(this.at(8));
  }
  f32(): number {
    return this.buf.readFloatLE(this.at(4));
  }
  f64(): number {
    return this.buf.readDoubleLE(this.at(8));
  }
  /** A view, valid until the next `ensure`. */
  bytes(n: number): Buffer {
    const i = this.at(n);
    return this.buf.subarray(i, i + n);
  }
}
