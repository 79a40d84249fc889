/** One `pipeline:` entry: a middleware name and its options (validated by the middleware). */
export interface PipelineEntry {
  name: string;
  options: unknown;
}

/** The pipeline used when the config names none: graceful drain on SIGTERM/SIGINT. */
const DEFAULT_PIPELINE: readonly PipelineEntry[] = [{ name: 'drain-gate', options: {} }];

/** `pipeline:` entries are a name or a one-key mapping `{ name: options }`; auth may lead. */
export function parsePipeline(raw: unknown, problems: string[]): PipelineEntry[] {
  if (raw === undefined) return [...DEFAULT_PIPELINE];
  if (!Array.isArray(raw)) {
    problems.push('pipeline: expected a list of middleware names or { name: options } entries');
    return [];
  }
  const entries: PipelineEntry[] = [];
  raw.forEach((item, i) => {
    let entry: PipelineEntry | undefined;
    if (typeof item === 'string') entry = { name: item, options: {} };
    else if (item && typeof item === 'object' && !Array.isArray(item) && Object.keys(item).length === 1) {
      const [name, options] = Object.entries(item as Record<string, unknown>)[0]!;
      entry = { name, options: options ?? {} };
    }
    if (!entry) return problems.push(`pipeline[${i}]: expected a name or a mapping with exactly one name`);
    if (entry.name === 'auth') {
      if (i !== 0) problems.push(`pipeline[${i}]: auth always runs first; list it first or not at all`);
      return;
    }
    if (entries.some((e) => e.name === entry!.name)) return problems.push(`pipeline[${i}]: "${entry.name}" is listed twice`);
    entries.push(entry);
  });
  return entries;
}

