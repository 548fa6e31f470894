// Stanza routing (RFC 6120 §10, RFC 6121 §8). Plugins get the first word through hook events
// named after the routing decision (`message/bare`, `iq/full`, ...); what no plugin takes is
// handled by the RFC's default rules here. Errors are bounced to the sender, never in reply to
// an error.
import type { Element } from 'ltx';
import { StanzaError } from './errors.js';
import { Jid } from './jid.js';
import type { Logger } from './log.js';
import type { HostContext } from './plugin/host.js';
import { iqEvent, type IqAnswer } from './plugin/context.js';
import type { ComponentHandler, IqRequest, StanzaEvent } from './plugin/types.js';
import type { SessionRegistry } from './session/registry.js';
import type { ClientSession } from './session/types.js';
import { cloneStanza, errorReply, firstChild, iqResult, isError, stanzaKind, type StanzaKind } from './xml/stanza.js';

export type Target = 'host' | 'bare' | 'full';

export interface RouterDeps {
  log: Logger;
  sessions: SessionRegistry;
  /** The host context serving a domain, if it is local. */
  hostFor(domain: string): HostContext | undefined;
  /** An internal service (MUC, upload, ...) that owns a whole domain, if one is registered. */
  componentFor(domain: string): ComponentHandler | undefined;
  userExists(local: string, domain: string): Promise<boolean>;
  /**
   * Hands a stanza for a remote domain to server-to-server federation, which bounces it itself
   * when it cannot be delivered. Absent: remote stanzas bounce with remote-server-not-found.
   */
  remote?(stanza: Element, from: Jid, to: Jid): void;
}

interface PendingIq {
  resolve(el: Element): void;
  timer: NodeJS.Timeout;
}

export class Router {
  private readonly pendingIqs = new Map<string, PendingIq>();
  private iqCounter = 0;

  constructor(private readonly deps: RouterDeps) {}

  /**
   * Routes a stanza whose `from` and `to` are set and valid. `session` is the local client it
   * came from, if any (its pre-routing hooks have already run); `durable` is its StanzaEvent's.
   */
  async route(stanza: Element, session?: ClientSession, durable?: StanzaEvent['durable']): Promise<void> {
    const kind = stanzaKind(stanza);
    if (!kind) return;
    const from = Jid.tryParse(stanza.attrs.from);
    const to = Jid.tryParse(stanza.attrs.to);
    if (!from || !to) {
      this.deps.log.warn('dropping stanza without valid addresses', { name: stanza.name });
      return;
    }
    const component = this.deps.componentFor(to.domain);
    if (component) {
      try {
        await component({ stanza, from, to, session });
      } catch (err) {
        if (err instanceof StanzaError) this.bounce(stanza, err);
        else {
          this.deps.log.error('component failed', { err, domain: to.domain });
          this.bounce(stanza, new StanzaError('internal-server-error'));
        }
      }
      return;
    }
    const host = this.deps.hostFor(to.domain);
    if (!host) {
      // The hook is a filter (blocking drops presence to blocked remote JIDs): a value = taken.
      const handled = await this.runOnAny('route/remote', { stanza, from, to, session });
      if (handled !== undefined) return;
      if (this.deps.remote) this.deps.remote(stanza, from, to);
      else this.bounce(stanza, new StanzaError('remote-server-not-found'));
      return;
    }
    const target: Target = to.local === '' ? 'host' : to.resource === '' ? 'bare' : 'full';
    const ev: StanzaEvent = { stanza, from, to, session, durable };
    if ((await host.hooks.run(`${kind}/${target}`, ev)) !== undefined) return;
    await this.defaultRoute(kind, target, host, ev);
  }

  /** Sends an error reply for a stanza (unless it is an error itself). */
  bounce(stanza: Element, error: StanzaError): void {
    if (isError(stanza) || !stanza.attrs.from) return;
    if (stanza.name === 'presence' && stanza.attrs.type !== undefined && stanza.attrs.type !== 'unavailable'
      && stanza.attrs.type !== 'probe') {
      // Subscription stanzas are never bounced with errors (RFC 6121 §3): they are dropped.
      return;
    }
    const reply = errorReply(stanza, error);
    void this.route(reply);
  }

  /** Writes a stanza to one session. */
  deliver(session: ClientSession, stanza: Element): void {
    session.deliver(stanza);
  }

  sendIq(iq: Element, timeoutMs = 30_000): Promise<Element> {
    if (!iq.attrs.id) iq.attrs.id = `parley-${(++this.iqCounter).toString(36)}`;
    const key = `${iq.attrs.to ?? ''}\u0000${iq.attrs.id}`;
    return new Promise<Element>((resolve) => {
      const timer = setTimeout(() => {
        this.pendingIqs.delete(key);
        resolve(errorReply(iq, new StanzaError('remote-server-timeout')));
      }, timeoutMs);
      timer.unref();
      this.pendingIqs.set(key, { resolve, timer });
      void this.route(iq);
    });
  }

  private async runOnAny(event: string, ev: StanzaEvent): Promise<unknown> {
    // Filters on remote stanzas run on the sender's host; service domains have none.
    const host = this.deps.hostFor(ev.from.domain);
    return host?.hooks.run(event, ev);
  }

  private async defaultRoute(kind: StanzaKind, target: Target, host: HostContext, ev: StanzaEvent): Promise<void> {
    if (kind === 'iq') return this.routeIq(target, host, ev);
    if (target === 'host') {
      // Messages and presence to the server itself: nothing handles them (RFC 6121 §8.5.1 for
      // the domain: the server may ignore them). Errors come only for messages that ask.
      if (kind === 'message' && ev.stanza.attrs.type !== 'error' && ev.stanza.attrs.type !== 'headline'
        && ev.stanza.attrs.type !== 'groupchat') {
        this.bounce(ev.stanza, new StanzaError('service-unavailable'));
      }
      return;
    }
    if (target === 'full') {
      const session = this.deps.sessions.get(ev.to.bare, ev.to.resource);
      if (session) {
        this.deliver(session, ev.stanza);
        if (kind === 'message') await host.hooks.emit('message/delivered', { ...ev, sessions: [session] });
        return;
      }
      // RFC 6121 §8.5.3.2: no such resource.
      if (kind === 'message') {
        const type = ev.stanza.attrs.type ?? 'normal';
        if (type === 'normal' || type === 'chat') return this.routeBare(kind, host, ev);
        if (type === 'groupchat') this.bounce(ev.stanza, new StanzaError('service-unavailable'));
        return;
      }
      const type = ev.stanza.attrs.type;
      if (type === 'subscribe' || type === 'subscribed' || type === 'unsubscribe' || type === 'unsubscribed') {
        return this.routeBare(kind, host, ev);
      }
      return;
    }
    return this.routeBare(kind, host, ev);
  }

  /** RFC 6121 §8.5.2: to a local bare JID (also reached from unknown full JIDs). */
  private async routeBare(kind: 'message' | 'presence', host: HostContext, ev: StanzaEvent): Promise<void> {
    const { stanza, to } = ev;
    const bare = to.bare;
    const resources = this.deps.sessions.resources(bare);
    const exists = resources.length > 0 || (await this.deps.userExists(to.local, to.domain));
    if (!exists) {
      if (kind === 'message' && stanza.attrs.type !== 'headline') {
        this.bounce(stanza, new StanzaError('service-unavailable'));
      }
      return;
    }
    if (kind === 'presence') {
      const type = stanza.attrs.type;
      if (type === undefined || type === 'unavailable') {
        for (const s of resources) if (s.available) this.deliver(s, cloneStanza(stanza));
      }
      // Subscription management and probes belong to the presence plugin; unhandled, dropped.
      return;
    }
    const type = stanza.attrs.type ?? 'normal';
    if (type === 'error') return;
    if (type === 'groupchat') {
      this.bounce(stanza, new StanzaError('service-unavailable'));
      return;
    }
    const candidates = resources.filter((s) => s.available && s.priority >= 0);
    if (candidates.length === 0) {
      const stored = await host.hooks.run('message/offline/handle', ev);
      if (stored === undefined && type !== 'headline') {
        this.bounce(stanza, new StanzaError('service-unavailable'));
      }
      return;
    }
    let recipients = candidates;
    if (type !== 'headline') {
      // Chat and normal go to the most available resource(s): the highest priority, all ties.
      const top = Math.max(...candidates.map((s) => s.priority));
      recipients = candidates.filter((s) => s.priority === top);
    }
    recipients.forEach((s, i) => this.deliver(s, i === 0 ? stanza : cloneStanza(stanza)));
    await host.hooks.emit('message/delivered', { ...ev, sessions: recipients });
  }

  private async routeIq(target: Target, host: HostContext, ev: StanzaEvent): Promise<void> {
    const { stanza, to } = ev;
    const type = stanza.attrs.type;
    if (type === 'result' || type === 'error') {
      if (target === 'full') {
        const session = this.deps.sessions.get(to.bare, to.resource);
        if (session) this.deliver(session, stanza);
        return;
      }
      const key = `${stanza.attrs.from ?? ''}\u0000${stanza.attrs.id ?? ''}`;
      const pending = this.pendingIqs.get(key);
      if (pending) {
        this.pendingIqs.delete(key);
        clearTimeout(pending.timer);
        pending.resolve(stanza);
      }
      return;
    }
    if (type !== 'get' && type !== 'set') {
      this.bounce(stanza, new StanzaError('bad-request', 'iq type must be get, set, result or error'));
      return;
    }
    const payload = firstChild(stanza);
    if (!payload || stanza.children.filter((c) => typeof c !== 'string').length !== 1) {
      this.bounce(stanza, new StanzaError('bad-request', 'an iq get or set has exactly one child element'));
      return;
    }
    if (target === 'full') {
      const session = this.deps.sessions.get(to.bare, to.resource);
      if (session) return this.deliver(session, stanza);
      this.bounce(stanza, new StanzaError('service-unavailable'));
      return;
    }
    if (target === 'bare' && this.deps.sessions.resources(to.bare).length === 0
      && !(await this.deps.userExists(to.local, to.domain))) {
      this.bounce(stanza, new StanzaError('service-unavailable'));
      return;
    }
    const req: IqRequest = { stanza, payload, type, from: ev.from, to, session: ev.session };
    let answer: IqAnswer | undefined;
    try {
      answer = await host.hooks.run<IqAnswer>(iqEvent(type, target, payload.attrs.xmlns ?? '', payload.name), req);
    } catch (err) {
      if (err instanceof StanzaError) {
        this.bounce(stanza, err);
        return;
      }
      this.deps.log.error('iq handler failed', { err, xmlns: payload.attrs.xmlns });
      this.bounce(stanza, new StanzaError('internal-server-error'));
      return;
    }
    if (answer === undefined) {
      this.bounce(stanza, new StanzaError('service-unavailable'));
      return;
    }
    if (!answer.iqAnswer) return;
    await this.route(iqResult(stanza, answer.payload));
  }
}
