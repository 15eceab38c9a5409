/**
 * Versioned model names: a NAME ending in `-v` takes the version after the highest one the server
 * holds (`iceburg-dolphin-mistral-v1`, `-v2`, …). A deleted version in between is not reused, so the
 * highest number is always the newest export.
 */

const PART = '[A-Za-z0-9][A-Za-z0-9._-]{0,79}';
const MODEL_NAME = new RegExp(`^(?:${PART}(?::[0-9]+)?/)?(?:${PART}/)?${PART}(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,79})?$`);

/**
 * Throws unless Ollama would take the name ([host/][namespace/]model[:tag], as model.ParseName
 * reads it), so that a bad name fails before a long upload rather than after.
 */
export function checkOllamaModelName(name: string): void {
  if (!MODEL_NAME.test(name)) {
    throw new Error(`"${name}" is not an Ollama model name: [host/][namespace/]model[:tag], each part letters, digits, '.', '_' or '-'`);
  }
}

/** True for a name that asks for the next version (`…-v`, no tag). */
export function isVersionedName(name: string): boolean {
  return /-v$/i.test(name) && !name.includes(':');
}

/** A name as Ollama lists it, without tag and default registry/namespace, lower case (names are case-insensitive). */
export function baseModelName(listed: string): string {
  let n = listed.trim().toLowerCase();
  const slash = n.lastIndexOf('/');
  const colon = n.lastIndexOf(':');
  if (colon > slash) n = n.slice(0, colon);
  n = n.replace(/^registry\.ollama\.ai\//, '').replace(/^library\//, '');
  return n;
}

/** The next versioned name after the versions of `prefix` found among the listed model names. */
export function nextVersionedName(prefix: string, listed: readonly string[]): { name: string; version: number } {
  const want = baseModelName(prefix);
  let highest = 0;
  for (const entry of listed) {
    const base = baseModelName(entry);
    if (!base.startsWith(want)) continue;
    const rest = base.slice(want.length);
    if (/^[1-9][0-9]*$/.test(rest)) highest = Math.max(highest, Number(rest));
  }
  return { name: `${prefix}${highest + 1}`, version: highest + 1 };
}
