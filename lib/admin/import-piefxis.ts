// Reading XEP-0227 (PIEFXIS) exports as a stream of users, for `parleyctl import`.
//
// What is read: a single file, or a directory of them (ejabberd's export_piefxis writes a main
// file with one <xi:include/> per host file; Prosody's mod_storage_xep0227 writes one
// <server-data> file per user). XInclude is followed for relative hrefs that stay inside the
// import's directory, as XEP-0227 §5 requires of an importing server.
//
// Memory: files are parsed as a stream with saxes and only one user's kept elements (SCRAM
// credentials, roster, subscription requests) are built as a tree; everything else of a user is
// counted while it streams past and dropped, so a 100 MB export costs memory in proportion to
// its largest user, not to the file.
//
// Safety: the input is untrusted. DOCTYPE is refused (no entity expansion, no external
// entities: saxes also refuses undefined entity references), encodings other than UTF-8 and
// invalid UTF-8 are refused, nesting depth and the kept size per user are bounded, and includes
// may not leave the directory of the import nor include a file twice (no loops).
//
// Every error is one line naming the file and, for XML problems, the position
// ("FILE:LINE:COL: what is wrong").
import { createReadStream } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { Element } from 'ltx';
import { SaxesParser, type SaxesTagNS } from 'saxes';
import { Jid } from '../jid.js';
import { saslprep, scramHashLength, type ScramCredential, type ScramHash } from '../sasl/scram.js';

export const NS_PIE = 'urn:xmpp:pie:0';
/** The namespace before XEP-0227 reached Draft; ejabberd still writes it. */
export const NS_PIE_OLD = 'http://www.xmpp.org/extensions/xep-0227.html#ns';
export const NS_PIE_SCRAM = 'urn:xmpp:pie:0#scram';
export const NS_PIE_MAM = 'urn:xmpp:pie:0#mam';
export const NS_XINCLUDE = 'http://www.w3.org/2001/XInclude';
const NS_ROSTER = 'jabber:iq:roster';
const NS_CLIENT = 'jabber:client';

const MAX_DEPTH = 128;
const MAX_INCLUDE_DEPTH = 8;
/** Characters of kept elements (credentials, roster, requests) per user. */
const MAX_KEPT_CHARS = 16 * 1024 * 1024;
const READ_CHUNK = 256 * 1024;

const MECHANISMS: Record<string, ScramHash> = { 'SCRAM-SHA-1': 'SHA-1', 'SCRAM-SHA-256': 'SHA-256', 'SCRAM-SHA-512': 'SHA-512' };
const SUBSCRIPTIONS = new Set(['none', 'to', 'from', 'both']);

/** An attribute value as quoted in a message: control characters escaped, long values cut. */
function shown(value: string): string {
  const cut = value.length > 80 ? `${value.slice(0, 80)}…` : value;
  return cut.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A problem with the input: the whole import stops, and nothing is written (see import.ts). */
export class ImportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImportError';
  }
}

export interface PieRosterItem {
  jid: string;
  name?: string;
  subscription: 'none' | 'to' | 'from' | 'both';
  ask?: 'subscribe';
  approved?: boolean;
  groups: string[];
}

export interface PieUser {
  /** Canonical domain of the host. */
  host: string;
  /** Prepared localpart. */
  name: string;
  /** "FILE:LINE:COL" of the <user> element, for messages. */
  where: string;
  /** Plaintext password (SASLprep-valid and not empty), when the export has one. */
  password?: string;
  /** SCRAM credentials by hash family, when the export has them. */
  scram: Partial<Record<ScramHash, ScramCredential>>;
  /** The roster, when the user has a jabber:iq:roster query (possibly empty). */
  roster?: PieRosterItem[];
  /** Unanswered inbound subscription requests: contact bare JID and the stanza to keep. */
  pendingIn: Array<{ contact: string; stanza: string }>;
}

/** What was seen but is not imported, by kind, for the summary. */
export type SkipCounts = Map<string, number>;

export interface ReadOptions {
  /** Hosts served here (canonical); a <host> for another one is an error. */
  hosts: readonly string[];
  /** Counts of what is not imported; filled while reading. */
  skipped?: SkipCounts;
}

function count(skipped: SkipCounts | undefined, what: string, n = 1): void {
  if (skipped) skipped.set(what, (skipped.get(what) ?? 0) + n);
}

/** Top-level files of an import: the file itself, or the .xml files of a directory in name order. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && e.name.toLowerCase().endsWith('.xml')) out.push(p);
    }
  };
  await walk(dir);
  return out;
}

type Root = 'server-data' | 'host' | 'user';

/** Where an included file is spliced in: its root must fit there. */
interface Context {
  /** Root elements allowed in this file. */
  roots: readonly Root[];
  /** The host a <user> root belongs to. */
  host?: string;
  depth: number;
}

interface Walk {
  /** The directory of the import, as named and as its real path; includes stay inside it. */
  base: string;
  realBase: string;
  /** Files already read (real paths), so that an include cannot repeat or loop. */
  seen: Set<string>;
  options: ReadOptions;
}

/**
 * All users of an export, in file order (an included file's users come after those of the
 * chunk that included it). Throws ImportError at the first problem.
 */
export async function* readPiefxis(input: string, options: ReadOptions): AsyncGenerator<PieUser> {
  let info;
  try {
    info = await stat(input);
  } catch (err) {
    throw new ImportError(`${input}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`);
  }
  const base = path.resolve(info.isDirectory() ? input : path.dirname(input));
  const walk: Walk = { base, realBase: await realpath(base), seen: new Set(), options };
  if (!info.isDirectory()) {
    yield* readFile(path.resolve(input), { roots: ['server-data', 'host'], depth: 0 }, walk);
    return;
  }
  const files = await listFiles(input);
  if (files.length === 0) throw new ImportError(`${input}: no .xml files in this directory`);
  // Files that others include are read from their include, in context. So that the includes
  // are known before the included files come up in name order, files are read by kind:
  // <server-data> files first, then <host> files no one included; a <user> file no one
  // included cannot be imported (which host would it belong to?).
  const kinds = new Map<string, Root>();
  for (const f of files) kinds.set(f, await rootOf(f));
  for (const kind of ['server-data', 'host', 'user'] as const) {
    for (const f of files) {
      if (kinds.get(f) !== kind || walk.seen.has(await realpath(f))) continue;
      if (kind === 'user') throw new ImportError(`${f}: a <user> file must be included from a <host> file (its host is unknown)`);
      yield* readFile(f, { roots: [kind], depth: 0 }, walk);
    }
  }
}

/** The root element kind of a file, from its first bytes. */
async function rootOf(file: string): Promise<Root> {
  let root: Root | undefined;
  let failure: string | undefined;
  const parser = new SaxesParser({ xmlns: true, position: true });
  parser.on('opentag', (tag) => {
    if ((tag.uri === NS_PIE || tag.uri === NS_PIE_OLD) && (tag.local === 'server-data' || tag.local === 'host' || tag.local === 'user')) {
      root = tag.local;
    } else {
      failure = `${file}:${parser.line}:${parser.column}: expected <server-data xmlns='${NS_PIE}'> (XEP-0227), found <${tag.name}>${tag.uri ? ` in namespace ${tag.uri}` : ''}`;
    }
    throw STOP;
  });
  parser.on('doctype', () => {
    failure = `${file}:${parser.line}:${parser.column}: DOCTYPE is not allowed (entities could expand or read other files)`;
    throw STOP;
  });
  parser.on('error', (err) => {
    failure = `${file}:${err.message}`;
    throw STOP;
  });
  const stream = createReadStream(file, { highWaterMark: 64 * 1024 });
  const decoder = new TextDecoder('utf-8', { fatal: true });
  try {
    for await (const chunk of stream) {
      parser.write(decoder.decode(chunk as Buffer, { stream: true }));
    }
  } catch (err) {
    if (err !== STOP) throw fileError(file, err);
  } finally {
    stream.destroy();
  }
  if (root) return root;
  throw new ImportError(failure ?? `${file}: no root element (empty file?)`);
}

const STOP = Symbol('stop');

function fileError(file: string, err: unknown): ImportError {
  if (err instanceof ImportError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e instanceof TypeError && /encoded data was not valid/i.test(e.message)) {
    return new ImportError(`${file}: not valid UTF-8`);
  }
  return new ImportError(`${file}: ${e.code ?? e.message}`);
}

/** One frame of the element stack. */
interface Frame {
  kind: 'root' | 'host' | 'user' | 'keep' | 'skip' | 'include';
  /** The start tag as written, for messages about what is inside it. */
  tag: string;
  /** For 'keep': the element being built. */
  el?: Element;
}

interface UserState {
  user: PieUser;
  kept: Array<{ el: Element; where: string }>;
  keptChars: number;
}

async function* readFile(file: string, ctx: Context, walk: Walk): AsyncGenerator<PieUser> {
  let real: string;
  try {
    real = await realpath(file);
  } catch (err) {
    throw fileError(file, err);
  }
  if (walk.seen.has(real)) throw new ImportError(`${file}: included more than once`);
  walk.seen.add(real);

  const { hosts, skipped } = walk.options;
  const parser = new SaxesParser({ xmlns: true, position: true });
  // Messages about an element point at its '<' (line, 1-based column). saxes reports a start tag
  // once it has read the name and the character after it; when that character is a newline the
  // column is lost, and the position after the name is given instead.
  let tagAt = '';
  parser.on('opentagstart', (tag) => {
    tagAt = parser.column >= tag.name.length + 2
      ? `${parser.line}:${parser.column - tag.name.length - 1}`
      : `${parser.line}:${parser.column}`;
  });
  const at = (): string => `${file}:${tagAt || `${parser.line}:${parser.column}`}`;
  const here = (): string => `${file}:${parser.line}:${parser.column}`;
  const fail = (message: string): never => {
    throw new ImportError(`${at()}: ${message}`);
  };

  const stack: Frame[] = [];
  const ready: PieUser[] = [];
  const includes: Array<{ href: string; where: string; ctx: Context }> = [];
  let host: string | undefined = ctx.host;
  let current: UserState | undefined;
  let sawRoot = false;

  const isPie = (uri: string): boolean => uri === NS_PIE || uri === NS_PIE_OLD;

  const startHost = (tag: SaxesTagNS): void => {
    const jid = tag.attributes.jid?.value;
    if (!jid) fail("<host> has no 'jid' attribute");
    const parsed = Jid.tryParse(jid);
    if (!parsed || !parsed.isDomain) fail(`<host jid='${shown(jid!)}'> is not a domain`);
    if (!hosts.includes(parsed!.domain)) {
      fail(`host '${parsed!.domain}' is not served here (hosts: ${hosts.join(', ')}); add it to hosts: in the config first`);
    }
    host = parsed!.domain;
  };

  const startUser = (tag: SaxesTagNS): void => {
    if (host === undefined) fail('<user> outside of a <host>');
    const raw = tag.attributes.name?.value;
    if (raw === undefined || raw === '') fail("<user> has no 'name' attribute");
    let name: string;
    try {
      name = Jid.of(raw!, host!).local;
    } catch (err) {
      fail(`<user name='${shown(raw!)}'>: not a valid username (${(err as Error).message})`);
    }
    const user: PieUser = { host: host!, name: name!, where: at(), scram: {}, pendingIn: [] };
    const password = tag.attributes.password?.value;
    if (password !== undefined && password !== '') {
      if (password.startsWith('scram:')) {
        user.scram['SHA-1'] = ejabberdScram(password, fail);
      } else {
        let prepared: string;
        try {
          prepared = saslprep(password);
        } catch (err) {
          fail(`<user name='${shown(raw!)}'>: the password is not allowed by SASLprep (${(err as Error).message})`);
        }
        if (prepared! === '') fail(`<user name='${shown(raw!)}'>: the password is empty after SASLprep`);
        user.password = password;
      }
    }
    current = { user, kept: [], keptChars: 0 };
  };

  /** Decides what to do with a direct child of <user>. */
  const userChild = (tag: SaxesTagNS): Frame['kind'] => {
    const uri = tag.uri;
    const local = tag.local;
    if (uri === NS_PIE_SCRAM && local === 'scram-credentials') return 'keep';
    if (uri === NS_ROSTER && local === 'query') return 'keep';
    if (uri === NS_CLIENT && local === 'presence') {
      if (tag.attributes.type?.value === 'subscribe') return 'keep';
      count(skipped, 'other presence stanzas');
      return 'skip';
    }
    if (uri === NS_XINCLUDE && local === 'include') fail('<include> inside a <user> is not supported; include whole <user> or <host> elements');
    if (uri === 'vcard-temp' && local === 'vCard') count(skipped, 'vCards (no vcard plugin in this server yet)');
    else if (local === 'offline-messages') count(skipped, 'users with offline messages');
    else if (uri === NS_PIE_MAM && local === 'archive') count(skipped, 'message archives (MAM)');
    else if (uri === 'jabber:iq:private' && local === 'query') count(skipped, 'private XML stores');
    else if (uri === 'jabber:iq:privacy' && local === 'query') count(skipped, 'privacy lists');
    else if (uri.startsWith('http://jabber.org/protocol/pubsub') && local === 'pubsub') count(skipped, 'PEP node sets');
    else count(skipped, `other elements (${local}${uri ? ` in ${uri}` : ''})`);
    return 'skip';
  };

  const keepChars = (n: number): void => {
    if (!current) return;
    current.keptChars += n;
    if (current.keptChars > MAX_KEPT_CHARS) fail(`user ${current.user.name}@${current.user.host}: roster and credentials larger than ${MAX_KEPT_CHARS} characters`);
  };

  parser.on('doctype', () => {
    throw new ImportError(`${here()}: DOCTYPE is not allowed (entities could expand or read other files)`);
  });
  parser.on('xmldecl', (decl) => {
    if (decl.encoding !== undefined && !/^utf-?8$/i.test(decl.encoding)) {
      throw new ImportError(`${here()}: encoding '${decl.encoding}' is not supported; convert the file to UTF-8`);
    }
  });
  parser.on('error', (err) => {
    // saxes says what is wrong; the innermost open element says where in the export it is.
    const open = stack[stack.length - 1];
    throw new ImportError(`${file}:${err.message.replace(/\.$/, '')}${open ? ` (inside ${open.tag})` : ''}`);
  });

  parser.on('opentag', (tag) => {
    if (stack.length >= MAX_DEPTH) fail(`elements nested deeper than ${MAX_DEPTH}`);
    const parent = stack[stack.length - 1];
    let frame: Omit<Frame, 'tag'>;
    if (!parent) {
      // The root element of this file.
      sawRoot = true;
      const root = isPie(tag.uri) ? tag.local : undefined;
      if (root !== 'server-data' && root !== 'host' && root !== 'user') {
        fail(`expected <server-data xmlns='${NS_PIE}'> (XEP-0227), found <${tag.name}>${tag.uri ? ` in namespace ${tag.uri}` : ''}`);
      }
      if (!ctx.roots.includes(root as Root)) fail(`<${root}> cannot stand here (expected ${ctx.roots.map((r) => `<${r}>`).join(' or ')})`);
      if (root === 'host') startHost(tag);
      if (root === 'user') startUser(tag);
      frame = { kind: root === 'host' ? 'host' : root === 'user' ? 'user' : 'root' };
    } else if (parent.kind === 'root' || parent.kind === 'host') {
      if (tag.uri === NS_XINCLUDE && tag.local === 'include') {
        const href = tag.attributes.href?.value;
        if (!href) fail("<include> has no 'href' attribute");
        if (tag.attributes.parse && tag.attributes.parse.value !== 'xml') fail(`<include parse='${tag.attributes.parse.value}'> is not supported`);
        if (tag.attributes.xpointer) fail('<include xpointer=...> is not supported');
        if (ctx.depth + 1 > MAX_INCLUDE_DEPTH) fail(`includes nested deeper than ${MAX_INCLUDE_DEPTH}`);
        const inner: Context = parent.kind === 'root'
          ? { roots: ['host'], depth: ctx.depth + 1 }
          : { roots: ['user'], host, depth: ctx.depth + 1 };
        includes.push({ href: href!, where: at(), ctx: inner });
        frame = { kind: 'include' };
      } else if (parent.kind === 'root' && isPie(tag.uri) && tag.local === 'host') {
        startHost(tag);
        frame = { kind: 'host' };
      } else if (parent.kind === 'host' && isPie(tag.uri) && tag.local === 'user') {
        startUser(tag);
        frame = { kind: 'user' };
      } else {
        count(skipped, `other elements (${tag.local}${tag.uri ? ` in ${tag.uri}` : ''})`);
        frame = { kind: 'skip' };
      }
    } else if (parent.kind === 'user') {
      const kind = userChild(tag);
      frame = { kind };
      if (kind === 'keep') {
        frame.el = toElement(tag);
        current!.kept.push({ el: frame.el, where: at() });
        keepChars(tag.name.length + 8);
      }
    } else if (parent.kind === 'keep') {
      const el = toElement(tag);
      parent.el!.cnode(el);
      keepChars(tag.name.length + 8 + Object.values(tag.attributes).reduce((n, a) => n + a.value.length, 0));
      frame = { kind: 'keep', el };
    } else {
      frame = { kind: 'skip' };
    }
    stack.push({ ...frame, tag: describe(tag) });
  });

  parser.on('text', (text) => {
    const top = stack[stack.length - 1];
    if (top?.kind === 'keep') {
      keepChars(text.length);
      top.el!.t(text);
    }
  });

  parser.on('closetag', () => {
    const frame = stack.pop();
    if (frame?.kind === 'user') {
      ready.push(finishUser(current!, skipped));
      current = undefined;
    } else if (frame?.kind === 'host' && ctx.host === undefined) {
      host = undefined;
    }
  });

  const stream = createReadStream(file, { highWaterMark: READ_CHUNK });
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const decode = (chunk: Buffer): string => {
    try {
      return decoder.decode(chunk, { stream: true });
    } catch {
      // The parser has consumed everything before this chunk, so its line plus the newlines of
      // the chunk's valid prefix is the line of the bad byte.
      const valid = validPrefix(chunk);
      const line = parser.line + (valid.match(/\n/g)?.length ?? 0);
      throw new ImportError(`${file}:${line}: not valid UTF-8`);
    }
  };
  try {
    for await (const chunk of stream) {
      parser.write(decode(chunk as Buffer));
      // Users completed by this chunk first, then the files its includes named: the consumer
      // pulls them one by one, so reading pauses while it is busy.
      yield* ready.splice(0);
      for (const inc of includes.splice(0)) yield* readFile(await resolveInclude(inc.href, inc.where, file, walk), inc.ctx, walk);
    }
    parser.write(decoder.decode());
    parser.close();
  } catch (err) {
    throw fileError(file, err);
  } finally {
    stream.destroy();
  }
  if (!sawRoot) throw new ImportError(`${file}: no root element (empty file?)`);
  yield* ready.splice(0);
  for (const inc of includes.splice(0)) yield* readFile(await resolveInclude(inc.href, inc.where, file, walk), inc.ctx, walk);
}

/** The longest prefix of `chunk` that decodes as UTF-8 (a sequence cut at the end counts as valid). */
function validPrefix(chunk: Buffer): string {
  const decodes = (n: number): boolean => {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(chunk.subarray(0, n), { stream: true });
      return true;
    } catch {
      return false;
    }
  };
  let lo = 0;
  let hi = chunk.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (decodes(mid)) lo = mid;
    else hi = mid - 1;
  }
  return new TextDecoder('utf-8').decode(chunk.subarray(0, lo), { stream: true });
}

/** The file an include names: relative, and inside the directory of the import. */
async function resolveInclude(href: string, where: string, from: string, walk: Walk): Promise<string> {
  if (/^[a-z][a-z0-9+.-]*:/i.test(href) || path.isAbsolute(href)) {
    throw new ImportError(`${where}: <include href='${shown(href)}'>: only relative paths are followed`);
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(href);
  } catch {
    throw new ImportError(`${where}: <include href='${shown(href)}'>: malformed URI`);
  }
  const target = path.resolve(path.dirname(from), decoded);
  const outside = (p: string, base: string): boolean => {
    const rel = path.relative(base, p);
    return rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel);
  };
  // Checked on the name first, then on the real path: a symbolic link may not lead out either.
  const escape = (): never => {
    throw new ImportError(`${where}: <include href='${shown(href)}'> leaves the directory of the import`);
  };
  if (outside(target, walk.base)) escape();
  let real: string;
  try {
    real = await realpath(target);
  } catch {
    throw new ImportError(`${where}: <include href='${shown(href)}'>: ${target} does not exist`);
  }
  if (outside(real, walk.realBase)) escape();
  return target;
}

/** `<user name='x'>`: the start tag with the attribute that identifies it, if any. */
function describe(tag: SaxesTagNS): string {
  const key = tag.attributes.name ?? tag.attributes.jid ?? tag.attributes.href;
  return key ? `<${tag.name} ${key.name}='${shown(key.value)}'>` : `<${tag.name}>`;
}

function toElement(tag: SaxesTagNS): Element {
  const attrs: Record<string, string> = {};
  for (const a of Object.values(tag.attributes)) {
    // Namespace declarations are not data; the element's own namespace is set below.
    if (a.prefix === 'xmlns' || a.name === 'xmlns') continue;
    attrs[a.name] = a.value;
  }
  const el = new Element(tag.local, attrs);
  if (tag.uri) el.attrs.xmlns = tag.uri;
  return el;
}

/** ejabberd's `password='scram:StoredKey,ServerKey,Salt,IterationCount'` (SCRAM-SHA-1, base64). */
function ejabberdScram(value: string, fail: (m: string) => never): ScramCredential {
  const parts = value.slice('scram:'.length).split(',');
  if (parts.length !== 4) fail("password 'scram:…' is not StoredKey,ServerKey,Salt,IterationCount");
  const [storedKey, serverKey, salt, iter] = parts as [string, string, string, string];
  return checkCredential('SHA-1', { salt, iterations: parseIterations(iter, fail), storedKey, serverKey }, fail);
}

function parseIterations(text: string, fail: (m: string) => never): number {
  const t = text.trim();
  if (!/^[1-9][0-9]{0,9}$/.test(t) || Number(t) > 0x7fffffff) fail(`iteration count '${t}' is not a positive integer`);
  return Number(t);
}

function isBase64(s: string): boolean {
  return s.length > 0 && s.length % 4 === 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(s);
}

function checkCredential(hash: ScramHash, c: ScramCredential, fail: (m: string) => never): ScramCredential {
  const cred = { salt: c.salt.trim(), iterations: c.iterations, storedKey: c.storedKey.trim(), serverKey: c.serverKey.trim() };
  const length = scramHashLength(hash);
  if (!isBase64(cred.salt)) fail('the SCRAM salt is not base64');
  for (const [what, v] of [['stored-key', cred.storedKey], ['server-key', cred.serverKey]] as const) {
    if (!isBase64(v) || Buffer.from(v, 'base64').length !== length) fail(`the SCRAM ${what} is not ${length} bytes of base64 (SCRAM-${hash})`);
  }
  return cred;
}

/** Turns the kept elements of a user into credentials, roster and requests; checks them. */
function finishUser(state: UserState, skipped: SkipCounts | undefined): PieUser {
  const { user } = state;
  for (const { el, where } of state.kept) {
    const fail = (m: string): never => {
      throw new ImportError(`${where}: ${m}`);
    };
    if (el.name === 'scram-credentials') {
      const mechanism = el.attrs.mechanism as string | undefined;
      const hash = mechanism ? MECHANISMS[mechanism.replace(/-PLUS$/, '')] : undefined;
      if (!hash) {
        count(skipped, `SCRAM credentials of unsupported mechanisms${mechanism ? ` (${mechanism})` : ''}`);
        continue;
      }
      const text = (name: string): string => {
        const children = el.getChildren(name);
        if (children.length !== 1) fail(`<scram-credentials mechanism='${mechanism}'> needs exactly one <${name}>`);
        return children[0]!.getText();
      };
      if (user.scram[hash] && !user.password) fail(`two sets of ${mechanism} credentials`);
      user.scram[hash] = checkCredential(hash, {
        iterations: parseIterations(text('iter-count'), fail),
        salt: text('salt'),
        storedKey: text('stored-key'),
        serverKey: text('server-key'),
      }, fail);
    } else if (el.name === 'query') {
      user.roster = rosterItems(el, `${user.name}@${user.host}`, skipped);
    } else if (el.name === 'presence') {
      const from = Jid.tryParse(el.attrs.from as string | undefined);
      const owner = `${user.name}@${user.host}`;
      if (!from || from.bare === owner) {
        count(skipped, 'subscription requests without a valid sender');
        continue;
      }
      // Kept the way the presence plugin keeps a live request: a bare-JID stanza to redeliver.
      const stanza = new Element('presence', { from: from.bare, to: owner, type: 'subscribe' });
      for (const child of el.children) if (typeof child !== 'string') stanza.cnode(child);
      user.pendingIn.push({ contact: from.bare, stanza: stanza.toString() });
    }
  }
  return user;
}

function rosterItems(query: Element, owner: string, skipped: SkipCounts | undefined): PieRosterItem[] {
  const items = new Map<string, PieRosterItem>();
  for (const el of query.getChildren('item')) {
    const jid = Jid.tryParse(el.attrs.jid as string | undefined);
    // Subscriptions are between bare JIDs (RFC 6121 §3.1.1): anything else could never work.
    if (!jid || !jid.isBare || jid.bare === owner) {
      count(skipped, 'roster items with an invalid or own JID');
      continue;
    }
    const sub = (el.attrs.subscription as string | undefined) ?? 'none';
    if (sub === 'remove') continue;
    const item: PieRosterItem = {
      jid: jid.bare,
      subscription: (SUBSCRIPTIONS.has(sub) ? sub : 'none') as PieRosterItem['subscription'],
      groups: [...new Set(el.getChildren('group').map((g) => g.getText()).filter((g) => g !== ''))],
    };
    const name = el.attrs.name as string | undefined;
    if (name !== undefined && name !== '') item.name = name;
    if (el.attrs.ask === 'subscribe') item.ask = 'subscribe';
    if (el.attrs.approved === 'true' || el.attrs.approved === '1') item.approved = true;
    items.set(item.jid, item);
  }
  return [...items.values()];
}
