/** The --config path from argv or the environment (relative plugin paths start from its folder). */
export function configPathOf(argv: readonly string[]): string | undefined {
  const i = argv.findIndex((a) => a === '--config' || a.startsWith('--config='));
  if (i < 0) return process.env.PGWARD_CONFIG || undefined;
  return argv[i]!.includes('=') ? argv[i]!.slice(argv[i]!.indexOf('=') + 1) : argv[i + 1];
}
