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
    authenticate: (channel: ClientChannel): Promise<AuthResult> => new PreLogin(channel, services, options).run(),
  };
}

/** One client between its handshake and a successful `proxy_login`: the proxy answers alone. */
class PreLogin {
  /** The ParameterStatus values the client was told. */
  private readonly sent = new Map<string, string>(PRE_LOGIN_PARAMETERS);
  private failures = 0;
  private readonly statements = new Map<string, LoginStatement | null>();
  private readonly portals = new Map<string, string | null>();
  /** After an error in an extended-protocol batch, as PostgreSQL: everything up to Sync is ignored. */
  private skipUntilSync = false;

  constructor(
    private readonly channel: ClientChannel,
    private readonly services: AuthServices,
    private readonly options: Options,
  ) {}

  async run(): Promise<AuthResult> {
    const { channel } = this;
    const key = channel.reserveCancelKey();
    const app = channel.startup.get('application_name');
    if (app !== undefined) this.sent.set('application_name', app);
    channel.send(be.authOk(), ...[...this.sent].map(([k, v]) => be.parameterStatus(k, v)), be.backendKeyData(key.processId, key.secretKey), be.readyForQuery('I'));
    channel.handshakeComplete();
    const deadline = Date.now() + this.options.loginTimeoutMs;
    for (;;) {
      const m: FrontendMessage = await readBefore(channel, deadline);
      if (m.type === 'Terminate') throw new PgError('FATAL', SqlState.ConnectionFailure, 'client left before logging in');
      if (m.type === 'Sync') {
        this.skipUntilSync = false;
        channel.send(be.readyForQuery('I'));
        continue;
      }
      if (this.skipUntilSync || m.type === 'Flush') continue;
      const done = await this.take(m);
      if (done) return done;
    }
  }

  /** One message before login; the result once a token was accepted. */
  private async take(m: FrontendMessage): Promise<AuthResult | undefined> {
    switch (m.type) {
      case 'Query':
        return this.query(m.body().sql);
      case 'Parse': {
        const { name, sql } = m.body();
        const login = parseLoginStatement(sql);
        if (!login) return this.refuse();
        this.statements.set(name, login);
        this.channel.send(be.parseComplete());
        return undefined;
      }
      case 'Bind': {
        const { portal, statement, params } = m.body();
        const login = this.statements.get(statement);
        if (!login) return this.refuse();
        const token = login.kind === 'literal' ? login.token : params[login.index]?.toString('utf8');
        this.portals.set(portal, token ?? null);
        this.channel.send(be.bindComplete());
        return undefined;
      }
      case 'Describe': {
        const { kind, name } = m.body();
        const login = kind === 'S' ? this.statements.get(name) : undefined;
        if (kind === 'S' && login === undefined) return this.refuse();
        if (kind === 'S') this.channel.send(be.parameterDescription(login?.kind === 'param' ? [TEXT_OID] : []));
        this.channel.send(be.rowDescription([COLUMN]));
        return undefined;
      }
      case 'Execute':
        return this.execute(m.body().portal);
      case 'Close':
        this.channel.send(be.closeComplete());
        return undefined;
      default:
        return this.refuse();
    }
  }

  private async query(sql: string): Promise<AuthResult | undefined> {
    const login = parseLoginStatement(sql);
    if (login?.kind === 'literal') {
      const done = await this.attempt(login.token, (row) => [be.rowDescription([COLUMN]), row, be.commandComplete('SELECT 1'), be.readyForQuery('I')]);
      if (done) return done;
    } else if (isEmptyQuery(sql)) this.channel.send(be.emptyQueryResponse());
    else this.channel.send(NOT_LOGGED_IN());
    this.channel.send(be.readyForQuery('I'));
    return undefined;
  }

  private async execute(portal: string): Promise<AuthResult | undefined> {
    const token = this.portals.get(portal);
    if (!token) {
      this.channel.send(token === null ? error(SqlState.InvalidPassword, 'proxy_login needs a token') : NOT_LOGGED_IN());
      this.skipUntilSync = true;
      return undefined;
    }
    // The client's Sync goes on to the backend, whose ReadyForQuery ends this exchange.
    const done = await this.attempt(token, (row) => [row, be.commandComplete('SELECT 1')]);
    if (!done) this.skipUntilSync = true;
    return done;
  }

  /** "not logged in", and the rest of the batch ignored. */
  private refuse(): undefined {
    this.channel.send(NOT_LOGGED_IN());
    this.skipUntilSync = true;
    return undefined;
  }

  /** Tries a token; on success returns the result, else tells the client (ERROR) and counts. */
  private async attempt(token: string, completion: (row: BackendMessage) => BackendMessage[]): Promise<AuthResult | undefined> {
    const { channel } = this;
    try {
      const result = await this.services.resolveToken(token, channel, { matchStartupUser: false });
      channel.log.info('proxy_login succeeded', { identity: result.identity });
      const row = be.dataRow([Buffer.from(result.identity)]);
      return { ...result, clientHandshake: { sentParameters: this.sent, completion: completion(row) } };
    } catch (err) {
      if (!(err instanceof PgError)) throw err;
      this.failures++;
      channel.log.info('proxy_login refused', { sqlstate: err.sqlstate, reason: err.message, attempt: this.failures });
      if (this.failures >= this.options.maxAttempts) {
        throw new PgError('FATAL', err.sqlstate, `${err.message}; too many failed login attempts`);
      }
      channel.send(be.errorResponse(new PgError('ERROR', err.sqlstate, err.message, { hint: err.hint }).toFields()));
      return undefined;
    }
  }
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
