// Reads the YAML config file, validates it against the core schema and keeps the YAML document so
// that any later error (core or plugin options) can name the file, line and column of the value.
//
// YAML is read as YAML 1.2 (core schema: `yes` is a string, `0777` a decimal) whatever the file's
// %YAML directive says, and defensively: duplicate keys, tags other than the standard scalar and
// collection ones, collection keys and alias expansion beyond MAX_ALIAS_COUNT (a "billion laughs"
// file) are refused with CONFIG_SYNTAX.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, visit,
  type Document, type Node, type ParsedNode,
} from 'yaml';
import { BootError } from '../errors.js';
import { prepDomain } from '../jid.js';
import { coreSchema, type CoreConfig } from './core.js';
import type { ParseContext, Path } from './schema.js';

/** Alias expansions allowed while building the config value (yaml's own default). */
export const MAX_ALIAS_COUNT = 100;

const ALLOWED_TAGS = new Set(['str', 'int', 'float', 'bool', 'null', 'map', 'seq'].map((t) => `tag:yaml.org,2002:${t}`));

export interface ModuleEntry {
  /** The option map as written (null when written empty); plugins validate it. */
  raw: unknown;
  /** Where it was written, for error locations: ['modules', name] or ['host_config', host, 'modules', name]. */
  path: Path;
}

export interface LoadedConfig extends ParseContext {
  /** Absolute path of the config file. */
  file: string;
  /** Validated; data_dir, certfiles and admin.socket are absolute (admin.socket always set). */
  core: CoreConfig;
  /**
   * Merged module options for a host: global `modules` overlaid by host_config.<host>.modules (a
   * host entry replaces that module's options; `false` disables the module, globally or there).
   * Each entry keeps the config path of the value used, for error locations.
   */
  modulesFor(host: string): Map<string, ModuleEntry>;
  /** "file:line:col" of the value at `path` (or of its key, or of the nearest existing ancestor). */
  locate(path: Path, at?: 'key' | 'value'): string | undefined;
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

function tagName(tag: string): string {
  return tag.startsWith('tag:yaml.org,2002:') ? `!!${tag.slice('tag:yaml.org,2002:'.length)}` : tag;
}

/** Makes the paths in the config absolute (relative to the working directory, as documented). */
function absolutePaths(core: CoreConfig): CoreConfig {
  const dataDir = resolve(core.data_dir);
  return {
    ...core,
    data_dir: dataDir,
    certfiles: core.certfiles.map((f) => resolve(f)),
    admin: { ...core.admin, socket: resolve(core.admin.socket ?? join(dataDir, 'parleyctl.sock')) },
  };
}

/** A YAML text read into plain values, with positions kept for error messages. */
export interface YamlSource extends ParseContext {
  value: unknown;
}

/**
 * Parses YAML with the rules above (CONFIG_SYNTAX on any problem). Plugins' tests can use it to
 * validate option schemas against real positions; `file` only labels the positions.
 */
export function readYaml(text: string, file: string): YamlSource {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter,
    prettyErrors: false,
    uniqueKeys: true,
    version: '1.2',
    schema: 'core',
    merge: false,
  });
  const at = (offset: number): string => {
    const { line, col } = lineCounter.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  const syntax = (offset: number, message: string): BootError =>
    new BootError('CONFIG_SYNTAX', `${at(offset)}: ${oneLine(message)}`);

  // yaml recovers from many errors and still builds a value; a config must not be half-read.
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) {
    const [start, end] = problem.pos;
    const message = problem.code === 'DUPLICATE_KEY'
      ? `duplicate key '${keyAt(doc, start) ?? text.slice(start, end).trim()}' (each key may appear once in a mapping)`
      : problem.message;
    throw syntax(start, message);
  }
  checkNodes(doc, text, syntax);

  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    if (!(err instanceof ReferenceError)) throw err;
    let first = 0;
    visit(doc, {
      Alias(_, node) {
        first = node.range?.[0] ?? 0;
        return visit.BREAK;
      },
    });
    throw syntax(first, 'aliases expand the document too much (refused as a possible "billion laughs" attack)');
  }

  const locate = (path: Path, where: 'key' | 'value' = 'value'): string | undefined => {
    const offset = locateOffset(doc, path, where);
    return offset === undefined ? undefined : at(offset);
  };
  return { value, locate };
}

export function parseConfig(text: string, file: string): LoadedConfig {
  const { value, locate } = readYaml(text, file);
  const core = absolutePaths(coreSchema.parse(value ?? undefined, [], { locate }));

  // host_config keys are normalised domains in `core`; the paths for locations need them as written.
  const writtenHost = new Map<string, string>();
  const hostConfig = (value as { host_config?: unknown } | null)?.host_config;
  if (hostConfig && typeof hostConfig === 'object') {
    for (const key of Object.keys(hostConfig)) writtenHost.set(prepDomain(key), key);
  }

  return {
    file: resolve(file),
    core,
    locate,
    modulesFor(host: string): Map<string, ModuleEntry> {
      if (!core.hosts.includes(host)) {
        throw new RangeError(`modulesFor: '${host}' is not a configured host (${core.hosts.join(', ')})`);
      }
      const out = new Map<string, ModuleEntry>();
      for (const [name, raw] of Object.entries(core.modules)) {
        if (raw !== false) out.set(name, { raw, path: ['modules', name] });
      }
      const perHost = core.host_config[host]?.modules;
      if (perHost) {
        const written = writtenHost.get(host) ?? host;
        for (const [name, raw] of Object.entries(perHost)) {
          if (raw === false) out.delete(name);
          else out.set(name, { raw, path: ['host_config', written, 'modules', name] });
        }
      }
      return out;
    },
  };
}

/** The key of the mapping entry whose key starts at `offset` (yaml marks only its first character). */
function keyAt(doc: Document.Parsed, offset: number): string | undefined {
  let found: string | undefined;
  visit(doc, {
    Pair(_, pair) {
      if (isScalar(pair.key) && pair.key.range?.[0] === offset) {
        found = String(pair.key.value);
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return found;
}

/** Where the tag written before a node starts; the node's own range begins after the tag. */
function tagStart(text: string, nodeStart: number): number {
  const from = Math.max(0, nodeStart - 1024);
  const m = /!\S*\s*$/.exec(text.slice(from, nodeStart));
  return m ? from + m.index : nodeStart;
}

/** Refuses what yaml accepts but a config file should not contain. */
function checkNodes(doc: Document.Parsed, text: string, syntax: (offset: number, message: string) => BootError): void {
  visit(doc, {
    Node(_, node) {
      if (node.tag !== undefined && !ALLOWED_TAGS.has(node.tag)) {
        const start = tagStart(text, node.range?.[0] ?? 0);
        throw syntax(start, `tag ${tagName(node.tag)} is not allowed in the config (only plain YAML values)`);
      }
      if (isAlias(node) && !node.resolve(doc)) {
        throw syntax(node.range?.[0] ?? 0, `alias *${node.source} has no anchor &${node.source} before it`);
      }
      return undefined;
    },
    Pair(_, pair) {
      if (pair.key !== null && !isScalar(pair.key)) {
        const start = (pair.key as Node).range?.[0] ?? 0;
        throw syntax(start, 'mapping keys must be plain values, not lists or mappings');
      }
      return undefined;
    },
  });
}

function startOf(node: unknown): number | undefined {
  return (node as ParsedNode | null)?.range?.[0];
}

/**
 * Offset of the node at `path`. With `where: 'key'`, or when the value is empty (`ping:`) or a
 * block collection, the key of the mapping entry is used. When the path does not exist (a missing key), the nearest existing
 * ancestor is used, by its key when it has one: "listen.0" when listen.0.port is missing.
 */
function locateOffset(doc: Document.Parsed, path: Path, where: 'key' | 'value'): number | undefined {
  let node: unknown = doc.contents;
  let key: unknown;
  for (const segment of path) {
    const container = isAlias(node) ? node.resolve(doc) : node;
    let next: unknown;
    let nextKey: unknown;
    if (isMap(container)) {
      const pair = container.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      if (!pair) return startOf(key) ?? startOf(node) ?? 0;
      next = pair.value;
      nextKey = pair.key;
    } else if (isSeq(container) && Number.isInteger(Number(segment))) {
      next = container.items[Number(segment)];
      if (next === undefined) return startOf(key) ?? startOf(node) ?? 0;
      nextKey = undefined;
    } else {
      return startOf(key) ?? startOf(node) ?? 0;
    }
    node = next;
    key = nextKey;
  }
  const empty = node === null || node === undefined || (isScalar(node) && node.value === null && node.source === '');
  // A block mapping or list starts on the line after its key; the key line is what people look for.
  const block = (isMap(node) || isSeq(node)) && !node.flow;
  if ((where === 'key' || empty || block) && key !== undefined) return startOf(key);
  return startOf(node) ?? startOf(key) ?? 0;
}

/** Reads and validates the config file. */
export async function loadConfig(file: string): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'not found'
      : code === 'EISDIR' ? 'is a directory, not a file'
        : code === 'EACCES' ? 'permission denied'
          : oneLine(err instanceof Error ? err.message : String(err));
    throw new BootError('CONFIG_NOT_FOUND', `config file ${file}: ${reason}`, { cause: err });
  }
  return parseConfig(text, file);
}
