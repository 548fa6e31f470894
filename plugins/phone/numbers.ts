// Phone numbers as account names (DESIGN §5): the JID localpart is the E.164 form with its '+'.
// libphonenumber's `max` metadata checks that a number can exist (length and ranges per
// country); the default build only checks the length and would accept numbers no one can own.
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';

/** E.164 as written in JIDs: '+', a country code that does not start with 0, at most 15 digits. */
export const E164 = /^\+[1-9]\d{1,14}$/;

export type NumberCheck =
  | { ok: true; number: string }
  | {
    ok: false;
    /** invalid: not a number anyone can have; format: valid, but not written in E.164; country: not accepted here. */
    reason: 'invalid' | 'format' | 'country';
    text: string;
  };

/**
 * Accepted countries, written as ISO 3166 region codes ('DE') or calling codes ('+49'); an
 * empty list accepts every country.
 */
export class NumberPolicy {
  private readonly regions: Set<string>;
  private readonly callingCodes: Set<string>;
  readonly open: boolean;

  constructor(allowed: readonly string[]) {
    this.regions = new Set(allowed.filter((a) => !a.startsWith('+')).map((a) => a.toUpperCase()));
    this.callingCodes = new Set(allowed.filter((a) => a.startsWith('+')).map((a) => a.slice(1)));
    this.open = allowed.length === 0;
  }

  /**
   * Checks a number given by a client. Only the canonical E.164 form is accepted: the account is
   * created under exactly that name, and the client logs in with the name it sent, so a number
   * written with spaces or dashes would make an account its owner cannot log in to.
   */
  check(input: string): NumberCheck {
    const trimmed = input.trim();
    const parsed = trimmed.startsWith('+') ? parsePhoneNumberFromString(trimmed) : undefined;
    if (!parsed || !parsed.isValid()) {
      return { ok: false, reason: 'invalid', text: 'not a valid phone number in international form (+<country code><number>)' };
    }
    const number = parsed.number;
    if (trimmed !== number) {
      return { ok: false, reason: 'format', text: `write the number in E.164 form: ${number}` };
    }
    if (!this.open && !(parsed.country !== undefined && this.regions.has(parsed.country))
      && !this.callingCodes.has(parsed.countryCallingCode)) {
      return { ok: false, reason: 'country', text: 'numbers from this country are not accepted on this server' };
    }
    return { ok: true, number };
  }
}

/** Checks the config values of `allowed_countries`. */
export function checkCountryList(list: readonly string[]): string | undefined {
  const bad = list.find((c) => !/^(?:[A-Za-z]{2}|\+[1-9]\d{0,2})$/.test(c));
  return bad === undefined ? undefined : `'${bad}' is neither a region code (DE) nor a calling code (+49)`;
}
