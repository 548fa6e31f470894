// Roster persistence: one map entry per owner and contact, so a change rewrites one item, not the
// whole roster; the roster version (XEP-0237) is a keyval per owner. Changes of one owner's
// entries are serialised by an in-process lock, so concurrent read-modify-writes (two resources,
// an inbound request meanwhile) cannot lose each other's update.
import { randomBytes } from 'node:crypto';
import type { Json, KeyValStore, MapStore } from '../../lib/storage/types.js';
import type { ContactState, RosterItem, Subscription } from './api.js';
import { KeyedLock } from '../../lib/util/keyed-lock.js';

const SUBSCRIPTIONS: readonly string[] = ['none', 'to', 'from', 'both'];

export class RosterStore {
  readonly lock = new KeyedLock();

  constructor(private readonly map: MapStore<Json>, private readonly versions: KeyValStore<Json>) {}

  async get(owner: string, contact: string): Promise<ContactState> {
    return decode(contact, await this.map.get(owner, contact));
  }

  async all(owner: string): Promise<Array<[string, ContactState]>> {
    return (await this.map.entries(owner)).map(([contact, value]) => [contact, decode(contact, value)]);
  }

  async count(owner: string): Promise<number> {
    return (await this.map.keys(owner)).length;
  }

  /** Stores the state; an empty state (no item, no pending request) deletes the entry. */
  async put(owner: string, contact: string, state: ContactState): Promise<void> {
    if (!state.item && state.pendingIn === undefined) await this.map.delete(owner, contact);
    else await this.map.set(owner, contact, encode(state));
  }

  async version(owner: string): Promise<string> {
    const v = await this.versions.get(owner);
    if (typeof v === 'string') return v;
    // First use: a version for the (empty or untouched) roster, kept so that it stays stable.
    return this.bump(owner);
  }

  /**
   * A new random version. Random rather than a counter: a roster deleted with its account and
   * created again cannot repeat a version a client still has cached.
   */
  async bump(owner: string): Promise<string> {
    const v = randomBytes(9).toString('base64url');
    await this.versions.set(owner, v);
    return v;
  }
}

function encode(state: ContactState): Json {
  const out: { [key: string]: Json } = {};
  if (state.item) {
    const i = state.item;
    const item: { [key: string]: Json } = { groups: [...i.groups], subscription: i.subscription };
    if (i.name !== undefined) item.name = i.name;
    if (i.ask) item.ask = i.ask;
    if (i.approved) item.approved = true;
    out.item = item;
  }
  if (state.pendingIn !== undefined) out.pendingIn = state.pendingIn;
  return out;
}

// Stored values are read defensively: a damaged entry yields what can be understood of it
// instead of failing every roster request of the user.
function decode(contact: string, value: Json | undefined): ContactState {
  const state: ContactState = {};
  if (!value || typeof value !== 'object' || Array.isArray(value)) return state;
  const raw = value.item;
  if (raw && typeof raw === 'object' && !Array.isArray(raw)) {
    const sub = typeof raw.subscription === 'string' && SUBSCRIPTIONS.includes(raw.subscription)
      ? raw.subscription as Subscription : 'none';
    const item: RosterItem = {
      jid: contact,
      groups: Array.isArray(raw.groups) ? raw.groups.filter((g): g is string => typeof g === 'string') : [],
      subscription: sub,
    };
    if (typeof raw.name === 'string') item.name = raw.name;
    if (raw.ask === 'subscribe') item.ask = 'subscribe';
    if (raw.approved === true) item.approved = true;
    state.item = item;
  }
  if (typeof value.pendingIn === 'string') state.pendingIn = value.pendingIn;
  return state;
}

/** Deep copy of a state, so an update function cannot change the stored original. */
export function copyState(s: ContactState): ContactState {
  const out: ContactState = {};
  if (s.item) out.item = { ...s.item, groups: [...s.item.groups] };
  if (s.pendingIn !== undefined) out.pendingIn = s.pendingIn;
  return out;
}

export function sameItem(a: RosterItem | undefined, b: RosterItem | undefined): boolean {
  if (!a || !b) return a === b;
  return a.jid === b.jid && a.name === b.name && a.subscription === b.subscription
    && (a.ask ?? undefined) === (b.ask ?? undefined) && Boolean(a.approved) === Boolean(b.approved)
    && a.groups.length === b.groups.length && a.groups.every((g, i) => g === b.groups[i]);
}

export function sameState(a: ContactState, b: ContactState): boolean {
  return sameItem(a.item, b.item) && a.pendingIn === b.pendingIn;
}
