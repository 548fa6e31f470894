// HTTP File Upload (issue 8): PUT throughput through the server's own HTTP listener, and the
// time the thumbnail of an image adds to its PUT.
// - Throughput: for each size of --upload-sizes (MiB), --upload-repeat PUTs of random bytes
//   (application/octet-stream), one after the other on fresh connections. Each needs a slot,
//   asked for over XMPP first and not timed: the figure is the HTTP path (token check, streaming
//   to a temporary file while hashing with SHA-256, rename to the hash).
// - Thumbnails: JPEG and PNG images of 1 and 12 megapixels made with sharp. Parley answers a PUT
//   only once the image is described and its thumbnail made, so the PUT of an image minus the
//   PUT of random bytes of the same length (medians) is the thumbnail's cost.
// Every body is unique: the store keeps one file per SHA-256, and a repeated body would skip
// the write and the thumbnail. The baseline is sink-server.ts, a plain Node HTTP server that
// streams the body to a file, given exactly the same PUTs. Plain HTTP on both sides.
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import sharp from 'sharp';
import { XmppClient } from '../conn.js';
import type { Options } from '../options.js';
import { freePort, type NodeChild } from '../procs.js';
import type { Row, ScenarioResult } from '../report.js';
import { HOST, catalogHas, startParley, startSink, type BenchEnv, type Modules } from '../setup.js';
import { within } from '../stats.js';
import { attr } from '../xml-split.js';

const MiB = 1024 * 1024;
const NS_UPLOAD = 'urn:xmpp:http:upload:0';

interface Payload {
  label: string;
  type: string;
  bodies: Buffer[];
}

/** A picture with gradients, edges and some noise, so it compresses like a photo, not a flat fill. */
async function makeImages(format: 'jpeg' | 'png', width: number, height: number, count: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let k = 0; k < count; k++) {
    const raw = Buffer.allocUnsafe(width * height * 3);
    // A small LCG: deterministic noise without calling into crypto 12 million times.
    let seed = 0x9e3779b9 ^ (k * 7919);
    let i = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
        const noise = (seed >>> 24) & 15;
        raw[i++] = ((x * 255) / width + noise) & 255;
        raw[i++] = ((y * 255) / height + noise) & 255;
        raw[i++] = (((x >> 6) + (y >> 6) + k) & 1 ? 200 : 40) + noise;
      }
    }
    const img = sharp(raw, { raw: { width, height, channels: 3 } });
    out.push(await (format === 'jpeg' ? img.jpeg({ quality: 85 }) : img.png()).toBuffer());
  }
  return out;
}

/** Random bytes of `length`, `count` times different: one buffer whose head changes per use. */
function randomBodies(length: number, count: number): Buffer[] {
  const base = randomBytes(length);
  return Array.from({ length: count }, (_, k) => {
    // Views of one buffer would share the head; each body gets its own head and shares the rest.
    const head = randomBytes(Math.min(32, length));
    return k === 0 ? base : Buffer.concat([head, base.subarray(head.length)]);
  });
}

function put(url: string, body: Buffer, type: string): Promise<number> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request({
      host: u.hostname, port: u.port, method: 'PUT', path: u.pathname + u.search, agent: false,
      headers: { 'Content-Length': String(body.length), 'Content-Type': type },
    }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode !== 201) reject(new Error(`PUT ${u.pathname} answered ${res.statusCode}`));
        else resolve(performance.now() - t0);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface Timed {
  /** PUT times in ms, in order. */
  ms: number[];
  bytes: number;
  serverCpuMs: number;
}

/** PUTs every body of the payload through `urlFor`, one at a time, and reads the server's CPU. */
async function putAll(child: NodeChild, p: Payload, urlFor: (p: Payload, body: Buffer, k: number) => Promise<string>): Promise<Timed> {
  const ms: number[] = [];
  let bytes = 0;
  // Read around the whole series: /proc counts in 10 ms ticks, too coarse for one small PUT.
  // The slot requests fall inside it; next to megabytes of body they are noise.
  const cpu0 = child.cpuMs();
  for (let k = 0; k < p.bodies.length; k++) {
    const body = p.bodies[k]!;
    const url = await urlFor(p, body, k);
    ms.push(await put(url, body, p.type));
    bytes += body.length;
  }
  return { ms, bytes, serverCpuMs: child.cpuMs() - cpu0 };
}

const unescapeAttr = (v: string) => v.replace(/&apos;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

export async function upload(env: BenchEnv, o: Options, roster: boolean): Promise<ScenarioResult> {
  if (!catalogHas('http_upload')) return { name: 'upload', status: 'skipped', note: 'http_upload module not available', rows: [], details: {} };
  const r = o.uploadRepeat;

  env.log(`upload: making the bodies (${o.uploadSizes.join(', ')} MiB × ${r}, JPEG and PNG of 1 and 12 MP × ${r})…`);
  const sized: Payload[] = o.uploadSizes.map((mib) => ({ label: `${mib} MiB`, type: 'application/octet-stream', bodies: randomBodies(Math.round(mib * MiB), r) }));
  const images: Array<{ image: Payload; plain: Payload }> = [];
  for (const format of ['jpeg', 'png'] as const) {
    for (const [mp, w, h] of [[1, 1152, 864], [12, 4000, 3000]] as const) {
      const bodies = await makeImages(format, w, h, r);
      const label = `${format.toUpperCase()} ${mp} MP`;
      images.push({
        image: { label, type: `image/${format}`, bodies },
        // Random bytes of each image's length: the same write and hash, no image to describe.
        plain: { label: `${label} (same size, not an image)`, type: 'application/octet-stream', bodies: bodies.map((b) => randomBodies(b.length, 1)[0]!) },
      });
    }
  }
  const all = [...sized, ...images.flatMap((i) => [i.image, i.plain])];
  const largest = Math.max(...all.flatMap((p) => p.bodies.map((b) => b.length)));
  // One throw-away PUT first on each side: the first request pays for lazy set-up (the upload
  // directory, JIT of the handler) that is not part of any upload.
  const warm: Payload = { label: 'warm-up', type: 'application/octet-stream', bodies: randomBodies(256 * 1024, 1) };

  const httpPort = await freePort();
  const shipped = (env.modules.http_upload && typeof env.modules.http_upload === 'object' ? env.modules.http_upload : {}) as Record<string, unknown>;
  // Quotas off and the size limit raised so the run's volume fits; thumbnails as shipped.
  const modules: Modules = {
    ...env.modules,
    http_upload: {
      ...shipped,
      base_url: `http://127.0.0.1:${httpPort}/upload/{host}/`,
      max_size: Math.ceil(largest / MiB) * MiB + MiB,
      quota_daily: 0,
      quota_total: 0,
    },
  };
  const limitMs = 120_000 + (all.reduce((n, p) => n + p.bodies.reduce((m, b) => m + b.length, 0), 0) / MiB) * 1000;

  env.log('upload: PUTs through Parley…');
  const server = await startParley(env, modules, httpPort);
  const parley = new Map<string, Timed>();
  let client: XmppClient | undefined;
  try {
    await within(limitMs, 'uploads (parley)', (async () => {
      const c = await XmppClient.login({ port: server.port, host: HOST, user: env.users[0]!, password: env.password, keys: env.keys, roster, presence: false });
      client = c;
      let n = 0;
      const slot = async (p: Payload, body: Buffer) => {
        const id = `slot${++n}`;
        const ext = p.type === 'image/jpeg' ? 'jpg' : p.type === 'image/png' ? 'png' : 'bin';
        c.send(`<iq type='get' to='upload.${HOST}' id='${id}'><request xmlns='${NS_UPLOAD}' filename='f${n}.${ext}' size='${body.length}' content-type='${p.type}'/></iq>`);
        const answer = await c.next((x) => attr(x, 'id') === id, `upload slot ${id}`);
        const m = /<put\b[^>]*\burl=(['"])(.*?)\1/.exec(answer);
        if (attr(answer, 'type') !== 'result' || !m) throw new Error(`no upload slot: ${answer.slice(0, 300)}`);
        return unescapeAttr(m[2]!);
      };
      await putAll(server, warm, slot);
      for (const p of all) parley.set(p.label, await putAll(server, p, slot));
    })());
  } finally {
    client?.destroy();
    await server.stop();
  }

  env.log('upload: the same PUTs through the file sink…');
  const sinkDir = path.join(env.dir, 'sink');
  mkdirSync(sinkDir, { recursive: true });
  const sink = await startSink(env, sinkDir);
  const base = new Map<string, Timed>();
  try {
    await within(limitMs, 'uploads (sink)', (async () => {
      const url = async () => `http://127.0.0.1:${sink.port}/put`;
      await putAll(sink, warm, url);
      for (const p of all) base.set(p.label, await putAll(sink, p, url));
    })());
  } finally {
    await sink.stop();
  }

  const mbps = (t: Timed) => t.bytes / 1e6 / (t.ms.reduce((a, b) => a + b, 0) / 1000);
  const rows: Row[] = [];
  for (const p of sized) {
    const a = parley.get(p.label)!;
    const b = base.get(p.label)!;
    rows.push(
      { metric: `PUT ${p.label} throughput`, unit: 'MB/s', parley: mbps(a), baseline: mbps(b) },
      { metric: `PUT ${p.label} server CPU per MiB`, unit: 'ms', parley: a.serverCpuMs / (a.bytes / MiB), baseline: b.serverCpuMs / (b.bytes / MiB) },
    );
  }
  const thumbs: Record<string, unknown> = {};
  for (const { image, plain } of images) {
    const pi = median(parley.get(image.label)!.ms);
    const pp = median(parley.get(plain.label)!.ms);
    const bi = median(base.get(image.label)!.ms);
    const size = median(image.bodies.map((b) => b.length));
    rows.push(
      { metric: `PUT ${image.label} image (${(size / MiB).toFixed(1)} MiB)`, unit: 'ms', parley: pi, baseline: bi },
      { metric: `thumbnail ${image.label} (image − same-size PUT)`, unit: 'ms', parley: pi - pp },
    );
    thumbs[image.label] = { bytes: image.bodies.map((b) => b.length), parleyImageMs: parley.get(image.label)!.ms, parleyPlainMs: parley.get(plain.label)!.ms, sinkImageMs: base.get(image.label)!.ms, sinkPlainMs: base.get(plain.label)!.ms };
  }
  return {
    name: 'upload',
    status: 'ok',
    note: [
      `${r} PUT(s) per size and image, one at a time over plain HTTP on loopback, slot requests not timed; thumbnail = median image PUT − median PUT of random bytes of the same length`,
      server.logNote(),
    ].filter(Boolean).join('; '),
    rows,
    details: {
      repeat: r,
      sizes: Object.fromEntries(sized.map((p) => [p.label, { parley: parley.get(p.label), sink: base.get(p.label) }])),
      thumbnails: thumbs,
    },
  };
}
