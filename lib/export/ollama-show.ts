/**
 * The `parameters` text of Ollama's /api/show: one `name value` line per value, the name padded to
 * 30 columns and the value in Go syntax (`fmt.Sprintf("%-*s %#v", 30, k, v)` in server/routes.go),
 * so strings are Go-quoted.
 */

/** name → values (strings unquoted, numbers and booleans as printed). */
export function parseShowParameters(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, key, raw] = m as unknown as [string, string, string];
    const value = raw.startsWith('"') ? goUnquote(raw) : raw;
    out.set(key, [...(out.get(key) ?? []), value]);
  }
  return out;
}

const SIMPLE_ESCAPES: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', '"': '"', "'": "'" };

/** The string a Go double-quoted literal (strconv.Quote output) stands for. */
export function goUnquote(quoted: string): string {
  if (quoted.length < 2 || !quoted.startsWith('"') || !quoted.endsWith('"')) throw new Error(`not a Go string literal: ${quoted}`);
  const body = quoted.slice(1, -1);
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = body[++i];
    if (e === undefined) throw new Error(`Go string literal ends in a backslash: ${quoted}`);
    const simple = SIMPLE_ESCAPES[e];
    if (simple !== undefined) {
      out += simple;
      continue;
    }
    const width = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : /[0-7]/.test(e) ? 3 : 0;
    if (width === 0) throw new Error(`unknown escape \\${e} in Go string literal ${quoted}`);
    const digits = /[0-7]/.test(e) ? body.slice(i, i + 3) : body.slice(i + 1, i + 1 + width);
    out += String.fromCodePoint(parseInt(digits, /[0-7]/.test(e) ? 8 : 16));
    i += /[0-7]/.test(e) ? 2 : width;
  }
  return out;
}
