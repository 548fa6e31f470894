// The phone service other plugins use (in-band registration): ctx.use<PhoneApi>('phone').
import type { StreamError } from '../../lib/errors.js';
import { saslprep } from '../../lib/sasl/scram.js';
import type { NumberCheck } from './numbers.js';

export type { NumberCheck } from './numbers.js';

/** Who asks for a PIN, for the throttles. */
export interface PinClient {
  /** The client's address. */
  ip?: string | undefined;
  /** The app installation (Quicksy's Installation-Id). */
  installation?: string | undefined;
  /** Primary language tag, for the SMS text. */
  language?: string | undefined;
}

export type PinRequestResult =
  | { status: 'sent' }
  | { status: 'throttled'; retryAfterMs: number; scope: 'number' | 'ip' | 'installation' }
  /** prevent_takeover is on and the number is logged in. */
  | { status: 'in-use' }
  /** The SMS could not be sent; nothing was kept. */
  | { status: 'failed' };

export type RedeemResult =
  | { status: 'created' }
  | { status: 'changed' }
  /** `left` = attempts remaining; 0: that was the last one and the PIN is gone. */
  | { status: 'wrong-pin'; left: number }
  /** No PIN pending: never sent, expired, used or invalidated. */
  | { status: 'no-pin' }
  | { status: 'in-use' }
  | { status: 'invalid-password'; text: string };

export interface PhoneApi {
  /** Checks a number given by a client: valid, in E.164 form, from an accepted country. */
  checkNumber(input: string): NumberCheck;
  /** A PIN was sent to the number and can still be used. */
  hasPendingPin(number: string): Promise<boolean>;
  /** Counts a PIN request of a client address; the wait in ms when it is over its limit. */
  throttleAddress(ip: string): Promise<number | undefined>;
  /** Sends a new PIN by SMS, subject to the per-number and per-installation throttles. */
  requestPin(number: string, client: PinClient): Promise<PinRequestResult>;
  /**
   * Checks the PIN and, when it is right, creates the account with this password or replaces
   * the password of an existing one (ending all its sessions with the stream error `reset`);
   * an account unused for `reclaim_after` is deleted and created fresh. The PIN is used up only
   * when that worked. Throws when the account could not be written.
   */
  redeem(number: string, pin: string, password: string): Promise<RedeemResult>;
  /**
   * Deletes an account with everything stored for it: its sessions end with `error`, presence
   * subscriptions are cancelled with its contacts (RFC 6121 §2.5.2), its data is purged.
   * Returns false when there was no such account.
   */
  removeAccount(user: string, error: StreamError): Promise<boolean>;
}

/** Why a password cannot be used, or undefined: the account store's rules, checked up front. */
export function passwordProblem(password: string): string | undefined {
  let prepared: string;
  try {
    prepared = saslprep(password);
  } catch {
    return 'the password contains characters that are not allowed (SASLprep)';
  }
  return prepared === '' ? 'the password is empty' : undefined;
}

/** The primary language tag of an Accept-Language header or xml:lang ('de' for 'de-DE,de;q=0.9'). */
export function primaryLanguage(header: string | undefined): string | undefined {
  const first = header?.split(',')[0]?.split(';')[0]?.trim().toLowerCase();
  const tag = first?.split('-')[0];
  return tag && /^[a-z]{2,8}$/.test(tag) ? tag : undefined;
}
