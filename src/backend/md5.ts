/**
 * PostgreSQL `md5` password authentication (AuthenticationMD5Password):
 *
 *   "md5" + md5hex(md5hex(password + user) + salt)
 *
 * The inner value `md5hex(password + user)` is exactly what PostgreSQL stores as the role's
 * password (`md5` + 32 hex digits), so a stored hash answers the challenge as well as the password
 * does ("pass-the-hash", SPEC §3). Consequence: a real password that itself has the form
 * `md5` + 32 lowercase hex digits is always taken as a hash.
 */
import { createHash } from 'node:crypto';

/** A PostgreSQL md5 password hash as stored in pg_authid. */
export const MD5_HASH = /^md5[0-9a-f]{32}$/;

/**
 * The PasswordMessage payload for an md5 challenge: `secret` is the password or a stored
 * `md5…` hash of it for `user`; `salt` is the 4 bytes from AuthenticationMD5Password.
 * Strings are hashed as UTF-8, as libpq sends them.
 */
export function md5Response(user: string, secret: string, salt: Buffer): string {
  if (salt.length !== 4) throw new Error(`md5 authentication needs a 4-byte salt, got ${salt.length} bytes`);
  const inner = MD5_HASH.test(secret) ? secret.slice(3) : md5hex(Buffer.from(secret + user, 'utf8'));
  return `md5${md5hex(Buffer.concat([Buffer.from(inner, 'ascii'), salt]))}`;
}

function md5hex(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}
