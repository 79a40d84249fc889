/** SCRAM-SHA-256 for the tests: RFC 7677's vector and a small server written from RFC 5802 §3, independent of src/. */
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

// RFC 7677 §3 test vector.
export const RFC = {
  password: 'pencil',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

export const PASSWORD = 'correct horse battery staple';

/** A minimal, independent SCRAM-SHA-256 server, written from RFC 5802 §3 for these tests. */
export class TestServer {
  readonly salt = randomBytes(16);
  readonly iterations = 4096;
  private readonly storedKey: Buffer;
  private readonly serverKey: Buffer;
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';
  gs2 = '';

  constructor(password: string, private readonly cbData: Buffer = Buffer.alloc(0)) {
    const salted = pbkdf2Sync(password, this.salt, this.iterations, 32, 'sha256');
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    this.storedKey = createHash('sha256').update(clientKey).digest();
    this.serverKey = createHmac('sha256', salted).update('Server Key').digest();
  }

  first(clientFirst: string): string {
    const m = /^((?:p=tls-server-end-point|y|n),,)(n=[^,]*,r=([^,]+))$/.exec(clientFirst);
    assert.ok(m, `bad client-first ${clientFirst}`);
    this.gs2 = m[1]!;
    this.clientFirstBare = m[2]!;
    this.nonce = m[3]! + randomBytes(12).toString('base64');
    this.serverFirst = `r=${this.nonce},s=${this.salt.toString('base64')},i=${this.iterations}`;
    return this.serverFirst;
  }

  final(clientFinal: string): string {
    const m = /^(c=([^,]*),r=([^,]*)),p=([^,]*)$/.exec(clientFinal);
    assert.ok(m, 'bad client-final');
    const expectedC = Buffer.concat([Buffer.from(this.gs2), this.gs2.startsWith('p=') ? this.cbData : Buffer.alloc(0)]).toString('base64');
    if (m[2] !== expectedC || m[3] !== this.nonce) return 'e=channel-bindings-dont-match';
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${m[1]}`;
    const clientSignature = createHmac('sha256', this.storedKey).update(authMessage).digest();
    const proof = Buffer.from(m[4]!, 'base64');
    const clientKey = Buffer.from(proof.map((b, i) => b ^ clientSignature[i]!));
    if (!createHash('sha256').update(clientKey).digest().equals(this.storedKey)) return 'e=invalid-proof';
    return `v=${createHmac('sha256', this.serverKey).update(authMessage).digest('base64')}`;
  }
}
