// JIDs per RFC 7622: parse, enforce the PRECIS-derived rules we can check without tables
// (normalisation, case mapping, forbidden characters, lengths) and compare by canonical string.

export class JidError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JidError';
  }
}

const MAX_PART_BYTES = 1023;
// RFC 7622 §3.3.1: these may never appear in a localpart; controls and spaces are excluded by PRECIS.
const LOCAL_FORBIDDEN = /["&'/:<>@\s\p{Cc}]/u;
const RESOURCE_FORBIDDEN = /[\p{Cc}]/u;
const DOMAIN_FORBIDDEN = /[\s\p{Cc}@/"&'<>]/u;

function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

function checkPart(part: string, what: string): void {
  if (part.length === 0) throw new JidError(`empty ${what}`);
  if (byteLength(part) > MAX_PART_BYTES) throw new JidError(`${what} longer than ${MAX_PART_BYTES} bytes`);
}

// Printable ASCII is unchanged by every Unicode normalisation form: the common case skips them.
// (JID preparation runs on every address of every stanza: it shows in profiles.)
const PRINTABLE_ASCII = /^[\x21-\x7e]*$/;

export function prepLocal(local: string): string {
  // UsernameCaseMapped: width mapping (NFKC for fullwidth forms), case fold, NFC.
  const out = PRINTABLE_ASCII.test(local) ? local.toLowerCase() : local.normalize('NFKC').toLowerCase().normalize('NFC');
  checkPart(out, 'localpart');
  if (LOCAL_FORBIDDEN.test(out)) throw new JidError('forbidden character in localpart');
  return out;
}

export function prepDomain(domain: string): string {
  let out = PRINTABLE_ASCII.test(domain) ? domain.toLowerCase() : domain.normalize('NFKC').toLowerCase().normalize('NFC');
  if (out.endsWith('.')) out = out.slice(0, -1); // RFC 7622 §3.2: strip one trailing dot
  checkPart(out, 'domainpart');
  if (DOMAIN_FORBIDDEN.test(out)) throw new JidError('forbidden character in domainpart');
  if (out.startsWith('[')) {
    if (!/^\[[0-9a-f:.]+\]$/.test(out)) throw new JidError('malformed IPv6 domainpart');
  } else if (out.split('.').some((label) => label.length === 0 || byteLength(label) > 63)) {
    throw new JidError('malformed domain label');
  }
  return out;
}

export function prepResource(resource: string): string {
  // OpaqueString: map non-ASCII spaces to U+0020, NFC; case preserved.
  const out = PRINTABLE_ASCII.test(resource)
    ? resource
    : resource.replace(/[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/g, ' ').normalize('NFC');
  checkPart(out, 'resourcepart');
  if (RESOURCE_FORBIDDEN.test(out)) throw new JidError('forbidden character in resourcepart');
  return out;
}

/** An immutable, canonical JID. */
export class Jid {
  readonly local: string;
  readonly domain: string;
  readonly resource: string;
  readonly bare: string;
  readonly full: string;

  private constructor(local: string, domain: string, resource: string) {
    this.local = local;
    this.domain = domain;
    this.resource = resource;
    this.bare = local ? `${local}@${domain}` : domain;
    this.full = resource ? `${this.bare}/${resource}` : this.bare;
  }

  /** Builds from parts, applying the preparation rules; throws JidError. */
  static of(local: string, domain: string, resource = ''): Jid {
    return new Jid(local ? prepLocal(local) : '', prepDomain(domain), resource ? prepResource(resource) : '');
  }

  /** Parses a JID string; throws JidError when malformed. */
  static parse(s: string): Jid {
    const slash = s.indexOf('/');
    const beforeSlash = slash === -1 ? s : s.slice(0, slash);
    const resource = slash === -1 ? '' : s.slice(slash + 1);
    if (slash !== -1 && resource === '') throw new JidError('empty resourcepart');
    const at = beforeSlash.indexOf('@');
    const local = at === -1 ? '' : beforeSlash.slice(0, at);
    if (at !== -1 && local === '') throw new JidError('empty localpart');
    const domain = at === -1 ? beforeSlash : beforeSlash.slice(at + 1);
    return Jid.of(local, domain, resource);
  }

  /** Parses, returning undefined instead of throwing. */
  static tryParse(s: string | undefined): Jid | undefined {
    if (s === undefined) return undefined;
    try {
      return Jid.parse(s);
    } catch {
      return undefined;
    }
  }

  get isBare(): boolean {
    return this.resource === '';
  }

  get isDomain(): boolean {
    return this.local === '' && this.resource === '';
  }

  toBare(): Jid {
    return this.resource ? new Jid(this.local, this.domain, '') : this;
  }

  withResource(resource: string): Jid {
    return new Jid(this.local, this.domain, prepResource(resource));
  }

  equals(other: Jid | undefined): boolean {
    return other !== undefined && other.full === this.full;
  }

  toString(): string {
    return this.full;
  }
}
