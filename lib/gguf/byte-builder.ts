/** A growable little-endian byte buffer for assembling the GGUF header in memory. */
export class ByteBuilder {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  /** Grows the buffer if needed and returns where the next n bytes go; read `buf` only after. */
  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
      this.buf.copy(next, 0, 0, this.length);
      this.buf = next;
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  u8(v: number): void {
    const at = this.reserve(1);
    this.buf.writeUInt8(v, at);
  }
  i8(v: number): void {
    const at = this.reserve(1);
    this.buf.writeInt8(v, at);
  }
  u16(v: number): void {
    const at = this.reserve(2);
    this.buf.writeUInt16LE(v, at);
  }
  i16(v: number): void {
    const at = this.reserve(2);
    this.buf.writeInt16LE(v, at);
  }
  u32(v: number): void {
    const at = this.reserve(4);
    this.buf.writeUInt32LE(v, at);
  }
  i32(v: number): void {
    const at = this.reserve(4);
    this.buf.writeInt32LE(v, at);
  }
  u64(v: bigint): void {
    const at = this.reserve(8);
    this.buf.writeBigUInt64LE(v, at);
  }
  i64(v: bigint): void {
    const at = this.reserve(8);
    this.buf.writeBigInt64LE(v, at);
  }
  f32(v: number): void {
    const at = this.reserve(4);
    this.buf.writeFloatLE(v, at);
  }
  f64(v: number): void {
    const at = this.reserve(8);
    this.buf.writeDoubleLE(v, at);
  }
  string(s: string): void {
    const n = Buffer.byteLength(s);
    this.u64(BigInt(n));
    const at = this.reserve(n);
    this.buf.write(s, at, n, 'utf8');
  }
  /** Zero bytes (the buffer is zero-filled on allocation, so reserving is enough). */
  zeros(n: number): void {
    this.reserve(n);
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}
