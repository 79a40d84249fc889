import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CancelRegistry } from '../../src/backend/cancel.js';
import { ownerOf } from '../../src/backend/cancel-key.js';
import type { BackendTarget } from '../../src/backend/url.js';

const target = (port: number) => ({ host: '127.0.0.1', port }) as BackendTarget;

describe('cancel registry: the backend pid, told apart by the secret', () => {
  it('gives the backend pid, and keeps two sessions with the same pid on two backends apart', () => {
    const r = new CancelRegistry();
    const a = r.register({ processId: 4242, secretKey: Buffer.from('aaaa') }, target(1), false);
    const b = r.register({ processId: 4242, secretKey: Buffer.from('bbbb') }, target(2), false, 32);
    assert.equal(a.processId, 4242);
    assert.equal(b.processId, 4242);
    assert.equal(r.size, 2);
    assert.equal(r.lookup(a)?.target.port, 1);
    assert.equal(r.lookup(b)?.target.port, 2);
    assert.notEqual(a.secretKey.toString('hex'), Buffer.from('aaaa').toString('hex'), 'the secret is the proxy\'s own');
    assert.equal(r.lookup({ processId: 4242, secretKey: Buffer.from('aaaa') }), undefined, 'the backend secret is no key');
    r.unregister(a);
    assert.equal(r.lookup(a), undefined);
    assert.equal(r.lookup(b)?.target.port, 2);
    assert.equal(r.size, 1);
  });

  it('keeps random ids carrying the instance with peers, and for keys reserved before the backend', () => {
    const peers = new CancelRegistry({ instanceId: 5 });
    const k = peers.register({ processId: 4242, secretKey: Buffer.from('aaaa') }, target(1), false);
    assert.equal(ownerOf(k.processId), 5);
    const plain = new CancelRegistry();
    const reserved = plain.reserve();
    assert.equal(plain.lookup(reserved), undefined, 'no backend yet');
    plain.bind(reserved, { processId: 4242, secretKey: Buffer.from('aaaa') }, target(3), false);
    assert.equal(plain.lookup(reserved)?.target.port, 3);
  });
});
