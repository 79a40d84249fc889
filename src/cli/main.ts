import { ConfigError } from '../config/load.js';
import { buildProxyConfig } from '../config/proxy-config.js';
import { START_FLAGS, kebab } from '../config/flags.js';
import { pgwardVersion } from '../util/version.js';
import { runStart } from './start.js';
import { runKeygen } from './keygen.js';
import { runToken } from './token.js';
import { runCheck } from './check.js';
import { runDemo } from './demo.js';
import { configPathOf } from './config-path.js';

const version = pgwardVersion;

const USAGE = `pgward — PostgreSQL wire-protocol proxy with token authentication

Usage:
  pgward start [flags]     run the proxy
  pgward demo [flags]      try it: embedded PGlite + fresh key + proxy, prints a psql line (npm start)
  pgward keygen [flags]    write a key pair: private.pem, public.pem, jwks.json
  pgward token [flags]     mint a signed JWT: --key private.pem --sub SUBJECT
  pgward check [flags]     validate the configuration start would use, print it, exit 0 or 2
  pgward --help            this help;  pgward start --help  the flags
  pgward --version         print the version (also: pgward version)

Exit codes: 0 clean stop, 2 bad configuration or usage, 1 other fatal error.
`;

function startHelp(): string {
  const lines = START_FLAGS.map((f) => {
    const left = `  --${f.name}${f.arg ? ' ' + f.arg : ''}`;
    const def = f.default === undefined || f.default === '' ? '' : ` (default ${JSON.stringify(f.default)})`;
    return `${left.padEnd(34)} ${f.help}${def}`;
  });
  return `Usage: pgward start [flags]

Flags (kebab-case spellings such as --${kebab('bindAddr')} work too; every flag may also come from
the environment as PGWARD_<FLAG_IN_UPPER_SNAKE> or from --config FILE; flag > env > file > default):
${lines.join('\n')}
  -v, --verbose (twice: -vv)         debug logging; twice, trace logging

Durations (--authTimeout, --gracePeriod, --refresh, …) are a number of seconds ("30") or units
ms, s, m, h, d, combined as in "250ms", "30s", "10m", "1h30m", "7d".

Example (one backend, the pgpx model):
  pgward start --auth passthrough --backend 'postgres://app@db:5432/app?sslmode=verify-full&sslrootcert=ca.pem' \\
    --credsCmd 'aws rds generate-db-auth-token --hostname db --port 5432 --username app' \\
    --bindCert server.crt --bindKey server.key
`;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
    process.stdout.write(`pgward ${version()}\n`);
    return 0;
  }
  if (cmd === 'demo') return runDemo(rest);
  if (cmd === 'keygen') return runKeygen(rest);
  if (cmd === 'token') return runToken(rest);
  if (cmd === 'check') {
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write('Usage: pgward check [start flags]\n\nLoads and validates the configuration as `pgward start` would (files, keys,\nbackends), prints the resolved setup and exits 0, or 2 listing every problem.\n');
      return 0;
    }
    return runCheck(rest);
  }
  if (cmd === 'start') {
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(startHelp());
      return 0;
    }
    try {
      return await runStart(buildProxyConfig(rest), () => buildProxyConfig(rest), configPathOf(rest));
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`pgward: configuration problems:\n${err.problems.map((p) => `  - ${p}`).join('\n')}\n`);
        return 2;
      }
      // Anything else that stops start (the address in use, a port not allowed): one clear line.
      process.stderr.write(`pgward: cannot start: ${(err as Error).message}\n`);
      return 1;
    }
  }
  process.stderr.write(`pgward: unknown command "${cmd}" (see pgward --help)\n`);
  return 2;
}
