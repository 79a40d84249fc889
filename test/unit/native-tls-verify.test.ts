import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { NativeTlsContext } from '../../src/transport/native-tls.js';
import { TestCA, type CertPaths } from '../helpers/certs.js';
import { issueExpired, nativeClient } from '../helpers/tls-peers.js';

const execFileAsync = promisify(execFile);

/**
 * The native TLS layer's client side against Node TLS servers: the sslmode rules as libpq
 * applies them (no verification, the chain, the host name or IP address), SNI, client
 * certificates, and a certificate that has expired.
 */
describe('native TLS endpoints (client side): verification as libpq does it', () => {
  let ca: TestCA;
  let otherCa: TestCA;
  let roots: Buffer;

  before(async () => {
    ca = await TestCA.create();
    otherCa = await TestCA.create(undefined, 'unrelated CA');
    roots = readFileSync(ca.cert);
  });

  after(async () => {
    await ca?.[Symbol.asyncDispose]();
    await otherCa?.[Symbol.asyncDispose]();
  });

  /** A Node TLS server with `cert` for one connection; what it saw of the client. */
  async function serve(cert: CertPaths, opts: tls.TlsOptions = {}) {
    let servername: string | false | undefined;
    let clientCn: string | undefined;
    const server = tls.createServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key), ...opts }, (s) => {
      servername = (s as tls.TLSSocket & { servername?: string | false }).servername;
      clientCn = String(s.getPeerCertificate()?.subject?.CN ?? '');
      s.on('error', () => {});
      s.end();
    });
    server.on('tlsClientError', () => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      port: (server.address() as net.AddressInfo).port,
      seen: () => ({ servername, clientCn }),
      close: () => new Promise((r) => server.close(r)),
    };
  }

  /** Connects a native client to a server presenting `cert`; resolves with the handshake's outcome. */
  async function handshake(cert: CertPaths, context: NativeTlsContext, opts: { servername?: string; verifyHost?: string } = {}, serverOpts: tls.TlsOptions = {}) {
    const server = await serve(cert, serverOpts);
    try {
      const client = await nativeClient(server.port, context, opts);
      const outcome = await client.handshake().then(() => 'ok', (err: Error) => err.message);
      client.destroy();
      await new Promise((r) => setTimeout(r, 20));
      return { outcome, ...server.seen() };
    } finally {
      await server.close();
    }
  }

  const verifyFull = () => NativeTlsContext.client({ roots });

  it('require: no verification at all, even of a certificate from a CA nobody trusts', async () => {
    const cert = await otherCa.issue('stranger', { cn: 'stranger' });
    assert.equal((await handshake(cert, NativeTlsContext.client({}))).outcome, 'ok');
  });

  it('verify-ca: the chain must lead to sslrootcert; the name does not matter', async () => {
    const ours = await ca.issue('named-other', { cn: 'elsewhere', sans: ['DNS:elsewhere.test'] });
    assert.equal((await handshake(ours, verifyFull())).outcome, 'ok');
    const theirs = await otherCa.issue('theirs', { cn: 'localhost' });
    assert.equal((await handshake(theirs, verifyFull())).outcome, 'certificate verify failed: unable to get local issuer certificate');
  });

  it('refuses a certificate that has expired', async () => {
    const expired = await issueExpired(ca, 'expired');
    assert.equal((await handshake(expired, verifyFull(), { verifyHost: 'localhost' })).outcome, 'certificate verify failed: certificate has expired');
  });

  // [what the certificate names, the host, libpq's verdict]
  const names: Array<[string, { cn: string; sans: string[] }, string, 'ok' | string]> = [
    ['a dNSName', { cn: 'x', sans: ['DNS:db.example.test'] }, 'db.example.test', 'ok'],
    ['a dNSName, in another case', { cn: 'x', sans: ['DNS:DB.Example.Test'] }, 'db.example.test', 'ok'],
    ['a wildcard for one label', { cn: 'x', sans: ['DNS:*.example.test'] }, 'db.example.test', 'ok'],
    ['a wildcard, not for two labels', { cn: 'x', sans: ['DNS:*.example.test'] }, 'a.db.example.test', 'server certificate for "*.example.test" does not match host name "a.db.example.test"'],
    ['a wildcard, not for the bare domain', { cn: 'x', sans: ['DNS:*.example.test'] }, 'example.test', 'server certificate for "*.example.test" does not match host name "example.test"'],
    ['the CN when there is no dNSName', { cn: 'db.example.test', sans: [] }, 'db.example.test', 'ok'],
    ['not the CN when there is a dNSName', { cn: 'db.example.test', sans: ['DNS:other.test'] }, 'db.example.test', 'server certificate for "other.test" does not match host name "db.example.test"'],
    ['an iPAddress for an IP host', { cn: 'x', sans: ['IP:127.0.0.1'] }, '127.0.0.1', 'ok'],
    ['an IPv6 iPAddress', { cn: 'x', sans: ['IP:::1'] }, '::1', 'ok'],
    // The CN counts too: with no iPAddress it was checked (and did not match either).
    ['not a dNSName for an IP host it does not spell', { cn: 'x', sans: ['DNS:localhost', 'DNS:db.test'] }, '127.0.0.1', 'server certificate for "localhost" (and 2 other names) does not match host name "127.0.0.1"'],
    ['a dNSName that spells the IP host', { cn: 'x', sans: ['DNS:127.0.0.1'] }, '127.0.0.1', 'ok'],
    ['the CN for an IP host without an iPAddress', { cn: '127.0.0.1', sans: ['DNS:db.test'] }, '127.0.0.1', 'ok'],
    ['not the CN for an IP host with another iPAddress', { cn: '127.0.0.1', sans: ['IP:10.0.0.1'] }, '127.0.0.1', 'server certificate for "10.0.0.1" does not match host name "127.0.0.1"'],
  ];
  for (const [what, subject, host, verdict] of names) {
    it(`verify-full: ${what} (${host}: ${verdict === 'ok' ? 'accepted' : 'refused'})`, async () => {
      const cert = await ca.issue(`n${names.findIndex((n) => n[0] === what)}`, subject);
      assert.equal((await handshake(cert, verifyFull(), { verifyHost: host })).outcome, verdict);
    });
  }

  it('sends SNI for a host name and none for an IP address', async () => {
    const cert = await ca.issue('sni', { cn: 'localhost' });
    assert.equal((await handshake(cert, verifyFull(), { servername: 'localhost', verifyHost: 'localhost' })).servername, 'localhost');
    assert.equal((await handshake(cert, verifyFull(), { verifyHost: '127.0.0.1' })).servername, false);
  });

  it('presents a client certificate (sslcert/sslkey), also from an encrypted key with its sslpassword', async () => {
    const server = await ca.issue('client-auth-server', { cn: 'localhost' });
    const user = await ca.issue('certuser', { cn: 'certuser', client: true });
    const asks = { requestCert: true, rejectUnauthorized: true, ca: roots };
    const plain = NativeTlsContext.client({ roots, chain: readFileSync(user.cert), key: readFileSync(user.key) });
    const seen = await handshake(server, plain, { verifyHost: 'localhost' }, asks);
    assert.deepEqual([seen.outcome, seen.clientCn], ['ok', 'certuser']);

    const encryptedKey = join(ca.dir, 'certuser-encrypted.key');
    await execFileAsync('openssl', ['pkcs8', '-topk8', '-v2', 'aes-256-cbc', '-in', user.key, '-out', encryptedKey, '-passout', 'pass:s3cret']);
    const encrypted = NativeTlsContext.client({ roots, chain: readFileSync(user.cert), key: readFileSync(encryptedKey), passphrase: 's3cret' });
    assert.equal((await handshake(server, encrypted, { verifyHost: 'localhost' }, asks)).clientCn, 'certuser');
    assert.throws(() => NativeTlsContext.client({ roots, chain: readFileSync(user.cert), key: readFileSync(encryptedKey) }), /cannot read the private key/);
    assert.throws(() => NativeTlsContext.client({ roots, chain: readFileSync(user.cert), key: readFileSync(encryptedKey), passphrase: 'wrong' }), /cannot read the private key/);
  });

  it('refuses contexts it cannot build, saying why', () => {
    const cert = readFileSync(ca.cert);
    assert.throws(() => NativeTlsContext.server(Buffer.from('not PEM'), cert), /cannot use the certificate/);
    assert.throws(() => NativeTlsContext.server(cert, Buffer.from('not PEM')), /cannot read the private key/);
    assert.throws(() => NativeTlsContext.client({ roots: Buffer.from('no roots here') }), /root certificates/);
  });
});
