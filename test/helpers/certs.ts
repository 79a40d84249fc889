import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Paths of a PEM certificate and its unencrypted PEM private key. */
export interface CertPaths {
  cert: string;
  key: string;
}

export interface IssueOptions {
  /** Subject common name; defaults to the file name given to `issue`. */
  cn?: string;
  /**
   * subjectAltName entries in OpenSSL syntax, e.g. `['DNS:localhost', 'IP:127.0.0.1']`.
   * Defaults to exactly that pair for server certificates and to none for client certificates.
   */
  sans?: string[];
  /** A client certificate (extendedKeyUsage clientAuth) instead of a server one (serverAuth). */
  client?: boolean;
  /** Validity in days (default 7). */
  days?: number;
}

// A private config so the result never depends on the machine's openssl.cnf (whose [v3_ca] and
// default sections differ between distributions and would clash with our own extensions).
const REQ_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
`;

/** ECDSA P-256: key generation takes milliseconds where RSA 2048 takes a noticeable fraction of a second. */
const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/**
 * A throw-away certificate authority made with the `openssl` CLI. Everything lives in `dir`; keys
 * are written mode 0600 and owned by the caller — a server that insists on owning its key file
 * (PostgreSQL) gets a copy (see PgCluster's `ssl` option).
 */
export class TestCA implements AsyncDisposable {
  /** PEM text of the CA certificate, for `ssl: { ca }` options. */
  readonly caPem: string;

  private constructor(
    readonly dir: string,
    /** Path of the CA certificate (PEM). */
    readonly cert: string,
    /** Path of the CA private key (PEM). */
    readonly key: string,
    caPem: string,
    private readonly ownsDir: boolean,
  ) {
    this.caPem = caPem;
  }

  /** Creates a CA in `dir`, or in a fresh temp dir (removed by dispose) when `dir` is omitted. */
  static async create(dir?: string, commonName = 'pgward test CA'): Promise<TestCA> {
    const ownsDir = dir === undefined;
    const where = dir ?? (await mkdtemp(join(tmpdir(), 'pgward-ca-')));
    try {
      const config = join(where, 'openssl.cnf');
      await writeFile(config, REQ_CONFIG);
      const cert = join(where, 'ca.crt');
      const key = join(where, 'ca.key');
      await openssl(['req', '-config', config, '-x509', ...NEW_KEY, '-keyout', key, '-out', cert,
        '-days', '30', '-subj', subject(commonName), '-extensions', 'v3_ca']);
      await chmod(key, 0o600);
      return new TestCA(where, cert, key, await readFile(cert, 'utf8'), ownsDir);
    } catch (err) {
      if (ownsDir) await rm(where, { recursive: true, force: true });
      throw err;
    }
  }

  /** Issues a leaf certificate signed by this CA into `<dir>/<name>.crt` and `<dir>/<name>.key`. */
  async issue(name: string, opts: IssueOptions = {}): Promise<CertPaths> {
    if (!/^[\w.-]+$/.test(name)) throw new Error(`TestCA.issue: unsafe file name ${JSON.stringify(name)}`);
    const client = opts.client ?? false;
    const sans = opts.sans ?? (client ? [] : ['DNS:localhost', 'IP:127.0.0.1']);
    const cert = join(this.dir, `${name}.crt`);
    const key = join(this.dir, `${name}.key`);
    const csr = join(this.dir, `${name}.csr`);
    const ext = join(this.dir, `${name}.ext`);
    await writeFile(ext, leafExtensions(sans, client));
    await openssl(['req', '-config', join(this.dir, 'openssl.cnf'), '-new', ...NEW_KEY, '-keyout', key,
      '-out', csr, '-subj', subject(opts.cn ?? name)]);
    await chmod(key, 0o600);
    // A random serial instead of -CAcreateserial: concurrent issues would race on the serial file.
    await openssl(['x509', '-req', '-in', csr, '-CA', this.cert, '-CAkey', this.key,
      '-set_serial', `0x${randomBytes(12).toString('hex')}`, '-days', String(opts.days ?? 7),
      '-extfile', ext, '-extensions', 'leaf', '-out', cert]);
    await Promise.all([rm(csr, { force: true }), rm(ext, { force: true })]);
    return { cert, key };
  }

  /** Removes the directory when this CA created it; a caller-supplied directory is left alone. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.ownsDir) await rm(this.dir, { recursive: true, force: true });
  }
}

/** Same as `TestCA.create(dir)`. */
export function makeCA(dir?: string): Promise<TestCA> {
  return TestCA.create(dir);
}

function leafExtensions(sans: readonly string[], client: boolean): string {
  const lines = [
    '[leaf]',
    'basicConstraints = critical, CA:FALSE',
    // ECDSA keys only sign (ECDHE does the key exchange), so keyEncipherment would be wrong here.
    'keyUsage = critical, digitalSignature',
    `extendedKeyUsage = ${client ? 'clientAuth' : 'serverAuth'}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
  ];
  if (sans.length > 0) lines.push(`subjectAltName = ${sans.join(', ')}`);
  return lines.join('\n') + '\n';
}

/** `-subj` syntax: `/CN=value`, where `/` and `\` inside the value must be escaped. */
function subject(commonName: string): string {
  return `/CN=${commonName.replace(/[\\/]/g, (c) => `\\${c}`)}`;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await execFileAsync('openssl', args, { timeout: 30_000 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${(err as Error).message}\n${stderr}`, { cause: err });
  }
}
