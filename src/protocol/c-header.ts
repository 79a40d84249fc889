// The protocol table (meanings.ts) as C, for the native carrier: native/pg-protocol.h is this
// text, written by native/gen-protocol-header.mjs; a unit test fails while the two differ.
import { BackendSpecs } from './backend.js';
import { FrontendSpecs } from './frontend.js';
import {
  BE_ENDS_ERROR,
  BE_ENDS_OK,
  BE_KEEPS_LAST_WORD,
  BE_READY,
  BE_REPORTS_ERROR,
  backendFlags,
  backendMaxLength,
  FE_AWAITS_READY,
  FE_CLOSES_BATCH,
  FE_EXTENDED,
  FE_STARTS_STATEMENT,
  FE_TERMINATES,
  frontendFlags,
  frontendMaxLength,
  LEAVING_SEVERITIES,
  LOCALIZED_SEVERITY_FIELD,
  SEVERITY_FIELD,
} from './meanings.js';
import { Limits } from './framer.js';

const FE_FLAG_NAMES: [number, string][] = [
  [FE_AWAITS_READY, 'PGP_FE_AWAITS_READY'],
  [FE_STARTS_STATEMENT, 'PGP_FE_STARTS_STATEMENT'],
  [FE_EXTENDED, 'PGP_FE_EXTENDED'],
  [FE_CLOSES_BATCH, 'PGP_FE_CLOSES_BATCH'],
  [FE_TERMINATES, 'PGP_FE_TERMINATES'],
];
const BE_FLAG_NAMES: [number, string][] = [
  [BE_ENDS_OK, 'PGP_BE_ENDS_OK'],
  [BE_ENDS_ERROR, 'PGP_BE_ENDS_ERROR'],
  [BE_READY, 'PGP_BE_READY'],
  [BE_KEEPS_LAST_WORD, 'PGP_BE_KEEPS_LAST_WORD'],
  [BE_REPORTS_ERROR, 'PGP_BE_REPORTS_ERROR'],
];

/** The type names by code, for comments. */
function namesByCode(specs: Record<string, { code: number }>): Map<number, string> {
  return new Map(Object.entries(specs).map(([name, s]) => [s.code, name]));
}

function designator(code: number, names: Map<number, string>): string {
  return `[0x${code.toString(16).padStart(2, '0')}] /* '${String.fromCharCode(code)}' ${names.get(code)} */`;
}

function flagsArray(name: string, flags: Uint8Array, flagNames: [number, string][], names: Map<number, string>): string[] {
  const lines = [`static const uint8_t ${name}[256] = {`];
  for (let code = 0; code < 256; code++) {
    const f = flags[code]!;
    if (f === 0) continue;
    const parts = flagNames.filter(([bit]) => (f & bit) !== 0).map(([, n]) => n);
    lines.push(`    ${designator(code, names)} = ${parts.join(' | ')},`);
  }
  lines.push('};');
  return lines;
}

function lengthArray(name: string, max: Uint32Array, names: Map<number, string>): string[] {
  const lines = [`static const uint32_t ${name}[256] = {`];
  for (let code = 0; code < 256; code++) {
    if (max[code] === Limits.message) continue;
    lines.push(`    ${designator(code, names)} = ${max[code]}u,`);
  }
  lines.push('};');
  return lines;
}

/** The text of native/pg-protocol.h. */
export function protocolHeader(): string {
  const fe = namesByCode(FrontendSpecs);
  const be = namesByCode(BackendSpecs);
  return [
    '/*',
    ' * Generated from src/protocol/meanings.ts by native/gen-protocol-header.mjs: do not edit.',
    ' * After changing the table: npm run build && node native/gen-protocol-header.mjs',
    ' * (test/unit/protocol-meanings.test.ts fails while this file differs from the table).',
    ' */',
    '#ifndef PGWARD_PG_PROTOCOL_H',
    '#define PGWARD_PG_PROTOCOL_H',
    '',
    '#include <stdint.h>',
    '',
    '/* The protocol\'s own limit on a length field. */',
    `#define PGP_MAX_LENGTH ${Limits.message}u`,
    '',
    ...FE_FLAG_NAMES.map(([bit, n]) => `#define ${n} ${bit}`),
    ...BE_FLAG_NAMES.map(([bit, n]) => `#define ${n} ${bit}`),
    '',
    '/* Meanings of each frontend type byte. */',
    ...flagsArray('pgp_frontend_flags', frontendFlags, FE_FLAG_NAMES, fe),
    '',
    '/* Meanings of each backend type byte. */',
    ...flagsArray('pgp_backend_flags', backendFlags, BE_FLAG_NAMES, be),
    '',
    '/* Largest length field per type byte; 0 stands for PGP_MAX_LENGTH. */',
    ...lengthArray('pgp_frontend_max_length', frontendMaxLength, fe),
    ...lengthArray('pgp_backend_max_length', backendMaxLength, be),
    '',
    '/* An ErrorResponse whose severity reads one of these says the backend is leaving. */',
    `#define PGP_SEVERITY_FIELD '${SEVERITY_FIELD}'`,
    `#define PGP_LOCALIZED_SEVERITY_FIELD '${LOCALIZED_SEVERITY_FIELD}'`,
    `#define PGP_LEAVING_SEVERITY_COUNT ${LEAVING_SEVERITIES.length}`,
    `static const char *const pgp_leaving_severities[PGP_LEAVING_SEVERITY_COUNT] = {${LEAVING_SEVERITIES.map((s) => `"${s}"`).join(', ')}};`,
    '',
    '#endif',
    '',
  ].join('\n');
}
