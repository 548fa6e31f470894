// Server-side SASL mechanisms, independent of sockets and XML: the stream feeds decoded bytes in
// and turns results into <challenge/>, <success/> or <failure/> (RFC 6120 §6).
import { PlainSession } from './plain.js';
import { ScramSession, type ScramCredential, type ScramHash } from './scram.js';

export {
  DEFAULT_SCRAM_ITERATIONS, MIN_SCRAM_ITERATIONS, SaslPrepError, deriveScramCredential, saslprep,
  type ScramCredential, type ScramHash,
} from './scram.js';

/** RFC 6120 §6.5 failure conditions. */
export type SaslFailureCondition =
  | 'aborted' | 'account-disabled' | 'credentials-expired' | 'encryption-required'
  | 'incorrect-encoding' | 'invalid-authzid' | 'invalid-mechanism' | 'malformed-request'
  | 'mechanism-too-weak' | 'not-authorized' | 'temporary-auth-failure';

export type SaslResult =
  | { kind: 'challenge'; data: Buffer }
  /** `username` is the authcid after SASLprep (the caller applies nodeprep); `data` is sent with success. */
  | { kind: 'success'; username: string; data?: Buffer }
  | { kind: 'failure'; condition: SaslFailureCondition; text?: string };

export interface SaslBackend {
  /** The stored credential of an existing account, or undefined. */
  scramCredential(username: string, hash: ScramHash): Promise<ScramCredential | undefined>;
  /** For PLAIN. */
  verifyPassword(username: string, password: string): Promise<boolean>;
  /**
   * The hash families an existing account has credentials for; undefined for an unknown user.
   * Lets SCRAM tell "this account lacks the family" (a clear failure) from "no such account"
   * (answered like a real account, so the exchange does not reveal which accounts exist).
   */
  scramHashes?(username: string): Promise<readonly ScramHash[] | undefined>;
  /**
   * The iteration count new credentials get. SCRAM announces it for unknown users, so they look
   * like accounts created under the current settings.
   */
  readonly iterations?: number;
}

export interface SaslSession {
  /** `initial` is the initial response; undefined when the client sent none. */
  start(initial: Buffer | undefined): Promise<SaslResult>;
  step(response: Buffer): Promise<SaslResult>;
}

/**
 * Channel binding of one connection (RFC 5056). Give it exactly when the SCRAM -PLUS mechanisms
 * are offered: a client that says it could bind (`y`) is then refused as a downgrade.
 */
export interface ChannelBinding {
  /** The binding data for a type ('tls-exporter', 'tls-server-end-point', ...), undefined when unavailable. */
  data(type: string): Buffer | undefined;
  /** The types this connection offers (XEP-0440), for error texts. */
  readonly types?: readonly string[];
}

export interface SaslSessionOptions {
  /** Server secret: keys the fake salts that hide which accounts exist. */
  secret: Buffer;
  /** SCRAM iterations announced for unknown users; defaults to the backend's, then 4096. */
  iterations?: number;
  /** Server part of the SCRAM nonce; for tests that reproduce fixed vectors. */
  nonce?: () => string;
  /** Enables the -PLUS mechanisms for this session. */
  channelBinding?: ChannelBinding;
  /**
   * Called once the username is known, before any credential is looked up or derived: a refusal
   * (e.g. a throttled account) ends the exchange without running the costly check.
   */
  gate?(username: string): SaslRefusal | undefined;
  /**
   * Called when a credential check ran and failed (wrong password or proof, or no such user):
   * the attempts that count as guesses. Protocol errors and channel binding mismatches do not.
   */
  onBadCredentials?(username: string): void;
}

/** A failure a gate answers with. */
export interface SaslRefusal {
  condition: SaslFailureCondition;
  text?: string;
}

export const SCRAM_MECHANISMS: Record<'SCRAM-SHA-1' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512', ScramHash> = {
  'SCRAM-SHA-1': 'SHA-1',
  'SCRAM-SHA-256': 'SHA-256',
  'SCRAM-SHA-512': 'SHA-512',
};

function scramHashOf(mechanism: string): ScramHash | undefined {
  return Object.hasOwn(SCRAM_MECHANISMS, mechanism) ? SCRAM_MECHANISMS[mechanism as keyof typeof SCRAM_MECHANISMS] : undefined;
}

/** A session for `mechanism`, or undefined when it is unknown (answer invalid-mechanism). */
export function createSaslSession(mechanism: string, backend: SaslBackend, options: SaslSessionOptions): SaslSession | undefined {
  if (mechanism === 'PLAIN') return new PlainSession(backend, options);
  const plus = mechanism.endsWith('-PLUS');
  // -PLUS exists only where the connection can supply binding data.
  if (plus && !options.channelBinding) return undefined;
  const hash = scramHashOf(plus ? mechanism.slice(0, -'-PLUS'.length) : mechanism);
  if (!hash) return undefined;
  return new ScramSession({
    hash,
    plus,
    backend,
    secret: options.secret,
    iterations: options.iterations,
    nonce: options.nonce,
    channelBinding: options.channelBinding,
    gate: options.gate,
    onBadCredentials: options.onBadCredentials,
  });
}
