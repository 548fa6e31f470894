// The storage contract against the embedded driver, on a file and in memory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EmbeddedDriver } from '../../lib/storage/embedded.js';
import { storageContract } from '../helpers/storage-contract.js';

const dir = mkdtempSync(join(tmpdir(), 'parley-storage-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

storageContract(t, 'embedded (file)', async () => EmbeddedDriver.open({ path: join(dir, `db-${++n}.db`) }));
storageContract(t, 'embedded (:memory:)', async () => EmbeddedDriver.open({ path: ':memory:' }));
