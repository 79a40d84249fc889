import { spawn } from 'node:child_process';

export interface CommandSpec {
  /** argv: the program and its arguments; no shell is involved. */
  argv: readonly string[];
  timeoutMs: number;
  /** Largest stdout accepted, in bytes. */
  maxOutputBytes: number;
  input?: string;
  env?: NodeJS.ProcessEnv;
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  /** The first 2 KiB of stderr, for the operator's log (the caller decides whether it is safe). */
  stderr: string;
}

export class CommandError extends Error {
  constructor(message: string, readonly result?: CommandResult) {
    super(message);
    this.name = 'CommandError';
  }
}

/**
 * Runs a helper command (credential or authenticator) without a shell, with a deadline and an
 * output cap; the child is killed when either is exceeded.
 */
export function runCommand(spec: CommandSpec): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const [file, ...args] = spec.argv;
    if (!file) return reject(new CommandError('empty command'));
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: spec.env ?? process.env });
    const out: Buffer[] = [];
    let outBytes = 0;
    let err = '';
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(() => reject(new CommandError(`command timed out after ${spec.timeoutMs} ms`)));
    }, spec.timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      outBytes += d.length;
      if (outBytes > spec.maxOutputBytes) {
        child.kill('SIGKILL');
        finish(() => reject(new CommandError(`command output exceeds ${spec.maxOutputBytes} bytes`)));
        return;
      }
      out.push(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      if (err.length < 2048) err += d.toString('utf8').slice(0, 2048 - err.length);
    });
    child.on('error', (e) => finish(() => reject(new CommandError(`cannot run command: ${e.message}`))));
    child.on('close', (code) =>
      finish(() => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: err })),
    );
    child.stdin.on('error', () => {}); // a command that exits without reading its input is fine
    child.stdin.end(spec.input ?? '');
  });
}

/**
 * A value produced by a command and kept for a time; concurrent callers share one run, and a
 * failed run is not cached.
 */
export class CachedCommandValue {
  private value: { text: string; until: number } | null = null;
  private inflight: Promise<string> | null = null;

  constructor(
    private readonly spec: CommandSpec,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(): Promise<string> {
    if (this.value && this.now() < this.value.until) return Promise.resolve(this.value.text);
    this.inflight ??= runCommand(this.spec)
      .then((r) => {
        if (r.code !== 0) throw new CommandError(`command exited with status ${r.code}`, r);
        const text = r.stdout.replace(/\r?\n$/, '');
        if (text === '') throw new CommandError('command printed nothing');
        this.value = { text, until: this.now() + this.ttlMs };
        return text;
      })
      .finally(() => {
        this.inflight = null;
      });
    return this.inflight;
  }
}
