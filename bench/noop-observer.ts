/**
 * A plugin for the bench's `pgward-observer` target: middleware that declares exactly query-log's
 * messages (observe-only, the same counts) and does nothing with them, so that the querylog cell
 * tells what observing costs (C framing and queuing, the hand-over, the chain) from what query-log
 * itself does. It counts the messages it was shown and logs the count as a session closes; the
 * bench checks that the count is not zero. Its operators are `observer`s, as query-log's are.
 */
import { queryLog } from '../src/middleware/query-log.js';
import { definePlugin, observer, type BackendMessage, type FrontendMessage } from '../src/index.js';

export default definePlugin({
  name: 'noop-observer',
  version: '0.1.0',
  setup(api) {
    const { messages } = queryLog();
    api.registerMiddleware('noop-observer', () => ({
      name: 'noop-observer',
      messages,
      session(ctx) {
        let seen = 0;
        return {
          frontend: observer<FrontendMessage>(() => void seen++),
          backend: observer<BackendMessage>(() => void seen++),
          onClose: () => ctx.log.info('noop-observer: messages seen', { seen }),
        };
      },
    }));
  },
});
