import { readFileSync } from 'node:fs';
import { MAX_PEER_ID } from '../backend/cancel-key.js';
import type { PeerAddress } from '../backend/peers.js';
import { parseHostPort } from '../util/host-port.js';

/** `peers:` — several instances behind one load balancer forwarding cancels to each other. */
export interface PeersConfig {
  /** This instance's id (1..127), carried in the cancel keys it issues. */
  id: number;
  /** Where this instance accepts cancels its peers forward. */
  listen: PeerAddress;
  secret: Buffer;
  /** Where the secret came from, for logs (never the secret). */
  secretSource: string;
  /** Every instance's peer address by id. */
  instances: ReadonlyMap<number, PeerAddress>;
}

/** The environment variable holding the peers' shared secret when `peers.secretFile` is not set. */
const PEER_SECRET_ENV = 'PGWARD_PEER_SECRET';
/** The environment variable giving this instance's peer id when `peers.id` is not set. */
const PEER_ID_ENV = 'PGWARD_PEER_ID';
const MIN_PEER_SECRET_BYTES = 32;

/**
 * `peers: { id, listen, secretFile, instances: { <id>: host:port } }` (id may come from PGWARD_PEER_ID). The secret comes from
 * `secretFile` or PGWARD_PEER_SECRET, never inline, so config files can be shared and committed.
 */
export function parsePeers(raw: unknown, env: NodeJS.ProcessEnv, problems: string[]): PeersConfig | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push('peers: expected a mapping with id, listen, secretFile and instances');
    return undefined;
  }
  const p = raw as Record<string, unknown>;
  const before = problems.length;
  for (const k of Object.keys(p)) {
    if (!['id', 'listen', 'secretFile', 'instances'].includes(k)) {
      problems.push(k === 'secret' ? `peers.secret: put the secret in peers.secretFile or ${PEER_SECRET_ENV}, not in the config` : `peers.${k}: unknown setting`);
    }
  }
  const isId = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= MAX_PEER_ID;
  // One file can serve every instance when each sets its id in the environment.
  const id = p.id ?? (env[PEER_ID_ENV] !== undefined ? Number(env[PEER_ID_ENV]) : undefined);
  if (!isId(id)) {
    problems.push(`peers.id (or ${PEER_ID_ENV}): expected a whole number from 1 to ${MAX_PEER_ID}, unique to this instance`);
  }
  let listen: PeerAddress | undefined;
  try {
    if (typeof p.listen !== 'string') throw new Error('expected HOST:PORT where this instance accepts forwarded cancels');
    listen = parseHostPort(p.listen);
  } catch (err) {
    problems.push(`peers.listen: ${(err as Error).message}`);
  }
  let secret: Buffer | undefined;
  let secretSource = '';
  if (typeof p.secretFile === 'string') {
    secretSource = `file ${p.secretFile}`;
    try {
      secret = Buffer.from(readFileSync(p.secretFile, 'utf8').trim(), 'utf8');
    } catch (err) {
      problems.push(`peers.secretFile: ${(err as Error).message}`);
    }
  } else if (p.secretFile !== undefined) {
    problems.push('peers.secretFile: expected a file path');
  } else if (env[PEER_SECRET_ENV]) {
    secretSource = `environment ${PEER_SECRET_ENV}`;
    secret = Buffer.from(env[PEER_SECRET_ENV]!.trim(), 'utf8');
  } else {
    problems.push(`peers: the shared secret is missing: set peers.secretFile or ${PEER_SECRET_ENV}`);
  }
  if (secret && secret.length < MIN_PEER_SECRET_BYTES) {
    problems.push(`peers: the shared secret (${secretSource}) must be at least ${MIN_PEER_SECRET_BYTES} bytes; make one with: openssl rand -base64 48`);
  }
  const instances = new Map<number, PeerAddress>();
  if (p.instances === null || typeof p.instances !== 'object' || Array.isArray(p.instances)) {
    problems.push('peers.instances: expected a mapping of instance id to HOST:PORT');
  } else {
    for (const [k, addr] of Object.entries(p.instances as Record<string, unknown>)) {
      const peerId = Number(k);
      if (!isId(peerId)) {
        problems.push(`peers.instances.${k}: ids are whole numbers from 1 to ${MAX_PEER_ID}`);
        continue;
      }
      try {
        if (typeof addr !== 'string') throw new Error('expected HOST:PORT');
        instances.set(peerId, parseHostPort(addr));
      } catch (err) {
        problems.push(`peers.instances.${k}: ${(err as Error).message}`);
      }
    }
    if (isId(id) && ![...instances.keys()].some((k) => k !== id)) problems.push('peers.instances: list at least one other instance');
  }
  if (problems.length > before || !listen || !secret) return undefined;
  return { id: id as number, listen, secret, secretSource, instances };
}
