/**
 * Hand-assembles GGUF bytes field by field, independently of lib/gguf/writer, so reader tests
 * can build exactly the malformed files they need.
 */
export class RawGguf {
  private parts: Buffer[] = [];

  get length(): number {
    return this.parts.reduce((n, p) => n + p.length, 0);
  }
  u8(v: number): this {
    this.parts.push(Buffer.from([v]));
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.parts.push(b);
    return this;
  }
  i32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.parts.push(b);
    return this;
  }
  u64(v: bigint | number): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.parts.push(b);
    return this;
  }
  f32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.parts.push(b);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.parts.push(Buffer.from(b));
    return this;
  }
  str(s: string | Uint8Array): this {
    const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s);
    return this.u64(b.length).bytes(b);
  }
  header(nTensors: number | bigint, nKv: number | bigint, version = 3): this {
    return this.bytes(Buffer.from('GGUF', 'latin1')).u32(version).u64(nTensors).u64(nKv);
  }
  kvU32(key: string, v: number): this {
    return this.str(key).u32(4).u32(v);
  }
  kvStr(key: string, v: string): this {
    return this.str(key).u32(8).str(v);
  }
  tensorInfo(name: string, ne: readonly (number | bigint)[], type: number, offset: number | bigint): this {
    this.str(name).u32(ne.length);
    for (const n of ne) this.u64(n);
    return this.u32(type).u64(offset);
  }
  padTo(alignment: number): this {
    const pad = (alignment - (this.length % alignment)) % alignment;
    return this.bytes(new Uint8Array(pad));
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}
