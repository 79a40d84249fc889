import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backendMessage, be, Framer } from '../../src/protocol/index.js';
import { LoginReply, parameterStatusBlock } from '../../src/server/login-reply.js';

describe('the login reply in one buffer', () => {
  it('is byte for byte the messages it stands for, in order', () => {
    const params: [string, string][] = [['server_version', '17.2'], ['application_name', 'ünïcode ✓'], ['TimeZone', 'Etc/UTC'], ['empty', '']];
    const notice = be.noticeResponse({ severity: 'NOTICE', code: '00000', message: 'hello' }).raw;
    const key = be.backendKeyData(4242, Buffer.from([1, 2, 3, 4])).raw;
    const reply = new LoginReply();
    reply.authOk();
    reply.raw(notice);
    for (const [name, value] of params) reply.parameterStatus(name, value);
    reply.raw(key);
    reply.readyIdle();
    const expected = Buffer.concat([
      be.authOk().raw,
      notice,
      ...params.map(([name, value]) => be.parameterStatus(name, value).raw),
      key,
      be.readyForQuery('I').raw,
    ]);
    const got = reply.toBuffer();
    assert.deepEqual(got, expected);
    const types: string[] = [];
    new Framer().push(got, (code, source, offset, length) => types.push(backendMessage(code, source, offset, length).type));
    assert.deepEqual(types, ['Authentication', 'NoticeResponse', ...params.map(() => 'ParameterStatus'), 'BackendKeyData', 'ReadyForQuery']);
  });

  it('is empty with nothing in it', () => {
    assert.equal(new LoginReply().toBuffer().length, 0);
  });

  it("encodes a connection's parameters once while they stay the same, again when one changes", () => {
    const parameters = new Map([['server_version', '17.2'], ['TimeZone', 'Etc/UTC']]);
    const encoded = () => Buffer.concat([...parameters].map(([name, value]) => be.parameterStatus(name, value).raw));
    const first = new Map<string, string>();
    const block = parameterStatusBlock(parameters, first);
    assert.deepEqual(block, encoded());
    assert.deepEqual([...first], [...parameters]);
    const second = new Map<string, string>();
    assert.equal(parameterStatusBlock(parameters, second), block, 'the same buffer for the same parameters');
    assert.deepEqual([...second], [...parameters]);
    parameters.set('TimeZone', 'Europe/Paris');
    assert.deepEqual(parameterStatusBlock(parameters, new Map()), encoded());
    parameters.set('is_superuser', 'off');
    assert.deepEqual(parameterStatusBlock(parameters, new Map()), encoded());
    parameters.delete('server_version');
    assert.deepEqual(parameterStatusBlock(parameters, new Map()), encoded());
  });
});
