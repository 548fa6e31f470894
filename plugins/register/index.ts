// XEP-0077 In-Band Registration for standard clients, with phone numbers as usernames (DESIGN §5):
// - Before login: the form asks for the number (E.164) and a password. A submit without a valid
//   PIN sends one by SMS and answers not-acceptable carrying the form again, now with a PIN
//   field: Gajim re-renders it, Dino resubmits it, possibly on a new stream, which is why
//   pending PINs belong to the number (phone service), not to the stream. A submit with the right
//   PIN creates the account, or moves an existing one to this device as the HTTP API does.
// - Logged in: password change (§3.3; the user's other sessions end, as Prosody does) and
//   account removal (§3.2; result first, then every session ends with not-authorized).
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { s } from '../../lib/config/schema.js';
import { StanzaError, StreamError } from '../../lib/errors.js';
import { JidError, prepLocal } from '../../lib/jid.js';
import { definePlugin, type IqRequest } from '../../lib/plugin/types.js';
import type { ClientSession } from '../../lib/session/types.js';
import { errorReply, iqResult } from '../../lib/xml/stanza.js';
import { passwordProblem, primaryLanguage, type PhoneApi } from '../phone/api.js';
import { NS_REGISTER, NS_REGISTER_FEATURE, RegisterError, readSubmission, registrationQuery, type FormState } from './forms.js';

/** What this plugin keeps in session.data under its name (pre-auth streams only). */
interface StreamState {
  registered: boolean;
}

const PIN = /^\d{6}$/;

function addressOf(session: ClientSession): string | undefined {
  return session.remoteAddress || undefined;
}

function waitText(ms: number): string {
  const s = Math.max(1, Math.ceil(ms / 1000));
  return s < 120 ? `${s} seconds` : `${Math.ceil(s / 60)} minutes`;
}

export default definePlugin({
  name: 'register',
  requires: ['phone'],
  xeps: [{ xep: 77, version: '2.4', status: 'complete', note: 'phone numbers as usernames, verified by an SMS PIN' }],
  options: s.object({
    allow_registration: s.bool({ default: true, doc: 'new accounts (and new devices) by in-band registration; off: not-allowed, and no stream feature' }),
    allow_password_change: s.bool({ default: true, doc: 'logged-in users may change their password (XEP-0077 §3.3)' }),
    allow_removal: s.bool({ default: true, doc: 'logged-in users may delete their account (XEP-0077 §3.2)' }),
    require_encryption: s.bool({ default: true, doc: 'refuse registration and password changes on streams without TLS (the password travels in the clear)' }),
  }),
  setup(ctx) {
    const o = ctx.options;
    const phone = (): PhoneApi => {
      // Looked up on use: a reloaded phone module provides a new service object.
      const api = ctx.use<PhoneApi>('phone');
      if (!api) throw new RegisterError('service-unavailable', 'phone registration is not available');
      return api;
    };
    const instructions = `Enter your phone number with its country code (e.g. +4915112345678) and choose a password. `
      + `We send a 6-digit PIN to that number by SMS; enter it to finish.`;

    ctx.feature(NS_REGISTER);
    ctx.c2s.feature((session, stage) =>
      (stage === 'pre-auth' && o.allow_registration && (session.secure || !o.require_encryption)
        ? xml('register', { xmlns: NS_REGISTER_FEATURE })
        : undefined));

    // ---------- before login ----------

    /**
     * not-acceptable carrying the form again (XEP-0077 shows forms inside errors): the client
     * shows the text and asks for what is missing, the PIN field once the SMS went out.
     */
    function withForm(stanza: Element, text: string, state: FormState): Element {
      const attrs: Record<string, string> = { type: 'error', id: stanza.attrs.id ?? '' };
      if (stanza.attrs.to) attrs.from = stanza.attrs.to;
      return xml('iq', attrs, registrationQuery(instructions, state, ctx.host), new RegisterError('not-acceptable', text).toElement());
    }

    async function register(stanza: Element, query: Element, session: ClientSession): Promise<Element> {
      if (!o.allow_registration) throw new RegisterError('not-allowed', 'registration is disabled on this server');
      if (!session.secure && o.require_encryption) throw new RegisterError('not-authorized', 'registration needs an encrypted stream (STARTTLS)');
      const streamState = (session.data.get('register') as StreamState | undefined) ?? { registered: false };
      if (streamState.registered) {
        // XEP-0077 §3.1.1: one account per connection; log in with it first.
        throw new RegisterError('not-acceptable', 'an account was already registered on this connection');
      }
      if (query.getChild('remove')) throw new RegisterError('unexpected-request', 'log in to remove your account');
      const sub = readSubmission(query);
      const username = sub.username?.trim() ?? '';
      const password = sub.password ?? '';
      const pin = sub.pin?.trim() ?? '';
      const api = phone();
      const state: FormState = { username: username || undefined, password: password || undefined, withPin: false };
      // XEP-0077 §3.1: anything required that is missing is not-acceptable.
      if (username === '' || password === '') {
        return withForm(stanza, 'the phone number and a password are required', state);
      }
      const number = api.checkNumber(username);
      if (!number.ok) return withForm(stanza, number.text, { ...state, username: undefined });
      const problem = passwordProblem(password);
      if (problem !== undefined) return withForm(stanza, problem, { ...state, password: undefined });
      const pinState: FormState = { ...state, username: number.number, withPin: true };

      let why = 'We sent a PIN to this number by SMS; enter it in the PIN field.';
      if (pin !== '') {
        if (!PIN.test(pin)) return withForm(stanza, 'the PIN has 6 digits', pinState);
        const result = await api.redeem(number.number, pin, password);
        switch (result.status) {
          case 'created':
          case 'changed':
            session.data.set('register', { registered: true } satisfies StreamState);
            ctx.log.info('registered in-band', { user: `${number.number}@${ctx.host}`, device: result.status === 'changed' ? 'new' : 'first' });
            return iqResult(stanza);
          case 'wrong-pin':
            if (result.left > 0) {
              return withForm(stanza, `wrong PIN; ${result.left} attempt(s) left`, pinState);
            }
            // The last attempt is used up: a new PIN needs a new submit without one.
            return withForm(stanza, 'wrong PIN; submit the form without a PIN to get a new one', { ...state, username: number.number });
          case 'in-use':
            throw new RegisterError('conflict', 'this number is logged in on another device');
          case 'invalid-password':
            return withForm(stanza, result.text, { ...pinState, password: undefined });
          case 'no-pin':
            why = 'That PIN is no longer valid; we sent a new one by SMS.';
            break;
        }
      } else if (await api.hasPendingPin(number.number)) {
        // Asked again (a client that fetched a new form): the PIN already sent still counts.
        return withForm(stanza, 'We already sent a PIN to this number by SMS; enter it in the PIN field.', pinState);
      }
      const address = addressOf(session);
      const wait = address === undefined ? undefined : await api.throttleAddress(address);
      if (wait !== undefined) throw new RegisterError('resource-constraint', `too many registrations from your address; try again in ${waitText(wait)}`);
      const sent = await api.requestPin(number.number, { ip: address, language: primaryLanguage(stanza.attrs['xml:lang']) });
      switch (sent.status) {
        case 'sent':
          return withForm(stanza, why, pinState);
        case 'throttled':
          throw new RegisterError('resource-constraint', `too many PINs for this number; try again in ${waitText(sent.retryAfterMs)}`);
        case 'in-use':
          throw new RegisterError('conflict', 'this number is logged in on another device');
        case 'failed':
          throw new RegisterError('internal-server-error', 'the SMS could not be sent; try again later');
      }
    }

    ctx.hook(`iq-preauth/${NS_REGISTER}:query`, async ({ stanza, payload, session }: { stanza: Element; payload: Element; session: ClientSession }) => {
      try {
        if (stanza.attrs.type === 'get') {
          if (!o.allow_registration) throw new RegisterError('service-unavailable', 'registration is disabled on this server');
          if (!session.secure && o.require_encryption) throw new RegisterError('not-authorized', 'registration needs an encrypted stream (STARTTLS)');
          return iqResult(stanza, registrationQuery(instructions, { withPin: false }, ctx.host));
        }
        if (stanza.attrs.type === 'set') return await register(stanza, payload, session);
        if (stanza.attrs.type === 'result' || stanza.attrs.type === 'error') return true;
        throw new RegisterError('bad-request', 'iq type must be get or set');
      } catch (err) {
        if (err instanceof StanzaError) return errorReply(stanza, RegisterError.from(err));
        ctx.log.error('in-band registration failed', { err });
        return errorReply(stanza, new RegisterError('internal-server-error'));
      }
    });

    // ---------- logged in ----------

    /** The requester's own account on this host, or a refusal. */
    function ownAccount(req: IqRequest): ClientSession {
      if (!req.session || req.from.domain !== ctx.host || req.from.local === '') {
        throw new RegisterError('service-unavailable', 'registration with this server is for its own users');
      }
      if (req.to.local !== '' && req.to.bare !== req.from.bare) throw new RegisterError('forbidden', "not your account");
      return req.session;
    }

    ctx.iq.get(NS_REGISTER, 'query', (req) => {
      ownAccount(req);
      return xml('query', { xmlns: NS_REGISTER },
        xml('instructions', {}, 'You are registered. Send a new password to change it, or <remove/> to delete your account.'),
        xml('registered'),
        xml('username', {}, req.from.local),
        xml('password'));
    }, { to: ['host', 'bare'] });

    async function changeOrRemove(req: IqRequest): Promise<void> {
      const session = ownAccount(req);
      const user = req.from.local;
      const children = req.payload.children.filter((c): c is Element => typeof c !== 'string');
      if (req.payload.getChild('remove')) {
        if (children.length !== 1) throw new RegisterError('bad-request', '<remove/> must be the only child of the query');
        if (!o.allow_removal) throw new RegisterError('not-allowed', 'accounts cannot be removed in-band on this server');
        // The result goes out before the sessions end (XEP-0077 §3.2).
        await ctx.route(iqResult(req.stanza));
        await phone().removeAccount(user, new StreamError('not-authorized', 'the account was removed'));
        return;
      }
      if (!o.allow_password_change) throw new RegisterError('not-allowed', 'passwords cannot be changed in-band on this server');
      if (!session.secure && o.require_encryption) throw new RegisterError('not-authorized', 'changing the password needs an encrypted stream');
      const sub = readSubmission(req.payload);
      const username = sub.username?.trim() ?? '';
      const password = sub.password ?? '';
      // XEP-0077 §3.3: an empty password never replaces the current one.
      if (username === '' || password === '') throw new RegisterError('bad-request', 'username and the new password are required');
      let given: string;
      try {
        given = prepLocal(username.includes('@') && username.split('@')[1] === ctx.host ? username.split('@')[0]! : username);
      } catch (err) {
        if (!(err instanceof JidError)) throw err;
        throw new RegisterError('bad-request', 'that is not your username');
      }
      if (given !== user) throw new RegisterError('bad-request', 'that is not your username');
      const problem = passwordProblem(password);
      if (problem !== undefined) throw new RegisterError('not-acceptable', problem);
      await ctx.server.accounts.setPassword(user, ctx.host, password);
      ctx.log.info('password changed in-band', { user: req.from.bare });
      await ctx.route(iqResult(req.stanza));
      // Whoever knew the old password is logged out everywhere else.
      for (const other of ctx.server.sessions.resources(req.from.bare)) {
        if (other !== session) other.close(new StreamError('reset', 'the password was changed'));
      }
    }

    // A raw hook rather than ctx.iq.set: the result of a removal must go out before the session
    // ends, and errors carry legacy codes. Returning true tells the router the IQ was answered.
    const onSet = async (req: IqRequest): Promise<true> => {
      try {
        await changeOrRemove(req);
      } catch (err) {
        let e: RegisterError;
        if (err instanceof StanzaError) e = RegisterError.from(err);
        else {
          ctx.log.error('in-band registration failed', { err });
          e = new RegisterError('internal-server-error');
        }
        await ctx.route(errorReply(req.stanza, e));
      }
      return true;
    };
    ctx.hook(`iq-set/host/${NS_REGISTER}:query`, onSet);
    ctx.hook(`iq-set/bare/${NS_REGISTER}:query`, onSet);
  },
});
