import assert from 'node:assert/strict';
import { hkdfSync, randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { CancelKey } from '../../src/backend/cancel.js';
import { CancelRegistry } from '../../src/backend/cancel.js';
import { MAX_PEER_ID, ownedProcessId, ownerOf } from '../../src/backend/cancel-key.js';
import { openCancel, PeerCancelChannel, sealCancel, type PeerEvent } from '../../src/backend/peers.js';

const key = (secret: Buffer) => Buffer.from(hkdfSync('sha256', secret, 'pgward peers', 'cancel forwarding v1', 32));

describe('peer cancel frames', () => {
  it('process ids carry their owner in the top 7 bits and stay positive int32', () => {
    for (const id of [1, 2, 64, MAX_PEER_ID]) {
      for (const r of [1, 0xabcdef, 0xffffff]) {
        const pid = ownedProcessId(id, r);
        assert.ok(pid > 0 && pid <= 0x7fffffff, `pid ${pid} is a positive int32`);
        assert.equal(ownerOf(pid), id);
        assert.equal(pid & 0xffffff, r);
      }
    }
    const reg = new CancelRegistry({ instanceId: 5 });
    for (let i = 0; i < 50; i++) assert.equal(ownerOf(reg.reserve(4).processId), 5);
  });

  it('round-trips a key and refuses any altered byte, a wrong secret, or a truncated frame', () => {
    const k = key(randomBytes(32));
    const cancel: CancelKey = { processId: ownedProcessId(3, 42), secretKey: randomBytes(32) };
    const frame = sealCancel(k, 7, cancel, 1_700_000_000_000);
    const opened = openCancel(k, frame);
    assert.ok(opened);
    assert.equal(opened.senderId, 7);
    assert.equal(opened.sentAt, 1_700_000_000_000);
    assert.equal(opened.cancel.processId, cancel.processId);
    assert.deepEqual(opened.cancel.secretKey, cancel.secretKey);
    assert.ok(!frame.includes(cancel.secretKey), 'the cancel key is not in the clear');
    for (let i = 0; i < frame.length; i++) {
      const bad = Buffer.from(frame);
      bad[i] ^= 0x01;
      assert.equal(openCancel(k, bad), undefined, `byte ${i} altered`);
    }
    assert.equal(openCancel(key(randomBytes(32)), frame), undefined);
    assert.equal(openCancel(k, frame.subarray(0, frame.length - 1)), undefined);
    assert.equal(openCancel(k, Buffer.concat([frame, Buffer.of(0)])), undefined);
  });
});

/** Two channels on loopback, each delivering to a fake local registry that knows `known`. */
async function pair(opts: { secretA?: Buffer; secretB?: Buffer } = {}) {
  const shared = randomBytes(32);
  const events: { at: string; event: PeerEvent; detail: Record<string, unknown> }[] = [];
  const delivered: { at: string; key: CancelKey }[] = [];
  const known = new Set<number>();
  const instances = new Map<number, { host: string; port: number }>();
  const make = (id: number, secret: Buffer) =>
    new PeerCancelChannel({
      id,
      secret,
      instances,
      deliverLocally: async (k) => {
        delivered.push({ at: String(id), key: k });
        return known.has(k.processId);
      },
      onEvent: (event, detail) => events.push({ at: String(id), event, detail }),
    });
  const a = make(1, opts.secretA ?? shared);
  const b = make(2, opts.secretB ?? shared);
  instances.set(1, { host: '127.0.0.1', port: (await a.listen('127.0.0.1', 0)).port });
  instances.set(2, { host: '127.0.0.1', port: (await b.listen('127.0.0.1', 0)).port });
  return {
    a,
    b,
    events,
    delivered,
    known,
    instances,
    shared,
    async [Symbol.asyncDispose]() {
      await a.close();
      await b.close();
    },
  };
}

/** Sends raw bytes to a peer port and returns its reply (empty when it hung up). */
function rawExchange(port: number, bytes: Buffer, halfClose = false): Promise<Buffer> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => (halfClose ? s.end(bytes) : s.write(bytes)));
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    s.on('error', () => {});
    s.on('close', () => resolve(Buffer.concat(got)));
  });
}

describe('peer cancel channel over loopback', () => {
  it("forwards a key to its owner, which delivers it to its own session only", async () => {
    await using p = await pair();
    const owned: CancelKey = { processId: ownedProcessId(2, 99), secretKey: randomBytes(4) };
    p.known.add(owned.processId);
    assert.equal(await p.a.forward(owned), true);
    assert.deepEqual(p.delivered.map((d) => [d.at, d.key.processId]), [['2', owned.processId]]);
    assert.deepEqual(p.delivered[0]!.key.secretKey, owned.secretKey);
    assert.equal(p.events.at(-1)?.event, 'from_peer');

    const unknownAtOwner: CancelKey = { processId: ownedProcessId(2, 100), secretKey: randomBytes(4) };
    assert.equal(await p.a.forward(unknownAtOwner), false, 'the owner does not know this key');
    assert.equal(p.events.at(-1)?.event, 'unknown');

    const before = p.delivered.length;
    assert.equal(await p.a.forward({ processId: ownedProcessId(1, 5), secretKey: randomBytes(4) }), false, 'its own key is never sent out');
    assert.equal(await p.a.forward({ processId: ownedProcessId(9, 5), secretKey: randomBytes(4) }), false, 'no such peer');
    assert.equal(await p.a.forward({ processId: 12345, secretKey: randomBytes(4) }), false, 'a key issued without peers');
    assert.equal(p.delivered.length, before);
  });

  it('refuses frames sealed with another secret, replayed, stale, garbage, or for a key it does not own', async () => {
    await using p = await pair({ secretA: randomBytes(32) });
    const owned: CancelKey = { processId: ownedProcessId(2, 7), secretKey: randomBytes(4) };
    p.known.add(owned.processId);
    await assert.rejects(p.a.forward(owned), /closed without answering/);
    assert.equal(p.delivered.length, 0);
    assert.equal(p.events.at(-1)?.event, 'rejected');
    assert.match(String(p.events.at(-1)?.detail.reason), /shared secret/);

    const portB = p.instances.get(2)!.port;
    const k = key(p.shared);
    const frame = sealCancel(k, 1, owned);
    assert.deepEqual(await rawExchange(portB, frame), Buffer.of(1), 'a good frame is delivered');
    assert.deepEqual(await rawExchange(portB, frame), Buffer.alloc(0), 'the same frame again is refused');
    assert.match(String(p.events.at(-1)?.detail.reason), /replayed/);
    assert.deepEqual(await rawExchange(portB, sealCancel(k, 1, owned, Date.now() - 120_000)), Buffer.alloc(0));
    assert.match(String(p.events.at(-1)?.detail.reason), /clock skew/);
    assert.deepEqual(await rawExchange(portB, sealCancel(k, 1, { processId: ownedProcessId(1, 7), secretKey: randomBytes(4) })), Buffer.alloc(0));
    assert.match(String(p.events.at(-1)?.detail.reason), /not owned/);
    assert.deepEqual(await rawExchange(portB, Buffer.alloc(100, 0x41)), Buffer.alloc(0));
    assert.match(String(p.events.at(-1)?.detail.reason), /not a pgward peer frame/);
    assert.deepEqual(await rawExchange(portB, Buffer.concat([frame.subarray(0, 18), Buffer.from([0xff, 0xff]), Buffer.alloc(400)])), Buffer.alloc(0));
    assert.match(String(p.events.at(-1)?.detail.reason), /frame too long/);
    assert.deepEqual(await rawExchange(portB, frame.subarray(0, 30), true), Buffer.alloc(0));
    assert.match(String(p.events.at(-1)?.detail.reason), /ended before a complete frame/);
    assert.equal(p.delivered.length, 1, 'only the one good frame reached a session');
    for (const e of p.events) assert.ok(!JSON.stringify(e.detail).includes(owned.secretKey.toString('hex')), 'no key in events');
  });

  it('a CancelRegistry with peers sends what it does not own to the owner and drops what it cannot place', async () => {
    await using p = await pair();
    const reg = new CancelRegistry({ instanceId: 1, remote: p.a });
    const owned: CancelKey = { processId: ownedProcessId(2, 1234), secretKey: randomBytes(4) };
    p.known.add(owned.processId);
    assert.equal(await reg.forward(owned), 'peer');
    assert.equal(await reg.forward({ processId: ownedProcessId(2, 4321), secretKey: randomBytes(4) }), 'unknown');
    assert.equal(await reg.forward({ processId: ownedProcessId(1, 4321), secretKey: randomBytes(4) }), 'unknown', 'own but unregistered');
    p.instances.set(3, { host: '127.0.0.1', port: 1 });
    await assert.rejects(reg.forward({ processId: ownedProcessId(3, 1), secretKey: randomBytes(4) }), 'an unreachable owner is an error');
  });
});
