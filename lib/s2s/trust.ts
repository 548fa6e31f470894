// The trust store for server certificates: Node's bundled roots (unless system_cas is off) plus
// the configured CA files, and a path check from a peer's certificate to one of them. TLS itself
// runs with rejectUnauthorized off on server streams, because an untrusted certificate is not the
// end there: the peer may still authenticate with dialback. This check decides between the two.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { rootCertificates, type TLSSocket } from 'node:tls';
import { BootError } from '../errors.js';
import { certificateNames, certificateNamesDomain, type CertNames } from './cert-identity.js';

const MAX_CHAIN = 8;

function parsePems(text: string): X509Certificate[] {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

function currentlyValid(cert: X509Certificate, now: number): boolean {
  return Date.parse(cert.validFrom) <= now && now <= Date.parse(cert.validTo);
}

function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** What we learned about a peer's certificate. */
export interface PeerCertificate {
  /** The chain leads to a trusted authority and every certificate on it is in its validity period. */
  trusted: boolean;
  names: CertNames | undefined;
}

export class TrustStore {
  private readonly anchorsBySubject = new Map<string, X509Certificate[]>();
  private readonly anchorPrints = new Set<string>();

  private constructor(anchors: X509Certificate[]) {
    for (const a of anchors) {
      this.anchorsBySubject.set(a.subject, [...(this.anchorsBySubject.get(a.subject) ?? []), a]);
      this.anchorPrints.add(a.fingerprint256);
    }
  }

  static async load(caFiles: readonly string[], systemCas: boolean): Promise<TrustStore> {
    const anchors: X509Certificate[] = systemCas ? rootCertificates.map((pem) => new X509Certificate(pem)) : [];
    for (const file of caFiles) {
      let certs: X509Certificate[];
      try {
        certs = parsePems(await readFile(file, 'utf8'));
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new BootError('CERT_INVALID', `s2s.ca_files: ${file}: ${e.code ?? e.message}`, { cause: err });
      }
      if (certs.length === 0) throw new BootError('CERT_INVALID', `s2s.ca_files: ${file}: no certificate in the file`);
      anchors.push(...certs);
    }
    return new TrustStore(anchors);
  }

  /** Leaf first, then what the peer sent along; true when a path reaches a trust anchor. */
  verifyChain(chain: readonly X509Certificate[], now = Date.now()): boolean {
    let current: X509Certificate | undefined = chain[0];
    const pool = chain.slice(1);
    for (let depth = 0; current && depth < MAX_CHAIN; depth++) {
      if (!currentlyValid(current, now)) return false;
      // A trusted certificate presented as is (e.g. a pinned self-signed one in ca_files).
      if (this.anchorPrints.has(current.fingerprint256)) return true;
      const cert: X509Certificate = current;
      const anchor = (this.anchorsBySubject.get(cert.issuer) ?? []).find((a) => signedBy(cert, a) && currentlyValid(a, now));
      if (anchor) return true;
      // Only a CA certificate may vouch for another one.
      current = pool.find((c) => c !== cert && c.ca && signedBy(cert, c));
    }
    return false;
  }

  /** Reads the certificate the peer presented on this TLS connection. */
  inspect(socket: TLSSocket): PeerCertificate {
    const chain = peerChain(socket);
    if (chain.length === 0) return { trusted: false, names: undefined };
    return { trusted: this.verifyChain(chain), names: certificateNames(chain[0]!) };
  }
}

/** Whether the certificate lets the peer authenticate as this domain (trusted and naming it). */
export function certificateValidFor(peer: PeerCertificate | undefined, domain: string): boolean {
  return !!peer && peer.trusted && peer.names !== undefined && certificateNamesDomain(peer.names, domain);
}

function peerChain(socket: TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = [];
  let detailed = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (detailed && detailed.raw && !seen.has(detailed.fingerprint256) && out.length < MAX_CHAIN + 1) {
    seen.add(detailed.fingerprint256);
    try {
      out.push(new X509Certificate(detailed.raw));
    } catch {
      break;
    }
    detailed = detailed.issuerCertificate;
  }
  return out;
}
