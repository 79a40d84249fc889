/**
 * The cancel keys pgward issues to clients, and how a process id names the instance that issued
 * it: shared by the cancel registry (cancel.ts) and cancel forwarding between peers (peers.ts).
 */

/** What a client quotes in a CancelRequest: the process id and secret it was given. */
export interface CancelKey {
  processId: number;
  secretKey: Buffer;
}

/** Peer ids fit in the 7 bits above the 24 random bits of a positive int32 process id. */
export const MAX_PEER_ID = 127;
const ID_SHIFT = 24;
export const RANDOM_PROCESS_ID_LIMIT = 1 << ID_SHIFT;

/** The instance a process id was issued by (0 when issued without peers). */
export function ownerOf(processId: number): number {
  return (processId >>> ID_SHIFT) & MAX_PEER_ID;
}

/** A process id owned by `instanceId`, from 24 random bits. */
export function ownedProcessId(instanceId: number, random24: number): number {
  return ((instanceId << ID_SHIFT) | (random24 & (RANDOM_PROCESS_ID_LIMIT - 1))) >>> 0;
}
