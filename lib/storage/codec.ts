// Input checks and value encoding shared by every storage driver, so each driver enforces the
// same contract (test/helpers/storage-contract.ts) with the same messages.
import { StorageError, type ArchiveQuery } from './types.js';

export function encode(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new StorageError('invalid', `value is not JSON-serialisable: ${(err as Error).message}`);
  }
  if (typeof text !== 'string') throw new StorageError('invalid', 'value is not JSON-serialisable');
  return text;
}

export function checkName(what: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value === '') {
    throw new StorageError('invalid', `${what} must be a non-empty string`);
  }
}

export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') throw new StorageError('invalid', 'key must be a string');
}

export function checkTime(what: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new StorageError('invalid', `${what} must be an integer number of milliseconds`);
  }
}

export function checkQuery(q: ArchiveQuery): void {
  if (typeof q !== 'object' || q === null) throw new StorageError('invalid', 'query must be an object');
  if (q.start !== undefined && (typeof q.start !== 'number' || Number.isNaN(q.start))) {
    throw new StorageError('invalid', 'start must be a number');
  }
  if (q.end !== undefined && (typeof q.end !== 'number' || Number.isNaN(q.end))) {
    throw new StorageError('invalid', 'end must be a number');
  }
  if (q.with !== undefined && typeof q.with !== 'string') throw new StorageError('invalid', 'with must be a string');
  if (q.ids !== undefined && (!Array.isArray(q.ids) || q.ids.some((id) => typeof id !== 'string'))) {
    throw new StorageError('invalid', 'ids must be an array of strings');
  }
  if (q.after !== undefined) checkName('after', q.after);
  if (q.before !== undefined) checkName('before', q.before);
}

/** Parses a stored value; a missing or corrupt one is an I/O error, never a crash. */
export function decode<V>(text: string | undefined): V {
  if (typeof text !== 'string') throw new StorageError('io', 'stored document has no value');
  try {
    return JSON.parse(text) as V;
  } catch (err) {
    throw new StorageError('io', 'stored value is not valid JSON', { cause: err });
  }
}
