import { readFileSync } from 'node:fs';

/** pgward's version, from the package.json of the installation this file runs from. */
export function pgwardVersion(): string {
  // This file runs compiled, from dist/src/util/: the package root is three folders up.
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
