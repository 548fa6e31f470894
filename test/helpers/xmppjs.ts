// Options shared by the tests that use @xmpp/client (xmpp.js).

/**
 * xmpp.js gives each step of a connection (the stream open after STARTTLS, SASL, bind) 2 s by
 * default. On a loaded CI machine a TLS handshake with SCRAM can take longer, and the test then
 * fails with a TimeoutError that says nothing about Parley. The tests' own limits still apply.
 */
export const XMPPJS_TIMEOUT_MS = 20_000;
