/**
 * GPT-2's reversible byte↔unicode table used by byte-level BPE (Llama 3): each byte is shown as a
 * printable character so merges can be stored as text.
 */
let unicodeToByte: Map<string, number> | undefined;

export function byteLevelDecoder(): Map<string, number> {
  if (unicodeToByte) return unicodeToByte;
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = bytes.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  }
  unicodeToByte = new Map(bytes.map((b, i) => [String.fromCodePoint(chars[i]!), b]));
  return unicodeToByte;
}
