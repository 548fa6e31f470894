// An independent SCRAM client (RFC 5802) for tests: written against the RFC, not against the
// server's code, so a shared misunderstanding cannot make both sides agree.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

type Algo = 'sha1' | 'sha256' | 'sha512';

export const SCRAM_ALGOS: Record<string, Algo> = { 'SCRAM-SHA-1': 'sha1', 'SCRAM-SHA-256': 'sha256', 'SCRAM-SHA-512': 'sha512' };

export class ScramClient {
  private readonly nonce = randomBytes(18).toString('base64');
  private clientFirstBare = '';
  private serverSignature = Buffer.alloc(0);

  constructor(private readonly mechanism: string, private readonly user: string, private readonly password: string) {}

  private get algo(): Algo {
    return SCRAM_ALGOS[this.mechanism]!;
  }

  first(): string {
    const name = this.user.replace(/=/g, '=3D').replace(/,/g, '=2C');
    this.clientFirstBare = `n=${name},r=${this.nonce}`;
    return Buffer.from(`n,,${this.clientFirstBare}`).toString('base64');
  }

  final(challengeB64: string): string {
    const serverFirst = Buffer.from(challengeB64, 'base64').toString();
    const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
    if (!attrs.r?.startsWith(this.nonce)) throw new Error('server nonce does not extend ours');
    const salted = pbkdf2Sync(this.password, Buffer.from(attrs.s!, 'base64'), Number(attrs.i), createHash(this.algo).digest().length, this.algo);
    const clientKey = createHmac(this.algo, salted).update('Client Key').digest();
    const storedKey = createHash(this.algo).update(clientKey).digest();
    const finalNoProof = `c=biws,r=${attrs.r}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${finalNoProof}`;
    const signature = createHmac(this.algo, storedKey).update(authMessage).digest();
    const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!));
    const serverKey = createHmac(this.algo, salted).update('Server Key').digest();
    this.serverSignature = createHmac(this.algo, serverKey).update(authMessage).digest();
    return Buffer.from(`${finalNoProof},p=${proof.toString('base64')}`).toString('base64');
  }

  /** Checks the server's proof of knowing the credentials (server-final `v=`). */
  verify(successB64: string): boolean {
    const text = Buffer.from(successB64, 'base64').toString();
    return text === `v=${this.serverSignature.toString('base64')}`;
  }
}
