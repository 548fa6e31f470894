// The plugin's options: every limit and duration has a default and a one-line doc.
import { s, type Infer } from '../../lib/config/schema.js';

const ALLOW_PM = ['anyone', 'participants', 'moderators', 'none'] as const;

export const mucOptions = s.object({
  domain: s.string({
    default: 'conference.{host}',
    minLength: 1,
    doc: 'domain of the MUC service; {host} is replaced by the host name',
  }),
  name: s.string({ default: 'Chatrooms', doc: 'name of the service in service discovery' }),
  create: s.enum(['all', 'local', 'admins'], {
    default: 'local',
    doc: 'who may create rooms: all (any JID, also remote), local (accounts of this host), admins (only the JIDs in admins)',
  }),
  admins: s.array(s.string({ minLength: 1 }), {
    default: [],
    doc: 'bare JIDs of service administrators: they may create rooms and are owners of every room',
  }),
  max_rooms_per_user: s.int({ default: 50, min: 0, doc: 'rooms one user may have created and not yet destroyed (0: no limit); admins are exempt' }),
  max_users: s.int({ default: 200, min: 1, doc: 'default occupant limit of a new room (muc#roomconfig_maxusers)' }),
  max_users_limit: s.int({ default: 1000, min: 1, doc: 'largest occupant limit an owner may configure' }),
  max_history: s.int({ default: 100, min: 0, doc: 'largest muc#roomconfig_historylength an owner may configure: messages kept for history on join' }),
  max_nick_length: s.int({ default: 64, min: 1, max: 1023, doc: 'longest nickname, in characters' }),
  max_subject_length: s.int({ default: 1024, min: 1, doc: 'longest room subject, in characters' }),
  max_vcard_size: s.size({ default: '128KiB', doc: 'largest room vCard (with its avatar) an owner may store' }),
  message_rate: s.int({ default: 10, min: 0, doc: 'groupchat and private messages one occupant may send per rate_window (0: no limit)' }),
  rate_window: s.duration({ default: '10s', doc: 'window of message_rate' }),
  voice_request_interval: s.duration({ default: '30m', doc: 'how long a visitor waits before asking the moderators for voice again' }),
  fanout_batch: s.int({ default: 64, min: 1, doc: 'stanzas routed in one go before a broadcast yields to the event loop' }),
  mam_max_page: s.int({ default: 100, min: 1, doc: 'most messages one room MAM query returns (RSM max above it is lowered)' }),
  iq_forward_timeout: s.duration({ default: '30s', doc: 'how long an IQ forwarded to an occupant waits for its answer' }),
  defaults: s.object({
    public: s.bool({ default: true, doc: 'rooms are listed in the service disco#items' }),
    persistent: s.bool({ default: false, doc: 'rooms survive the last occupant leaving and restarts' }),
    members_only: s.bool({ default: false, doc: 'only members may join' }),
    moderated: s.bool({ default: false, doc: 'only occupants with voice may speak' }),
    whois: s.enum(['moderators', 'anyone'], { default: 'moderators', doc: 'who sees occupants\' real JIDs' }),
    allow_invites: s.bool({ default: false, doc: 'participants may invite others (otherwise only moderators)' }),
    allow_pm: s.enum(ALLOW_PM, { default: 'anyone', doc: 'who may send private messages' }),
    change_subject: s.bool({ default: false, doc: 'participants may change the subject (otherwise only moderators)' }),
    history_length: s.int({ default: 20, min: 0, doc: 'messages sent as history to a joining occupant' }),
    archiving: s.bool({ default: true, doc: 'messages are archived for MAM (XEP-0313) on the room JID' }),
  }, { doc: 'configuration of new rooms' }),
});

export type MucOptions = Infer<typeof mucOptions>;
export type AllowPm = (typeof ALLOW_PM)[number];
export const ALLOW_PM_VALUES: readonly AllowPm[] = ALLOW_PM;
