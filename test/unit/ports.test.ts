// The tests' port picker (test/helpers/ports.ts): distinct ports that bind, outside the range the
// kernel gives outgoing connections.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { freePort } from '../helpers/ports.js';

const listen = (port: number) =>
  new Promise<() => Promise<void>>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve(() => new Promise((done) => server.close(() => done()))));
  });

describe('freePort', () => {
  it('gives concurrent callers distinct ports, each of which binds', async () => {
    const ports = await Promise.all(Array.from({ length: 30 }, () => freePort()));
    assert.equal(new Set(ports).size, ports.length, `distinct: ${ports.join(' ')}`);
    const closers = await Promise.all(ports.map(listen));
    await Promise.all(closers.map((close) => close()));
  });

  it('picks below the ephemeral range, where no outgoing connection takes a port (else any port)', async () => {
    let first = Number.NaN;
    try {
      first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    } catch {
      // Not Linux: the kernel picks, anywhere.
    }
    const [low, high] = first > 12_000 ? [10_000, first - 1] : [1, 65_535];
    for (let i = 0; i < 20; i++) {
      const port = await freePort();
      assert.ok(port >= low && port <= high, `${port} in ${low}–${high}`);
    }
  });
});
