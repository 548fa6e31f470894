// Which XMPP domains a server certificate names (RFC 6120 §13.7.1.2, RFC 6125 §6): DNS-IDs
// (dNSName, a wildcard standing for exactly one label), SRV-IDs (`_xmpp-server.<domain>`
// otherName) and XmppAddr otherNames; the subject CN only when the certificate has none of those.
// The subjectAltName is read from the DER with forge's ASN.1 reader rather than from Node's
// printed form, whose otherName rendering changed between versions.
import type { X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { nameMatches } from '../net/certs.js';

const SAN_OID = '2.5.29.17';
export const XMPP_ADDR_OID = '1.3.6.1.5.5.7.8.5';
const SRV_NAME_OID = '1.3.6.1.5.5.7.8.7';

export interface CertNames {
  dns: string[];
  srv: string[];
  xmppAddr: string[];
  cn: string | undefined;
}

const { asn1 } = forge;
type Node = forge.asn1.Asn1;

function children(node: Node | undefined): Node[] {
  return node && Array.isArray(node.value) ? (node.value as Node[]) : [];
}

function text(node: Node | undefined): string | undefined {
  if (!node || typeof node.value !== 'string') return undefined;
  // UTF8String is stored as its UTF-8 bytes; IA5String is ASCII either way.
  return node.type === asn1.Type.UTF8 ? forge.util.decodeUtf8(node.value) : node.value;
}

function subjectAltNames(der: Buffer): Node[] {
  const cert = asn1.fromDer(forge.util.createBuffer(der.toString('binary')));
  const tbs = children(cert)[0];
  const extensionsTag = children(tbs).find((n) => n.tagClass === asn1.Class.CONTEXT_SPECIFIC && n.type === 3);
  for (const ext of children(children(extensionsTag)[0])) {
    const parts = children(ext);
    if (parts[0] && asn1.derToOid(parts[0].value as string) === SAN_OID) {
      const octets = parts[parts.length - 1]!;
      return children(asn1.fromDer(octets.value as string));
    }
  }
  return [];
}

export function certificateNames(cert: X509Certificate): CertNames {
  const names: CertNames = { dns: [], srv: [], xmppAddr: [], cn: undefined };
  let sans: Node[] = [];
  try {
    sans = subjectAltNames(cert.raw);
  } catch {
    // An unreadable extension names nothing.
  }
  for (const gn of sans) {
    if (gn.tagClass !== asn1.Class.CONTEXT_SPECIFIC) continue;
    if (gn.type === 2 && typeof gn.value === 'string') names.dns.push(gn.value.toLowerCase());
    if (gn.type === 0) {
      const [oid, wrapped] = children(gn);
      if (!oid || typeof oid.value !== 'string') continue;
      const type = asn1.derToOid(oid.value);
      const value = text(children(wrapped)[0]);
      if (value === undefined) continue;
      if (type === XMPP_ADDR_OID) names.xmppAddr.push(value.toLowerCase());
      if (type === SRV_NAME_OID) names.srv.push(value.toLowerCase());
    }
  }
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject);
  if (cn) names.cn = cn[1]!.toLowerCase();
  return names;
}

/** Does the certificate identify this XMPP server domain? */
export function certificateNamesDomain(names: CertNames, domain: string): boolean {
  const d = domain.toLowerCase();
  if (names.xmppAddr.includes(d)) return true;
  if (names.srv.includes(`_xmpp-server.${d}`)) return true;
  if (names.dns.some((n) => nameMatches(n, d))) return true;
  // RFC 6125 §6.4.4: the CN counts only when no subjectAltName identifier is present.
  const anyId = names.dns.length + names.srv.length + names.xmppAddr.length > 0;
  return !anyId && names.cn !== undefined && nameMatches(names.cn, d);
}
