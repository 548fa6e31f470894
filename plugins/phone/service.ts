// The phone account service: PINs by SMS, throttles, and creating or taking over the account a
// number names. Shared by the HTTP API (Quicksy) and in-band registration (XEP-0077).
import { AccountError } from '../../lib/accounts.js';
import { StreamError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { PluginContext } from '../../lib/plugin/types.js';
import type { MapStore } from '../../lib/storage/types.js';
import { KeyedLock } from '../../lib/util/keyed-lock.js';
import type { RosterApi } from '../roster/api.js';
import { passwordProblem, type PhoneApi, type PinClient, type PinRequestResult, type RedeemResult } from './api.js';
import { NumberPolicy, type NumberCheck } from './numbers.js';
import type { PhoneOptions } from './options.js';
import type { PinStore } from './pins.js';
import { smsText, type SmsSender } from './sms.js';
import type { Throttle } from './throttle.js';

export interface PhoneServiceDeps {
  ctx: PluginContext<PhoneOptions>;
  pins: PinStore;
  throttle: Throttle;
  /** Last login or logout per phone localpart (owner: the host). */
  activity: MapStore<number>;
  sms: SmsSender;
}

export class PhoneService implements PhoneApi {
  private readonly ctx: PluginContext<PhoneOptions>;
  private readonly o: PhoneOptions;
  private readonly host: string;
  private readonly log: Logger;
  private readonly policy: NumberPolicy;
  /** One request per number at a time: issuing, checking and redeeming PINs are read-modify-write. */
  private readonly lock = new KeyedLock();

  constructor(private readonly deps: PhoneServiceDeps) {
    this.ctx = deps.ctx;
    this.o = deps.ctx.options;
    this.host = deps.ctx.host;
    this.log = deps.ctx.log;
    this.policy = new NumberPolicy(this.o.allowed_countries);
  }

  checkNumber(input: string): NumberCheck {
    return this.policy.check(input);
  }

  hasPendingPin(number: string): Promise<boolean> {
    return this.deps.pins.pending(number);
  }

  throttleAddress(ip: string): Promise<number | undefined> {
    return this.deps.throttle.attempt('ip', ip, this.o.throttle.ip);
  }

  /** Throttles the password endpoint per address. */
  throttlePasswordAddress(ip: string): Promise<number | undefined> {
    return this.deps.throttle.attempt('password-ip', ip, this.o.throttle.password_ip);
  }

  private bare(user: string): string {
    return `${user}@${this.host}`;
  }

  private loggedIn(number: string): boolean {
    return this.ctx.server.sessions.resources(this.bare(number)).length > 0;
  }

  requestPin(number: string, client: PinClient): Promise<PinRequestResult> {
    return this.lock.run(number, async (): Promise<PinRequestResult> => {
      if (this.o.prevent_takeover && this.loggedIn(number)) return { status: 'in-use' };
      const { throttle } = this.deps;
      const perNumber = await throttle.attempt('number', number, this.o.throttle.number);
      if (perNumber !== undefined) return { status: 'throttled', retryAfterMs: perNumber, scope: 'number' };
      const installation = client.installation;
      if (installation !== undefined) {
        const wait = await throttle.attempt('installation', installation, this.o.throttle.installation);
        if (wait !== undefined) {
          await throttle.refund('number', number, this.o.throttle.number);
          return { status: 'throttled', retryAfterMs: wait, scope: 'installation' };
        }
      }
      // Stored before sending: the SMS may reach the phone (and the PIN come back) before the
      // gateway's answer reaches us. A failed send takes it back, with the counts it used.
      const issued = await this.deps.pins.issue(number);
      try {
        const text = smsText({ text: this.o.sms.text, texts: this.o.sms.texts, appHash: this.o.sms.app_hash }, issued.pin, this.host, client.language);
        await this.deps.sms.send(number, text);
      } catch (err) {
        this.log.warn('SMS could not be sent', { to: number, err: err instanceof Error ? err.message : String(err) });
        await this.deps.pins.revoke(number, issued);
        await throttle.refund('number', number, this.o.throttle.number);
        if (installation !== undefined) await throttle.refund('installation', installation, this.o.throttle.installation);
        return { status: 'failed' };
      }
      this.log.info('PIN sent', { to: number });
      return { status: 'sent' };
    });
  }

  redeem(number: string, pin: string, password: string): Promise<RedeemResult> {
    const problem = passwordProblem(password);
    if (problem !== undefined) return Promise.resolve({ status: 'invalid-password', text: problem });
    return this.lock.run(number, async (): Promise<RedeemResult> => {
      if (this.o.prevent_takeover && this.loggedIn(number)) return { status: 'in-use' };
      const check = await this.deps.pins.check(number, pin);
      if (check.result === 'none') return { status: 'no-pin' };
      if (check.result === 'wrong') return { status: 'wrong-pin', left: check.left };
      const status = await this.setCredentials(number, password);
      await this.deps.pins.consume(number);
      await this.deps.activity.set(this.host, number, Date.now());
      this.log.info(status === 'created' ? 'phone account created' : 'phone account moved to a new device', { user: this.bare(number) });
      return { status };
    });
  }

  private async setCredentials(number: string, password: string): Promise<'created' | 'changed'> {
    const accounts = this.ctx.server.accounts;
    if (await accounts.exists(number, this.host)) {
      if (await this.inactive(number)) {
        // QuicksyServer's rule: numbers are reassigned by carriers, and a new owner must not
        // inherit the old one's contacts, messages or subscriptions.
        await this.removeAccount(number, new StreamError('reset', 'the number was registered again'));
      } else {
        await accounts.setPassword(number, this.host, password);
        // WhatsApp's "registering on a new device invalidates the key on the old one": the old
        // password no longer works (set above) and the old device's sessions end now.
        this.kick(number, new StreamError('reset', 'this number was registered on another device'));
        return 'changed';
      }
    }
    try {
      await accounts.register(number, this.host, password);
      return 'created';
    } catch (err) {
      // Created meanwhile by someone else (parleyctl, another node): the PIN still proves the number.
      if (!(err instanceof AccountError) || err.code !== 'exists') throw err;
      await accounts.setPassword(number, this.host, password);
      this.kick(number, new StreamError('reset', 'this number was registered on another device'));
      return 'changed';
    }
  }

  /**
   * Unused for longer than reclaim_after. An account with no recorded activity (created before
   * this module ran, or by other means) starts its clock now rather than being judged unused.
   */
  private async inactive(number: string): Promise<boolean> {
    if (this.o.reclaim_after === 0 || this.loggedIn(number)) return false;
    const last = await this.deps.activity.get(this.host, number);
    if (last === undefined) {
      await this.deps.activity.set(this.host, number, Date.now());
      return false;
    }
    return Date.now() - last > this.o.reclaim_after;
  }

  private kick(user: string, error: StreamError): void {
    for (const session of this.ctx.server.sessions.resources(this.bare(user))) session.close(error);
  }

  async removeAccount(user: string, error: StreamError): Promise<boolean> {
    const accounts = this.ctx.server.accounts;
    if (!(await accounts.exists(user, this.host))) return false;
    const bare = this.bare(user);
    this.kick(user, error);
    // Gone first, so no new login can start while the rest is cleaned up.
    await accounts.remove(user, this.host);
    try {
      const roster = this.ctx.use<RosterApi>('roster');
      if (roster) {
        // RFC 6121 §2.5.2 for every contact, so their rosters do not keep a subscription with an
        // account that no longer exists (and may be created again for someone else).
        for (const item of await roster.items(bare)) {
          await roster.remove(bare, item.jid).catch((err: unknown) => this.log.warn('could not cancel a subscription', { contact: item.jid, err }));
        }
      }
    } finally {
      await this.ctx.server.storage.purgeOwner(bare);
      await this.deps.activity.delete(this.host, user);
    }
    this.log.info('account deleted', { user: bare });
    return true;
  }

  /** Records a login or logout of a phone account (reclaim_after counts from the last one). */
  async touch(user: string): Promise<void> {
    if (user.startsWith('+')) await this.deps.activity.set(this.host, user, Date.now());
  }
}
