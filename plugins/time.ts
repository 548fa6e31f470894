// XEP-0202 Entity Time: the server's UTC time and offset.
import xml from '@xmpp/xml';
import { definePlugin } from '../lib/plugin/types.js';

export const NS_TIME = 'urn:xmpp:time';

function tzo(date: Date): string {
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  const abs = Math.abs(offset);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

export default definePlugin({
  name: 'time',
  xeps: [{ xep: 202, version: '2.0', status: 'complete' }],
  setup(ctx) {
    ctx.feature(NS_TIME);
    ctx.iq.get(NS_TIME, 'time', () => {
      const now = new Date();
      return xml('time', { xmlns: NS_TIME },
        xml('tzo', {}, tzo(now)),
        // XEP-0082 DateTime in UTC with the Z suffix.
        xml('utc', {}, now.toISOString().replace(/\.\d{3}Z$/, 'Z')));
    });
  },
});
