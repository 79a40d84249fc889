// What the pipeline writes to one side of a native carrier (native-carrier.ts), joined into runs.
import { LazyMessage, type Message } from '../protocol/index.js';

/** Where a writer's runs go: the carrier, which hands them to C. */
export interface WriteTarget {
  write(direction: number, source: Buffer, offset: number, length: number, continues: boolean): void;
}

/**
 * What the pipeline writes to one side, joined into runs of adjacent ranges: within a batch, a
 * read whose messages all pass untouched goes back to C as one range. Outside a batch a write
 * leaves in a microtask, with whatever else was written meanwhile.
 */
export class NativeWriter {
  private run: Buffer | undefined = undefined;
  private runStart = 0;
  private runEnd = 0;
  private continues = false;
  scheduled = false;
  held = 0;

  constructor(
    private readonly carrier: WriteTarget,
    private readonly direction: number,
  ) {}

  /** `continues`: forwarded bytes, which carry the stream on where it is (maybe inside a message). */
  put(source: Buffer, offset: number, length: number, continues: boolean): void {
    if (source === this.run && offset === this.runEnd) {
      this.runEnd += length;
      return;
    }
    this.flush();
    this.run = source;
    this.runStart = offset;
    this.runEnd = offset + length;
    this.continues = continues;
    if (this.held === 0 && !this.scheduled) schedule(this);
  }

  message(m: Message): void {
    if (m instanceof LazyMessage) this.put(m.source, m.offset, m.length, false);
    else this.put(m.raw, 0, m.raw.length, false);
  }

  flush(): void {
    const run = this.run;
    if (run === undefined) return;
    this.run = undefined;
    this.carrier.write(this.direction, run, this.runStart, this.runEnd - this.runStart, this.continues);
  }
}

// Writers with something to write outside a batch, flushed together in one microtask.
let due: NativeWriter[] = [];

function schedule(writer: NativeWriter): void {
  writer.scheduled = true;
  if (due.push(writer) === 1) queueMicrotask(flushDue);
}

function flushDue(): void {
  const writers = due;
  due = [];
  for (const w of writers) {
    w.scheduled = false;
    w.flush();
  }
}

