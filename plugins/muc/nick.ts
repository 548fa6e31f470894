// Room nicknames (XEP-0045 §7.2.1 and its reference to RFC 7700, now RFC 8266 "Nickname" profile
// of PRECIS). The router has already applied the resourcepart rules of RFC 7622 to the occupant
// JID; the nickname profile adds its own steps on top:
// - additional mapping: non-ASCII spaces become U+0020, leading and trailing spaces are removed
//   and runs of spaces collapse to one;
// - normalisation NFKC (so compatibility forms such as fullwidth letters fold);
// - comparison: case-insensitive after the above, so "Alice" cannot impersonate "alice".
// A nick that the preparation changes is still accepted, under its prepared form: the occupant
// learns it from status code 210 (§7.2.3, "room nick modified by the service").

export class NickError extends Error {}

const SPACES = /[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/g;
// Controls are forbidden in any identifier class of PRECIS; so are unassigned and private-use code
// points, which a nick must not use to look like someone else's on some fonts.
const FORBIDDEN = /[\p{Cc}\p{Cn}\p{Co}\p{Cs}]/u;

/** The nickname as the room uses it; throws NickError when it is not a valid nickname. */
export function prepareNick(raw: string, maxLength: number): string {
  const mapped = raw.replace(SPACES, ' ').replace(/ {2,}/g, ' ').trim().normalize('NFKC');
  if (mapped.length === 0) throw new NickError('the nickname is empty');
  if (FORBIDDEN.test(mapped)) throw new NickError('the nickname has a forbidden character');
  if ([...mapped].length > maxLength) throw new NickError(`the nickname is longer than ${maxLength} characters`);
  return mapped;
}

/** The key two nicks are compared by (RFC 8266 §2.4: case-mapped). */
export function nickKey(nick: string): string {
  return nick.toLowerCase().normalize('NFKC');
}
