/** libpq's `sslmode` values and what each one requires of a backend connection, as libpq reads them. */

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export const SSL_MODES: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

/** libpq's default sslmode. */
export const DEFAULT_SSLMODE: SslMode = 'prefer';

export function isSslMode(value: string): value is SslMode {
  return (SSL_MODES as readonly string[]).includes(value);
}

/** Whether the connection must be TLS (no plaintext fallback). */
export function sslmodeRequiresTls(mode: SslMode): boolean {
  return mode === 'require' || mode === 'verify-ca' || mode === 'verify-full';
}

/**
 * Whether the server's certificate chain must verify against a trusted root.
 *
 * verify-ca and verify-full always verify. For the other modes libpq verifies the chain whenever a
 * root certificate is available: it sets SSL_VERIFY_PEER as soon as it loaded one, whatever the
 * sslmode. The documented consequence is that `require` with a root certificate behaves like
 * `verify-ca` ("for backwards compatibility with earlier versions of PostgreSQL"); pgward applies
 * that rule when `sslrootcert` is given explicitly (there is no implicit ~/.postgresql/root.crt).
 * The same holds for `prefer`/`allow` once TLS is in use — libpq would then retry without TLS
 * after a verification failure; pgward's dialer fails closed instead.
 */
export function sslmodeVerifiesChain(mode: SslMode, sslrootcert?: string): boolean {
  if (mode === 'verify-ca' || mode === 'verify-full') return true;
  if (mode === 'disable') return false;
  return sslrootcert !== undefined && sslrootcert !== '';
}

/** Whether the server's certificate must also match the host name (verify-full only, as in libpq). */
export function sslmodeVerifiesHost(mode: SslMode): boolean {
  return mode === 'verify-full';
}
