// SASL OAUTHBEARER (RFC 7628) on the client side of the proxy, as PostgreSQL 18's server speaks
// it to libpq 18: the bearer token is verified like a password token, and a client without one
// (discovery) or with a bad one is told where the issuer's discovery document is.
import { be, PgError, protocolViolation, SqlState, decodeSASLInitialResponse, type FrontendMessage } from '../protocol/index.js';
import type { TokenResolver } from './jwt-provider.js';
import type { AuthProvider, AuthResult, ClientChannel } from './provider.js';

export const OAUTHBEARER = 'OAUTHBEARER';
const KVSEP = 0x01;

export interface OAuthSettings {
  /** The issuer tokens must carry as `iss`; its discovery document is named to clients. */
  issuer: string;
  /** Scopes the client should ask the issuer for (space-separated). */
  scope: string;
}

/**
 * The OAUTHBEARER exchange ended without a login: a failed token or a discovery request, after
 * the error JSON and the client's 0x01. `discovery` logins are the first half of every OAuth
 * login without a cached token, not failures: they do not count toward throttling.
 */
export class OAuthRefusal extends PgError {
  constructor(
    user: string,
    readonly discovery: boolean,
    reason: string,
  ) {
    super('FATAL', SqlState.InvalidAuthorizationSpecification, `OAuth bearer authentication failed for user "${user}"`, {
      detail: reason,
    });
  }
}

/** The error JSON of RFC 7628 §3.2.2 as PostgreSQL 18 builds it. */
export function oauthErrorJson(settings: OAuthSettings): string {
  const configuration = settings.issuer.includes('/.well-known/')
    ? settings.issuer
    : `${settings.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  return JSON.stringify({ status: 'invalid_token', 'openid-configuration': configuration, scope: settings.scope });
}

const malformed = (detail: string) => protocolViolation('malformed OAUTHBEARER message', detail);

/** A byte as PostgreSQL names it in these errors: the character when printable, else hex. */
function shown(byte: number | undefined): string {
  if (byte === undefined) return 'end of message';
  return byte >= 0x21 && byte <= 0x7e ? `'${String.fromCharCode(byte)}'` : `0x${byte.toString(16).padStart(2, '0')}`;
}

/**
 * The `auth` value of a client initial response (`n,,\x01auth=Bearer …\x01\x01`), checked
 * against RFC 7628's grammar; `''` is a discovery request.
 */
export function parseInitialResponse(data: Buffer): string {
  if (data.length === 0) throw malformed('The message is empty.');
  if (data.includes(0)) throw malformed('Message length does not match input length.');
  let p = 0;
  const flag = data[p];
  if (flag === 0x70 /* p */) {
    throw malformed('The server does not support channel binding for OAuth, but the client message includes channel binding data.');
  }
  if (flag !== 0x6e /* n */ && flag !== 0x79 /* y */) throw malformed(`Unexpected channel-binding flag ${shown(flag)}.`);
  if (data[++p] !== 0x2c) throw malformed(`Comma expected, but found character ${shown(data[p])}.`);
  p++;
  if (data[p] === 0x61 /* a */) {
    throw new PgError('FATAL', SqlState.FeatureNotSupported, 'client uses authorization identity, but it is not supported');
  }
  if (data[p] !== 0x2c) throw malformed(`Unexpected attribute ${shown(data[p])} in client-first-message.`);
  if (data[++p] !== KVSEP) throw malformed(`Key-value separator expected, but found character ${shown(data[p])}.`);
  p++;
  let auth: string | undefined;
  for (;;) {
    const end = data.indexOf(KVSEP, p);
    if (end < 0) throw malformed(p >= data.length ? 'Message did not contain a final terminator.' : 'Message contains an unterminated key/value pair.');
    if (end === p) {
      if (end + 1 !== data.length) throw malformed('Message contains additional data after the final terminator.');
      if (auth === undefined) throw malformed('Message does not contain an auth value.');
      return auth;
    }
    const pair = data.toString('latin1', p, end);
    const eq = pair.indexOf('=');
    if (eq < 0) throw malformed('Message contains a key without a value.');
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (key === '') throw malformed('Message contains an empty key name.');
    if (!/^[A-Za-z]+$/.test(key)) throw malformed('Message contains an invalid key name.');
    if (!/^[\x21-\x7e \t\r\n]*$/.test(value)) throw malformed('Message contains an invalid value.');
    if (key === 'auth') {
      if (auth !== undefined) throw malformed('Message contains multiple auth values.');
      auth = value;
    }
    p = end + 1;
  }
}

/** The token of an `Authorization` value `Bearer <b64token>` (scheme case-insensitive), or undefined. */
export function bearerToken(auth: string): string | undefined {
  const m = /^bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(auth);
  return m?.[1];
}

async function readSasl(channel: ClientChannel): Promise<Buffer> {
  const m: FrontendMessage = await channel.read();
  if (m.type !== 'AuthResponse') throw protocolViolation(`expected SASL response, got message type ${m.code}`);
  return m.body().data;
}

/**
 * `oauth` clientAuth rules: offers `OAUTHBEARER`, verifies the bearer token with `resolve` (the
 * jwt provider's verification and routing, with the OAuth issuer required), and on failure or
 * discovery sends the error JSON, reads the client's 0x01 and refuses with FATAL 28000.
 */
export function oauthBearerProvider(settings: () => OAuthSettings, resolve: TokenResolver): AuthProvider {
  return {
    name: 'oauth',
    async authenticate(channel): Promise<AuthResult> {
      const user = channel.startup.get('user') ?? '';
      channel.send(be.authentication({ kind: 'SASL', mechanisms: [OAUTHBEARER] }));
      const { mechanism, response } = decodeSASLInitialResponse(await readSasl(channel));
      if (mechanism !== OAUTHBEARER) throw protocolViolation('client selected an invalid SASL authentication mechanism');
      let initial = response;
      if (initial === null) {
        // No initial response: an empty challenge asks for it (RFC 4422 §5).
        channel.send(be.authentication({ kind: 'SASLContinue', data: Buffer.alloc(0) }));
        initial = await readSasl(channel);
      }
      const auth = parseInitialResponse(initial);
      const token = auth === '' ? undefined : bearerToken(auth);
      let refusal: OAuthRefusal;
      if (token === undefined) {
        refusal = new OAuthRefusal(user, auth === '', auth === '' ? 'The client asked where to get a token (discovery).' : 'malformed bearer token');
      } else {
        try {
          return await resolve(token, channel);
        } catch (err) {
          // Refusals of the token or of where it leads get the error JSON; the proxy's own failures do not.
          if (!(err instanceof PgError) || !err.sqlstate.startsWith('28')) throw err;
          refusal = new OAuthRefusal(user, false, err.message);
        }
      }
      channel.send(be.authentication({ kind: 'SASLContinue', data: Buffer.from(oauthErrorJson(settings())) }));
      const reply = await readSasl(channel);
      if (reply.length !== 1 || reply[0] !== KVSEP) throw malformed('Client did not send a kvsep response.');
      throw refusal;
    },
  };
}
