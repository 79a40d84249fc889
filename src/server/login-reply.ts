import { BackendSpecs, be } from '../protocol/index.js';

const AUTH_OK = be.authOk().raw;
const READY_IDLE = be.readyForQuery('I').raw;
const PARAMETER_STATUS = BackendSpecs.ParameterStatus.code;

/**
 * The end of a login as the client gets it — AuthenticationOk, the backend's ParameterStatus set,
 * BackendKeyData, ReadyForQuery — encoded into one buffer, so it leaves in one write of one
 * buffer: building a message object and a buffer for each of the ~15 parameters, and handing the
 * socket a vector of them, cost more than the bytes.
 */
export class LoginReply {
  /** Whole messages (Buffer) and parameters (name, value, and their encoded lengths), in order. */
  private readonly items: (Buffer | ParameterItem)[] = [];
  private size = 0;

  authOk(): void {
    this.raw(AUTH_OK);
  }

  readyIdle(): void {
    this.raw(READY_IDLE);
  }

  /** A message already encoded. */
  raw(message: Buffer): void {
    this.items.push(message);
    this.size += message.length;
  }

  parameterStatus(name: string, value: string): void {
    const nameBytes = Buffer.byteLength(name, 'utf8');
    const valueBytes = Buffer.byteLength(value, 'utf8');
    this.items.push({ name, value, nameBytes, valueBytes });
    this.size += 5 + nameBytes + 1 + valueBytes + 1;
  }

  /** Every message added, in order, in one buffer. */
  toBuffer(): Buffer {
    const out = Buffer.allocUnsafe(this.size);
    let at = 0;
    for (const item of this.items) {
      if (Buffer.isBuffer(item)) {
        at += item.copy(out, at);
        continue;
      }
      out[at] = PARAMETER_STATUS;
      out.writeInt32BE(4 + item.nameBytes + 1 + item.valueBytes + 1, at + 1);
      at += 5;
      at += out.write(item.name, at, 'utf8');
      out[at++] = 0;
      at += out.write(item.value, at, 'utf8');
      out[at++] = 0;
    }
    return out;
  }
}

interface ParameterItem {
  name: string;
  value: string;
  nameBytes: number;
  valueBytes: number;
}

/** A connection's ParameterStatus messages as last encoded, and the values they were encoded from. */
interface EncodedParameters {
  names: string[];
  values: string[];
  block: Buffer;
}

/** Per backend connection's parameter map: a pooled connection reports the same set session after session. */
const encodedParameters = new WeakMap<ReadonlyMap<string, string>, EncodedParameters>();

/**
 * The ParameterStatus messages of every parameter in `parameters`, in order, in one buffer, each
 * also set in `copyTo` (the session's own record). Encoded again only when a value, a name or
 * their number changed since the last session of this connection; otherwise the same buffer.
 */
export function parameterStatusBlock(parameters: ReadonlyMap<string, string>, copyTo: Map<string, string>): Buffer {
  const kept = encodedParameters.get(parameters);
  let same = kept !== undefined && kept.names.length === parameters.size;
  let i = 0;
  // Keys, then each value: `for (const [name, value] of map)` makes an array per entry (some 900 bytes for a login's parameters).
  for (const name of parameters.keys()) {
    const value = parameters.get(name)!;
    copyTo.set(name, value);
    if (same && (kept!.names[i] !== name || kept!.values[i] !== value)) same = false;
    i++;
  }
  if (same) return kept!.block;
  const reply = new LoginReply();
  const made: EncodedParameters = { names: [], values: [], block: EMPTY };
  for (const name of parameters.keys()) {
    const value = parameters.get(name)!;
    reply.parameterStatus(name, value);
    made.names.push(name);
    made.values.push(value);
  }
  made.block = reply.toBuffer();
  encodedParameters.set(parameters, made);
  return made.block;
}

const EMPTY = Buffer.alloc(0);
