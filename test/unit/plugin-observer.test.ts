// `observer`, from the public entry point, in a plugin's observeOnly middleware run by the plugin test kit.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { be, definePlugin, fe, observer, type BackendMessage, type FrontendMessage } from '../../src/index.js';
import { loadTestPlugins, startTestSession } from '../../src/testing.js';

const types = (messages: readonly { type: string }[]) => messages.map((m) => m.type);
const sqlOf = (m: FrontendMessage) => (m.type === 'Query' ? m.body().sql : m.type);
const answer = () => [be.commandComplete('SELECT 1'), be.readyForQuery('I')];

describe('observer (pgward/plugin)', () => {
  it('runs an observer(see) operator (the public one) for an observeOnly middleware: see gets each declared message once, nothing else, and it goes on untouched', async () => {
    const seen: string[] = [];
    const plugins = await loadTestPlugins(
      definePlugin({
        name: 'watcher',
        version: '0.1.0',
        setup: (api) =>
          api.registerMiddleware('watcher', () => ({
            name: 'watcher',
            messages: { frontend: ['Query'], backend: ['CommandComplete'], observeOnly: true },
            session: () => ({
              frontend: observer<FrontendMessage>((m) => void seen.push(sqlOf(m))),
              backend: observer<BackendMessage>((m) => void seen.push(m.type)),
            }),
          })),
      }),
    );
    const s = await startTestSession(plugins.middleware('watcher', {}));
    s.client.send(fe.query('select 1'), fe.sync());
    assert.deepEqual(s.backend.take().map(sqlOf), ['select 1', 'Sync'], 'forwarded as sent, once each');
    s.backend.send(...answer());
    assert.deepEqual(types(s.client.take()), ['CommandComplete', 'ReadyForQuery']);
    assert.deepEqual(seen, ['select 1', 'CommandComplete'], 'seen once each, only the declared types');
  });

});
