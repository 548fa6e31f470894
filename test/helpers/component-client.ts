// A raw XEP-0114 component for tests: opens a jabber:component:accept stream, reads the stream id
// from the server's header and sends the handshake (right or wrong). Built on RawClient, so tests
// can also write anything at all on the stream.
import { createHash } from 'node:crypto';
import type { Element } from 'ltx';
import { RawClient } from './raw-client.js';

export const componentHeader = (to: string, ns = 'jabber:component:accept'): string =>
  `<?xml version='1.0'?><stream:stream xmlns='${ns}' xmlns:stream='http://etherx.jabber.org/streams' to='${to}'>`;

export function digest(streamId: string, secret: string): string {
  return createHash('sha1').update(streamId + secret).digest('hex');
}

export interface OpenComponent {
  client: RawClient;
  /** The id of the server's stream header. */
  streamId: string;
  /** The `from` of the server's stream header. */
  from: string;
}

/** Connects and sends the stream header; resolves with the server's answer header. */
export async function openComponentStream(port: number, domain: string): Promise<OpenComponent> {
  const client = await RawClient.connect(port);
  client.send(componentHeader(domain));
  await headerOf(client);
  return { client, streamId: client.header.id ?? '', from: client.header.from ?? '' };
}

/** Waits for the server's stream header (a component stream gets nothing else before the handshake). */
export async function headerOf(client: RawClient, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (client.headers === 0) {
    if (Date.now() > deadline) throw new Error('no stream header from the server');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Connects and authenticates; resolves with the client and the server's answer to the handshake:
 * 'handshake' on success, else the stream error condition.
 */
export async function connectComponent(port: number, domain: string, secret: string): Promise<OpenComponent & { answer: string }> {
  const open = await openComponentStream(port, domain);
  open.client.send(`<handshake>${digest(open.streamId, secret)}</handshake>`);
  const answer = await open.client.next((el) => el.name === 'handshake' || el.name === 'error');
  if (answer.name === 'handshake') return { ...open, answer: 'handshake' };
  const condition = answer.children.find((c): c is Element => typeof c !== 'string' && c.name !== 'text');
  return { ...open, answer: condition?.name ?? 'error' };
}
