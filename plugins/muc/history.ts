// Discussion history on entering a room (XEP-0045 §7.2.13–14): the last messages, limited by what
// the room keeps (historylength) and by what the client asks for in <history/>: maxchars,
// maxstanzas, seconds and since, all of which apply together. Each carries a <delay/> from the
// room (XEP-0203) so clients show it as past.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { cloneStanza } from '../../lib/xml/stanza.js';
import { childNs, NS_DELAY, NS_MUC, stamp } from './ns.js';
import type { HistoryEntry, Room } from './room.js';
import type { MucService } from './service.js';

function nonNegativeInt(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The entries a join asks for, oldest first. */
export function selectHistory(history: readonly HistoryEntry[], request: Element | undefined, now = Date.now()): HistoryEntry[] {
  const maxStanzas = nonNegativeInt(request?.attrs.maxstanzas);
  const maxChars = nonNegativeInt(request?.attrs.maxchars);
  const seconds = nonNegativeInt(request?.attrs.seconds);
  const sinceText = request?.attrs.since;
  const since = sinceText !== undefined ? Date.parse(sinceText) : NaN;
  const out: HistoryEntry[] = [];
  let chars = 0;
  for (let i = history.length - 1; i >= 0; i--) {
    const e = history[i]!;
    if (maxStanzas !== undefined && out.length >= maxStanzas) break;
    if (seconds !== undefined && e.ts < now - seconds * 1000) break;
    if (!Number.isNaN(since) && e.ts <= since) break;
    if (maxChars !== undefined && chars + e.chars > maxChars) break;
    chars += e.chars;
    out.push(e);
  }
  return out.reverse();
}

export async function sendHistory(svc: MucService, room: Room, to: string, join: Element): Promise<void> {
  const request = childNs(join, 'x', NS_MUC)?.getChild('history');
  const entries = selectHistory(room.history, request);
  await svc.routeAll(entries.map((e) => {
    const m = cloneStanza(e.stanza);
    m.attrs.to = to;
    m.append(xml('delay', { xmlns: NS_DELAY, from: room.jid, stamp: stamp(e.ts) }));
    return m;
  }));
}

/** Keeps a broadcast message for history, dropping the oldest beyond historylength. */
export function remember(room: Room, stanza: Element, ts: number, id: string): void {
  const limit = room.config.historyLength;
  if (limit === 0) {
    room.history = [];
    return;
  }
  const copy = cloneStanza(stanza);
  delete copy.attrs.to;
  room.history.push({ stanza: copy, ts, chars: copy.toString().length, id });
  if (room.history.length > limit) room.history.splice(0, room.history.length - limit);
}
