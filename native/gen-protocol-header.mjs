// Writes native/pg-protocol.h from the protocol table (src/protocol/meanings.ts, compiled by
// `npm run build`): run it after changing the table. A unit test fails while they differ.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const { protocolHeader } = await import(join(here, '..', 'dist', 'src', 'protocol', 'c-header.js'));
writeFileSync(join(here, 'pg-protocol.h'), protocolHeader());
