import {
  be,
  definePlugin,
  PgError,
  SqlState,
  type AuthProvider,
  type AuthResult,
  type AuthServices,
  type BackendMessage,
  type ClientChannel,
  type FieldDescription,
  type FrontendMessage,
} from '../../src/index.js';
import { isEmptyQuery, parseLoginStatement, type LoginStatement } from './statement.js';

/**
 * Statement login: the client connects with any (or no) password, the proxy completes the
 * handshake itself and answers alone until `SELECT proxy_login('<jwt>')` arrives (simple or
 * extended protocol, also with the token as a bind parameter); then the token is verified like the
 * jwt provider's, the mapped backend is connected, and the session is relayed from there.
 */

const TEXT_OID = 25;
const COLUMN: FieldDescription = { name: 'proxy_login', tableOid: 0, columnAttr: 0, typeOid: TEXT_OID, typeSize: -1, typeModifier: -1, format: 0 };

/** What the client sees before login; the backend's real values replace those that differ. */
const PRE_LOGIN_PARAMETERS: [string, string][] = [
  ['server_version', '15.0'],
  ['server_encoding', 'UTF8'],
  ['client_encoding', 'UTF8'],
  ['DateStyle', 'ISO, MDY'],
  ['integer_datetimes', 'on'],
  ['standard_conforming_strings', 'on'],
  ['TimeZone', 'UTC'],
  ['IntervalStyle', 'postgres'],
];

interface Options {
  /** How long a connected client may take to log in (ms). */
  loginTimeoutMs: number;
  /** Failed proxy_login attempts allowed on one connection before it is closed. */
  maxAttempts: number;
}

function parseOptions(raw: Readonly<Record<string, unknown>>): Options {
  const unknown = Object.keys(raw).filter((k) => k !== 'loginTimeout' && k !== 'maxAttempts');
  if (unknown.length > 0) throw new Error(`proxy-login: unknown auth option(s) ${unknown.join(', ')}`);
  const seconds = raw.loginTimeout === undefined ? 300 : Number(raw.loginTimeout);
  const attempts = raw.maxAttempts === undefined ? 3 : Number(raw.maxAttempts);
  if (!(seconds > 0)) throw new Error('proxy-login: loginTimeout must be a positive number of seconds');
  if (!Number.isInteger(attempts) || attempts < 1) throw new Error('proxy-login: maxAttempts must be a whole number ≥ 1');
  return { loginTimeoutMs: seconds * 1000, maxAttempts: attempts };
}

function error(sqlstate: string, message: string, hint?: string): BackendMessage {
  return be.errorResponse(new PgError('ERROR', sqlstate, message, { hint }).toFields());
}

const NOT_LOGGED_IN = () =>
  error(SqlState.InvalidAuthorizationSpecification, 'not logged in', "Run SELECT proxy_login('<token>') first.");

function provider(services: AuthServices, options: Options): AuthProvider {
  return {
    name: 'proxy-login',
    async authenticate(channel: ClientChannel): Promise<AuthResult> {
      const key = channel.reserveCancelKey();
      const sent = new Map<string, string>(PRE_LOGIN_PARAMETERS);
      const app = channel.startup.get('application_name');
      if (app !== undefined) sent.set('application_name', app);
      channel.send(be.authOk(), ...[...sent].map(([k, v]) => be.parameterStatus(k, v)), be.backendKeyData(key.processId, key.secretKey), be.readyForQuery('I'));
      channel.handshakeComplete();

      const deadline = Date.now() + options.loginTimeoutMs;
      const next = () => readBefore(channel, deadline);
      let failures = 0;
      const statements = new Map<string, LoginStatement | null>();
      const portals = new Map<string, string | null>();
      let skipUntilSync = false;

      /** Tries a token; on success returns the result, else tells the client (ERROR) and counts. */
      const attempt = async (
        token: string,
        completion: (row: BackendMessage) => BackendMessage[],
      ): Promise<AuthResult | undefined> => {
        try {
          const result = await services.resolveToken(token, channel, { matchStartupUser: false });
          channel.log.info('proxy_login succeeded', { identity: result.identity });
          const row = be.dataRow([Buffer.from(result.identity)]);
          return { ...result, clientHandshake: { sentParameters: sent, completion: completion(row) } };
        } catch (err) {
          if (!(err instanceof PgError)) throw err;
          failures++;
          channel.log.info('proxy_login refused', { sqlstate: err.sqlstate, reason: err.message, attempt: failures });
          if (failures >= options.maxAttempts) {
            throw new PgError('FATAL', err.sqlstate, `${err.message}; too many failed login attempts`);
          }
          channel.send(be.errorResponse(new PgError('ERROR', err.sqlstate, err.message, { hint: err.hint }).toFields()));
          return undefined;
        }
      };

      for (;;) {
        const m: FrontendMessage = await next();
        if (m.type === 'Terminate') {
          throw new PgError('FATAL', SqlState.ConnectionFailure, 'client left before logging in');
        }
        if (m.type === 'Sync') {
          skipUntilSync = false;
          channel.send(be.readyForQuery('I'));
          continue;
        }
        if (skipUntilSync || m.type === 'Flush') continue;
        switch (m.type) {
          case 'Query': {
            const { sql } = m.body();
            const login = parseLoginStatement(sql);
            if (login?.kind === 'literal') {
              const done = await attempt(login.token, (row) => [
                be.rowDescription([COLUMN]),
                row,
                be.commandComplete('SELECT 1'),
                be.readyForQuery('I'),
              ]);
              if (done) return done;
            } else if (isEmptyQuery(sql)) channel.send(be.emptyQueryResponse());
            else channel.send(NOT_LOGGED_IN());
            channel.send(be.readyForQuery('I'));
            break;
          }
          case 'Parse': {
            const { name, sql } = m.body();
            const login = parseLoginStatement(sql);
            if (!login) {
              channel.send(NOT_LOGGED_IN());
              skipUntilSync = true;
            } else {
              statements.set(name, login);
              channel.send(be.parseComplete());
            }
            break;
          }
          case 'Bind': {
            const { portal, statement, params } = m.body();
            const login = statements.get(statement);
            if (!login) {
              channel.send(NOT_LOGGED_IN());
              skipUntilSync = true;
              break;
            }
            const token = login.kind === 'literal' ? login.token : params[login.index]?.toString('utf8');
            portals.set(portal, token ?? null);
            channel.send(be.bindComplete());
            break;
          }
          case 'Describe': {
            const { kind, name } = m.body();
            const login = kind === 'S' ? statements.get(name) : undefined;
            if (kind === 'S' && login === undefined) {
              channel.send(NOT_LOGGED_IN());
              skipUntilSync = true;
              break;
            }
            if (kind === 'S') channel.send(be.parameterDescription(login?.kind === 'param' ? [TEXT_OID] : []));
            channel.send(be.rowDescription([COLUMN]));
            break;
          }
          case 'Execute': {
            const token = portals.get(m.body().portal);
            if (!token) {
              channel.send(token === null ? error(SqlState.InvalidPassword, 'proxy_login needs a token') : NOT_LOGGED_IN());
              skipUntilSync = true;
              break;
            }
            // The client's Sync goes on to the backend, whose ReadyForQuery ends this exchange.
            const done = await attempt(token, (row) => [row, be.commandComplete('SELECT 1')]);
            if (done) return done;
            skipUntilSync = true;
            break;
          }
          case 'Close':
            channel.send(be.closeComplete());
            break;
          default:
            channel.send(NOT_LOGGED_IN());
            skipUntilSync = true;
        }
      }
    },
  };
}

async function readBefore(channel: ClientChannel, deadline: number): Promise<FrontendMessage> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new PgError('FATAL', SqlState.InvalidAuthorizationSpecification, 'login timed out', { hint: "Run SELECT proxy_login('<token>') sooner after connecting." })),
      Math.max(0, deadline - Date.now()),
    );
  });
  try {
    return await Promise.race([channel.read(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export default definePlugin({
  name: 'proxy-login',
  version: '0.1.0',
  pgward: '>=0.1.0',
  pluginApi: 1,
  setup(api) {
    api.registerAuthProvider('proxy-login', (services, raw) => provider(services, parseOptions(raw)));
  },
});
