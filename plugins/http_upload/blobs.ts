// Content-addressed file storage: each distinct content is stored once, named by its SHA-256,
// with a reference count (WhatsApp's asset service keeps one blob per hash). An upload is
// streamed to a temporary file while it is hashed, then renamed to its hash, or dropped when that
// content is already stored. Paths are built from hex digests and random names only, never from
// anything a client sent, so nothing can point outside the directory.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, stat, unlink } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import type { Logger } from '../../lib/log.js';
import type { MapStore } from '../../lib/storage/types.js';
import type { ImageInfo } from './thumbnails.js';

const HASH_RE = /^[0-9a-f]{64}$/;

/** What is known about one stored content; kept in the `upload_blobs` map under its hash. */
export type BlobRecord = {
  /** Upload records that point at this blob. */
  refs: number;
  size: number;
  /** Image metadata and thumbnail, for the four formats we preview. */
  image: {
    width: number;
    height: number;
    /** PNG, base64. */
    thumb: string;
    thumbWidth: number;
    thumbHeight: number;
  } | null;
};

export type Received =
  | { ok: true; tmp: string; hash: string; size: number }
  | { ok: false; status: 400 | 413; reason: string };

function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}

export class BlobStore {
  readonly tmpDir: string;
  /** Per-hash critical sections: a blob's file and its record change together. */
  private readonly locks = new Map<string, Promise<void>>();

  constructor(
    readonly dir: string,
    private readonly records: MapStore<BlobRecord>,
    /** The store owner the records are kept under (the host). */
    private readonly owner: string,
    private readonly log: Logger,
  ) {
    this.tmpDir = path.join(dir, 'tmp');
  }

  async init(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
  }

  /** The file of a blob; throws on anything but a SHA-256 hex digest. */
  path(hash: string): string {
    if (!HASH_RE.test(hash)) throw new Error(`not a blob hash: ${JSON.stringify(hash)}`);
    return path.join(this.dir, hash);
  }

  get(hash: string): Promise<BlobRecord | undefined> {
    return this.records.get(this.owner, hash);
  }

  private async withLock<T>(hash: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(hash) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.locks.set(hash, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(hash) === tail) this.locks.delete(hash);
    }
  }

  /**
   * Streams a request body to a temporary file, hashing it on the way. The body must be exactly
   * `expected` bytes: one byte more stops the reading at once (413; the caller closes the
   * connection), an early end or an aborted request gives 400. The temporary file is removed
   * on every failure.
   */
  receive(req: IncomingMessage, expected: number): Promise<Received> {
    const tmp = path.join(this.tmpDir, `${randomBytes(12).toString('hex')}.part`);
    const out = createWriteStream(tmp, { flags: 'wx', mode: 0o600 });
    const hash = createHash('sha256');
    let size = 0;
    return new Promise<Received>((resolve, reject) => {
      let settled = false;
      const detach = () => {
        req.off('data', onData);
        req.off('end', onEnd);
        req.off('close', onClose);
        req.off('error', onClose);
      };
      const discard = (result: Received | Error) => {
        if (settled) return;
        settled = true;
        detach();
        // Unlink once the stream has closed its descriptor (it may still be opening).
        out.once('close', () => {
          unlink(tmp).catch(ignoreMissing).catch((err: unknown) => this.log.warn('temporary upload not removed', { err }));
          if (result instanceof Error) reject(result);
          else resolve(result);
        });
        out.destroy();
      };
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size > expected) {
          // Stop pulling: the rest of the body is never read; the 413 closes the connection.
          req.pause();
          discard({ ok: false, status: 413, reason: `the body is larger than the ${expected} bytes of the slot` });
          return;
        }
        hash.update(chunk);
        if (!out.write(chunk)) {
          req.pause();
          out.once('drain', () => {
            if (!settled) req.resume();
          });
        }
      };
      const onEnd = () => {
        if (size !== expected) {
          discard({ ok: false, status: 400, reason: `the body has ${size} bytes, the slot ${expected}` });
          return;
        }
        detach();
        out.end();
        out.once('close', () => {
          if (settled) return;
          settled = true;
          resolve({ ok: true, tmp, hash: hash.digest('hex'), size });
        });
      };
      const onClose = () => {
        if (!req.complete) discard({ ok: false, status: 400, reason: 'the upload was interrupted' });
      };
      out.on('error', (err) => discard(err));
      req.on('data', onData);
      req.on('end', onEnd);
      req.on('close', onClose);
      req.on('error', onClose);
    });
  }

  /**
   * Adds a reference to the content in `tmp` (which is moved or removed). `describe` makes the
   * image metadata; it runs only for content not stored yet, and before the lock, since
   * decoding is the slow part.
   */
  async commit(tmp: string, hash: string, size: number, describe: (file: string) => Promise<ImageInfo | undefined>): Promise<BlobRecord> {
    const target = this.path(hash);
    const toImage = (info: ImageInfo | undefined): BlobRecord['image'] => info
      ? { width: info.width, height: info.height, thumb: info.thumbnail.data, thumbWidth: info.thumbnail.width, thumbHeight: info.thumbnail.height }
      : null;
    let image: BlobRecord['image'] | undefined;
    if (!(await this.get(hash))) image = toImage(await describe(tmp));
    try {
      return await this.withLock(hash, async () => {
        const existing = await this.get(hash);
        const present = existing !== undefined && (await stat(target).then(() => true, () => false));
        if (existing && present) {
          await unlink(tmp);
          const next: BlobRecord = { ...existing, refs: existing.refs + 1 };
          await this.records.set(this.owner, hash, next);
          return next;
        }
        // A new blob, or a record whose file went missing: this upload supplies the content.
        if (image === undefined) image = existing?.image ?? toImage(await describe(tmp));
        await rename(tmp, target);
        const record: BlobRecord = { refs: (existing?.refs ?? 0) + 1, size, image };
        await this.records.set(this.owner, hash, record);
        return record;
      });
    } catch (err) {
      await unlink(tmp).catch(ignoreMissing);
      throw err;
    }
  }

  /** Drops one reference; the last one removes the file. */
  release(hash: string): Promise<void> {
    return this.withLock(hash, async () => {
      const record = await this.get(hash);
      if (!record) return;
      if (record.refs > 1) {
        await this.records.set(this.owner, hash, { ...record, refs: record.refs - 1 });
        return;
      }
      // Record first: a crash in between leaves an orphan file, which sweep() removes, never
      // a record without its file.
      await this.records.delete(this.owner, hash);
      await unlink(this.path(hash)).catch(ignoreMissing);
    });
  }

  /**
   * Removes what a crash can leave behind: temporary files older than `tmpMaxAgeMs`, and blob
   * files without a record (the process died between writing the file and its record, or
   * between deleting the record and the file).
   */
  async sweep(tmpMaxAgeMs: number, now = Date.now()): Promise<{ tmp: number; orphans: number }> {
    let tmpRemoved = 0;
    for (const name of await readdir(this.tmpDir)) {
      const file = path.join(this.tmpDir, name);
      const st = await stat(file).catch(() => undefined);
      if (st?.isFile() && now - st.mtimeMs > tmpMaxAgeMs) {
        await unlink(file).catch(ignoreMissing);
        tmpRemoved++;
      }
    }
    const hashes = (await readdir(this.dir)).filter((n) => HASH_RE.test(n));
    let orphans = 0;
    for (let i = 0; i < hashes.length; i += 500) {
      const batch = hashes.slice(i, i + 500);
      const known = await this.records.getMany(this.owner, batch);
      for (const hash of batch) {
        if (known.has(hash)) continue;
        // Checked again under the lock: a commit may have written the record meanwhile.
        await this.withLock(hash, async () => {
          if (await this.get(hash)) return;
          await unlink(this.path(hash)).catch(ignoreMissing);
          orphans++;
        });
      }
    }
    return { tmp: tmpRemoved, orphans };
  }
}
