// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`. Offered only over TLS by the caller,
// since the password travels as is.
import type { SaslBackend, SaslResult, SaslSession, SaslSessionOptions } from './index.js';
import { decodeUtf8, saslprep } from './scram.js';

export class PlainSession implements SaslSession {
  private state: 'new' | 'await-response' | 'done' = 'new';

  constructor(
    private readonly backend: SaslBackend,
    private readonly options: Pick<SaslSessionOptions, 'gate' | 'onBadCredentials'> = {},
  ) {}

  async start(initial: Buffer | undefined): Promise<SaslResult> {
    if (this.state !== 'new') return this.fail('malformed-request', 'already started');
    // Without an initial response, an empty challenge asks for it (RFC 4422 §5).
    if (initial === undefined) {
      this.state = 'await-response';
      return { kind: 'challenge', data: Buffer.alloc(0) };
    }
    return this.verify(initial);
  }

  async step(response: Buffer): Promise<SaslResult> {
    if (this.state !== 'await-response') {
      return this.fail('malformed-request', this.state === 'new' ? 'not started' : 'authentication already finished');
    }
    return this.verify(response);
  }

  private fail(condition: Extract<SaslResult, { kind: 'failure' }>['condition'], text?: string): SaslResult {
    this.state = 'done';
    return text === undefined ? { kind: 'failure', condition } : { kind: 'failure', condition, text };
  }

  private async verify(message: Buffer): Promise<SaslResult> {
    this.state = 'done';
    const text = decodeUtf8(message);
    if (text === undefined) return this.fail('malformed-request', 'not UTF-8');
    const parts = text.split('\0');
    if (parts.length !== 3) return this.fail('malformed-request', 'expected authzid NUL authcid NUL passwd');
    const [authzid, authcid, password] = parts as [string, string, string];
    // RFC 4616 §2: authcid and passwd are 1*SAFE; only the authzid may be empty.
    if (authcid === '' || password === '') return this.fail('malformed-request', 'empty authcid or password');

    let username: string;
    let preparedPassword: string;
    try {
      username = saslprep(authcid);
      preparedPassword = saslprep(password);
    } catch {
      // Nothing that fails SASLprep can have been stored, so it cannot match.
      return this.fail('not-authorized');
    }
    if (username === '' || preparedPassword === '') return this.fail('not-authorized');
    if (authzid !== '') {
      let prepared: string | undefined;
      try {
        prepared = saslprep(authzid);
      } catch {
        prepared = undefined;
      }
      // Acting for another identity is not supported; naming oneself is harmless.
      if (prepared !== username) return this.fail('invalid-authzid');
    }

    // Checked before the password is: PBKDF2 is the costly part, and a refused attempt skips it.
    const refused = this.options.gate?.(username);
    if (refused) return this.fail(refused.condition, refused.text);

    let ok: boolean;
    try {
      ok = await this.backend.verifyPassword(username, preparedPassword);
    } catch {
      return this.fail('temporary-auth-failure');
    }
    if (ok) return { kind: 'success', username };
    this.options.onBadCredentials?.(username);
    return this.fail('not-authorized');
  }
}
