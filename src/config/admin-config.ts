/** The console's settings (`admin:` in the config file, SPEC §10). */
export interface AdminConfig {
  /** The database name that reaches the console. */
  readonly database: string;
  /** Token subjects that are administrators. */
  readonly subjects: readonly string[];
  /** Or: tokens whose claim `claim` equals `value`. */
  readonly claim?: string;
  readonly value?: string;
}

export const DEFAULT_ADMIN: AdminConfig = Object.freeze({ database: 'pgward', subjects: [] });

/** Validates `admin:`; pushes every problem. */
export function parseAdmin(raw: unknown, problems: string[]): AdminConfig {
  if (raw === undefined || raw === null) return DEFAULT_ADMIN;
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push('admin: expected an object with database, subjects, claim, value');
    return DEFAULT_ADMIN;
  }
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!['database', 'subjects', 'claim', 'value'].includes(k)) problems.push(`admin.${k}: unknown setting`);
  }
  const database = o.database ?? 'pgward';
  if (typeof database !== 'string' || database === '') problems.push('admin.database: expected a non-empty string');
  const subjects = o.subjects ?? [];
  if (!Array.isArray(subjects) || !subjects.every((s) => typeof s === 'string' && s !== '')) {
    problems.push('admin.subjects: expected a list of token subjects');
  }
  if ((o.claim === undefined) !== (o.value === undefined)) problems.push('admin.claim and admin.value must be given together');
  if (o.claim !== undefined && (typeof o.claim !== 'string' || o.claim === '')) problems.push('admin.claim: expected a claim name');
  if (o.value !== undefined && typeof o.value !== 'string') problems.push('admin.value: expected a string');
  return Object.freeze({
    database: String(database),
    subjects: Array.isArray(subjects) ? subjects.map(String) : [],
    claim: typeof o.claim === 'string' ? o.claim : undefined,
    value: typeof o.value === 'string' ? o.value : undefined,
  });
}

/**
 * Whether the console is on: only when someone can reach it (`admin.subjects` or `admin.claim`).
 * Without that the console's database name is an ordinary database, routed like any other.
 */
export function consoleEnabled(admin: AdminConfig): boolean {
  return admin.subjects.length > 0 || admin.claim !== undefined;
}

/** Whether verified claims make an administrator under `admin`. */
export function isAdmin(admin: AdminConfig, claims: Record<string, unknown>): boolean {
  if (typeof claims.sub === 'string' && admin.subjects.includes(claims.sub)) return true;
  if (admin.claim === undefined) return false;
  const v = claims[admin.claim];
  return v === admin.value || (Array.isArray(v) && v.includes(admin.value));
}
