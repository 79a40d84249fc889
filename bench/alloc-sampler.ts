/**
 * A preload for pgward under bench/login-profile.ts with LOGIN_ALLOC=<dir> (`node --import
 * <this file> bin/pgward.js start …`): samples the process's JavaScript allocations with V8's
 * sampling heap profiler only between two SIGUSR2s, counting the objects the garbage collector has
 * already taken too (without them a login's short-lived garbage, most of what it allocates, would
 * not show). The first SIGUSR2 starts sampling and writes `alloc-<pid>.started` into the directory
 * once it has; the second stops it and writes `alloc-<pid>-<n>.heapprofile` (written under another
 * name and renamed, so a reader never sees half a file). The directory comes from the environment
 * (PGWARD_ALLOC_DIR). Not part of pgward: it lives in bench/ and is loaded only by that option.
 */
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AllocationSampler } from './allocation-sampling.js';

const dir = process.env.PGWARD_ALLOC_DIR;
if (!dir) throw new Error('alloc-sampler: PGWARD_ALLOC_DIR is not set');
const outDir: string = dir;

const sampler = new AllocationSampler();
let sampling = false;
let taken = 0;

async function toggle(): Promise<void> {
  if (!sampling) {
    sampling = true;
    await sampler.start(Number(process.env.PGWARD_ALLOC_INTERVAL ?? 1024), process.env.PGWARD_ALLOC_SURVIVORS === '1');
    await writeFile(join(outDir, `alloc-${process.pid}.started`), '');
    return;
  }
  sampling = false;
  const profile = await sampler.stop();
  const file = join(outDir, `alloc-${process.pid}-${++taken}.heapprofile`);
  await writeFile(`${file}.part`, JSON.stringify(profile));
  await rename(`${file}.part`, file);
}

process.on('SIGUSR2', () => {
  toggle().catch((err: unknown) => console.error('alloc-sampler:', err));
});
