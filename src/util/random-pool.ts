import { randomFillSync } from 'node:crypto';

/**
 * Random bytes for the login path (session ids, cancel secrets), taken from a block filled by
 * the CSPRNG a few kilobytes at a time: `randomBytes` for 4 or 6 bytes costs a call into OpenSSL
 * and a buffer each, for every new connection. Every byte is handed out once, and always as a
 * copy, so refilling the block never changes a value already given.
 */
const BLOCK_BYTES = 4096;
const block = Buffer.alloc(BLOCK_BYTES);
let used = BLOCK_BYTES;

function take(n: number): number {
  if (n > BLOCK_BYTES) throw new RangeError(`at most ${BLOCK_BYTES} random bytes at a time`);
  if (used + n > BLOCK_BYTES) {
    randomFillSync(block);
    used = 0;
  }
  const at = used;
  used += n;
  return at;
}

/** `n` fresh random bytes (a buffer of their own). */
export function pooledRandomBytes(n: number): Buffer {
  const at = take(n);
  return Buffer.from(block.subarray(at, at + n));
}

/** `n` fresh random bytes as 2n hex digits. */
export function pooledRandomHex(n: number): string {
  const at = take(n);
  return block.toString('hex', at, at + n);
}
