// Helpers for the MUC black-box tests: a server with the muc plugin, clients that join rooms and
// wait for what the room sends.
import type { Element } from 'ltx';
import { RawClient } from './raw-client.js';
import { startTestServer, type TestServer, type TestServerOptions } from './server.js';

export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const SERVICE = 'conference.localhost';

export async function startMucServer(muc = '{}', o: TestServerOptions = {}, users = ['alice', 'bob', 'carol', 'dave']): Promise<TestServer> {
  const srv = await startTestServer({ modules: `  disco: {}\n  muc: ${muc}`, ...o });
  for (const u of users) await srv.register(u, 'pw').catch(() => undefined);
  return srv;
}

export function login(srv: TestServer, user: string, resource = 'r'): Promise<RawClient> {
  return RawClient.login(srv.c2sPort, user, 'pw', { resource });
}

let counter = 0;
export const nextId = (): string => `t${++counter}`;

/** The muc#user element of a stanza, if any. */
export function mucUser(el: Element): Element | undefined {
  return el.getChild('x', NS_MUC_USER);
}

export function codes(el: Element): number[] {
  return (mucUser(el)?.getChildren('status') ?? []).map((s) => Number(s.attrs.code)).sort((a, b) => a - b);
}

export function item(el: Element): Record<string, string> {
  return (mucUser(el)?.getChild('item')?.attrs ?? {}) as Record<string, string>;
}

export function errorCondition(el: Element): string | undefined {
  const err = el.getChild('error');
  return err?.children.find((c): c is Element => typeof c !== 'string' && c.name !== 'text')?.name;
}

/** Sends a join and waits for the self-presence (status 110) or an error presence. */
export async function join(c: RawClient, room: string, nick: string, extra = '', mucX = true): Promise<Element> {
  const x = mucX ? `<x xmlns='${NS_MUC}'>${extra}</x>` : '';
  c.send(`<presence to='${room}/${nick}'>${x}</presence>`);
  return c.next((el) => el.name === 'presence' && (el.attrs.type === 'error' || (el.attrs.from?.startsWith(room + '/') === true && codes(el).includes(110))));
}

/** Waits until the subject arrives: the last thing a join sends. */
export function subject(c: RawClient, room: string): Promise<Element> {
  return c.next((el) => el.name === 'message' && el.attrs.from?.split('/')[0] === room && el.getChild('subject') !== undefined);
}

/** Creates an instant room (join, then submit an empty form) and waits until it is unlocked. */
export async function createInstant(c: RawClient, room: string, nick: string): Promise<Element> {
  const self = await join(c, room, nick);
  if (self.attrs.type === 'error') throw new Error(`join failed: ${self.toString()}`);
  await subject(c, room);
  await iq(c, 'set', room, `<query xmlns='${NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>`);
  return self;
}

/** A room created with a submitted configuration (fields: var -> value(s)). */
export async function createConfigured(c: RawClient, room: string, nick: string, fields: Record<string, string | string[]>): Promise<void> {
  const self = await join(c, room, nick);
  if (self.attrs.type === 'error') throw new Error(`join failed: ${self.toString()}`);
  await subject(c, room);
  const r = await iq(c, 'set', room, `<query xmlns='${NS_MUC_OWNER}'>${form(fields)}</query>`);
  if (r.attrs.type !== 'result') throw new Error(`configuration failed: ${r.toString()}`);
}

export function form(fields: Record<string, string | string[]>, type = 'submit'): string {
  const f = Object.entries(fields).map(([v, value]) =>
    `<field var='${v}'>${(Array.isArray(value) ? value : [value]).map((x) => `<value>${x}</value>`).join('')}</field>`).join('');
  return `<x xmlns='jabber:x:data' type='${type}'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>${f}</x>`;
}

/** Sends an IQ and waits for its answer. */
export async function iq(c: RawClient, type: 'get' | 'set', to: string, payload: string): Promise<Element> {
  const id = nextId();
  c.send(`<iq type='${type}' to='${to}' id='${id}'>${payload}</iq>`);
  return c.nextNamed('iq', id);
}

/** Expects no element matching pred within a short time. */
export async function nothing(c: RawClient, pred: (el: Element) => boolean = () => true, ms = 300): Promise<boolean> {
  try {
    await c.next(pred, ms);
    return false;
  } catch {
    return true;
  }
}

export const groupchatBody = (room: string, body?: string) => (el: Element): boolean =>
  el.name === 'message' && el.attrs.type === 'groupchat' && el.attrs.from?.split('/')[0] === room
  && el.getChildText('body') !== null && (body === undefined || el.getChildText('body') === body);

export const presenceFrom = (jid: string, type?: string) => (el: Element): boolean =>
  el.name === 'presence' && el.attrs.from === jid && el.attrs.type === type;
