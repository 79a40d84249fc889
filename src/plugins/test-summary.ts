import type { BackendMessage, FrontendMessage } from '../protocol/index.js';

/**
 * One line per message, for assertions that read like a protocol trace: the type, and for the
 * messages tests look into most what identifies them — `Query:select 1`, `Parse:s1:select $1`,
 * `Bind:s1:2` (statement, parameter count), `CommandComplete:SELECT 1`, `DataRow:alice,NULL`,
 * `ErrorResponse:42501`, `ReadyForQuery:I`, `ParameterStatus:TimeZone=UTC`, `Authentication:Ok`.
 */
export function summarize(messages: readonly (FrontendMessage | BackendMessage)[]): string[] {
  return messages.map(summaryOf);
}

function summaryOf(m: FrontendMessage | BackendMessage): string {
  switch (m.type) {
    case 'Query':
      return `Query:${m.body().sql}`;
    case 'Parse':
      return `Parse:${m.body().name}:${m.body().sql}`;
    case 'Bind':
      return `Bind:${m.body().statement}:${m.body().params.length}`;
    case 'CommandComplete':
      return `CommandComplete:${m.body().tag}`;
    case 'DataRow':
      return `DataRow:${m.body().values.map((v) => (v === null ? 'NULL' : v.toString('utf8'))).join(',')}`;
    case 'ErrorResponse':
    case 'NoticeResponse':
      return `${m.type}:${m.body().code}`;
    case 'ReadyForQuery':
      return `ReadyForQuery:${m.body().status}`;
    case 'ParameterStatus':
      return `ParameterStatus:${m.body().name}=${m.body().value}`;
    case 'Authentication':
      return `Authentication:${m.body().kind}`;
    default:
      return m.type;
  }
}
