/** What the key-source modules share: the smallest RSA key accepted, and a JSON-object test. */

export const MIN_RSA_BITS = 2048;

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
