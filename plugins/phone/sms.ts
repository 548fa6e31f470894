// Sending the PIN by SMS (DESIGN §5). Production: an email-to-SMS gateway over SMTP (nodemailer):
// one email per SMS, to an address made from the number. Without SMTP settings, a development
// transport stands in for the gateway: it writes each SMS to the log and appends it to a file,
// so that `npm start` can be tried without a gateway. That file and those log lines then hold
// live PINs: they are the SMS, and the transport says so at startup.
import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createTransport, type Transporter } from 'nodemailer';
import type { Logger } from '../../lib/log.js';
import type { PhoneOptions } from './options.js';

export interface SmsSender {
  /** Resolves once the gateway (or the file) took the message; rejects when it did not. */
  send(number: string, text: string): Promise<void>;
  close(): void;
}

export interface SmsTemplates {
  text: string;
  texts: Readonly<Record<string, string>>;
  appHash?: string | undefined;
}

/** The SMS text for a PIN, in the request's language when a translation is configured. */
export function smsText(t: SmsTemplates, pin: string, host: string, language: string | undefined): string {
  const template = (language !== undefined && Object.hasOwn(t.texts, language) ? t.texts[language] : undefined) ?? t.text;
  // One pass, so a host name cannot smuggle in a {pin} of its own.
  const text = template.replace(/\{(pin|host)\}/g, (_m, name: string) => (name === 'pin' ? pin : host));
  return t.appHash ? `${text}\n${t.appHash}` : text;
}

export function createSmsSender(o: PhoneOptions['sms'], host: string, log: Logger, dataDir: string): SmsSender {
  const fill = (template: string, number: string) =>
    template.replace(/\{(number|digits|host)\}/g, (_m, name: string) =>
      (name === 'number' ? number : name === 'digits' ? number.slice(1) : host));
  const smtp = o.smtp;
  if (!smtp) {
    const file = path.resolve(dataDir, o.log_file);
    log.warn('no SMTP gateway configured: SMS are written to the log and to a file instead', { file });
    return {
      async send(number, text) {
        log.info('SMS', { to: number, text });
        await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
        // Owner-only: the file holds working PINs.
        await appendFile(file, `${new Date().toISOString()} ${number} ${JSON.stringify(text)}\n`, { mode: 0o600 });
      },
      close() {},
    };
  }
  const transport: Transporter = createTransport({
    host: smtp.host,
    port: smtp.port,
    secure: smtp.security === 'tls',
    requireTLS: smtp.security === 'starttls',
    ignoreTLS: smtp.security === 'none',
    ...(smtp.user !== undefined ? { auth: { user: smtp.user, pass: smtp.password ?? '' } } : {}),
    tls: { rejectUnauthorized: smtp.reject_unauthorized },
    connectionTimeout: smtp.timeout,
    greetingTimeout: smtp.timeout,
    socketTimeout: smtp.timeout,
  });
  return {
    async send(number, text) {
      await transport.sendMail({
        from: fill(o.from, number),
        to: fill(o.to, number),
        subject: o.subject,
        text,
      });
    },
    close() {
      transport.close();
    },
  };
}
