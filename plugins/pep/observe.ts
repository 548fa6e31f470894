// Learning that another plugin stored something: the vcard and private plugins answer their own
// IQ sets and announce nothing afterwards, so a conversion watches the request (at a priority
// above the plugin's handler, letting it pass) and acts when the plugin's result to that very
// request is routed back to the client. An error result, or none within the timeout, means
// nothing was stored and nothing is converted.
//
// Only requests of the account's own clients are watched: the sets this plugin itself sends for
// a conversion carry no session, so a conversion never triggers the opposite one.
import type { Element } from 'ltx';
import { iqEvent } from '../../lib/plugin/context.js';
import type { IqRequest, PluginContext, StanzaEvent } from '../../lib/plugin/types.js';

interface Pending {
  owner: string;
  payload: Element;
  timer: NodeJS.Timeout;
  then(owner: string, payload: Element): Promise<void>;
}

export class SetObserver {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly ctx: PluginContext<unknown>, private readonly timeoutMs: number) {
    ctx.hook('iq/full', (ev: StanzaEvent) => this.answered(ev), 100);
    ctx.onClose(() => {
      for (const p of this.pending.values()) clearTimeout(p.timer);
      this.pending.clear();
    });
  }

  /** Calls `then` after each successful set of `xmlns:name` by an account's own client. */
  watch(xmlns: string, name: string, then: (owner: string, payload: Element) => Promise<void>): void {
    this.ctx.hook(iqEvent('set', 'bare', xmlns, name), (req: IqRequest): undefined => {
      if (!req.session || req.from.bare !== req.to.bare || req.stanza.attrs.id === undefined) return undefined;
      const key = `${req.from.full}\u0000${req.stanza.attrs.id}`;
      const old = this.pending.get(key);
      if (old) clearTimeout(old.timer);
      const timer = setTimeout(() => this.pending.delete(key), this.timeoutMs);
      timer.unref();
      this.pending.set(key, { owner: req.to.bare, payload: req.payload, timer, then });
      return undefined;
    }, 100);
  }

  private async answered(ev: StanzaEvent): Promise<undefined> {
    const type = ev.stanza.attrs.type;
    if (type !== 'result' && type !== 'error') return undefined;
    const key = `${ev.to.full}\u0000${ev.stanza.attrs.id ?? ''}`;
    const p = this.pending.get(key);
    if (!p || ev.from.full !== p.owner) return undefined;
    this.pending.delete(key);
    clearTimeout(p.timer);
    if (type === 'result') {
      // Awaited, so the client has its answer only once the other representation is written.
      try {
        await p.then(p.owner, p.payload);
      } catch (err) {
        this.ctx.log.warn('conversion failed', { err, user: p.owner });
      }
    }
    return undefined;
  }
}
