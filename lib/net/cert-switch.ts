// A CertStore that can be swapped on reload: listeners keep one object, connections made after a
// reload get the new certificates (SNI is resolved per handshake), open connections keep theirs.
import type tls from 'node:tls';
import type { CertStore } from './certs.js';

export class SwitchableCertStore implements CertStore {
  constructor(private current: CertStore) {}

  replace(next: CertStore): void {
    this.current = next;
  }

  secureContext(servername?: string): tls.SecureContext {
    return this.current.secureContext(servername);
  }

  serverOptions(): tls.TlsOptions {
    return {
      ...this.current.serverOptions(),
      // Long-lived servers (HTTPS) keep the options they were created with; resolving SNI through
      // whichever store is current makes a reload reach them too.
      SNICallback: (servername, cb) => {
        try {
          cb(null, this.current.secureContext(servername));
        } catch (err) {
          cb(err as Error);
        }
      },
    };
  }

  describe(): ReturnType<CertStore['describe']> {
    return this.current.describe();
  }
}
