// The native addon (native/, built by `node native/build.mjs`), loaded once for every part that uses it.
import { createRequire } from 'node:module';

let loaded: { lib: Record<string, unknown> } | { error: string } | undefined;

/** The addon's exports, or why it does not load here (not built, built for another Node). */
export function nativeAddon(): { lib: Record<string, unknown> } | { error: string } {
  if (loaded) return loaded;
  try {
    // dist/src/transport → the repository root.
    loaded = { lib: createRequire(import.meta.url)('../../../native/build/Release/pgward_relay.node') as Record<string, unknown> };
  } catch (err) {
    loaded = { error: err instanceof Error ? err.message.split('\n')[0]! : String(err) };
  }
  return loaded;
}
