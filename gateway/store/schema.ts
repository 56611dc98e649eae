import type { Migration } from './database.js';

/**
 * The schema of hisp.sqlite, one migration per released change (never edit a released one: add the
 * next). Times are integer milliseconds since the epoch; addresses used as keys are lowercased;
 * Message-IDs are stored without their angle brackets.
 *
 * Bodies up to 128 KiB are in the spool (`<dataDir>/spool/`, messages.spool_segment/spool_offset;
 * earlier releases kept them inline in messages.body, which is still read), larger ones files under
 * `<dataDir>/messages/` (see message-store.ts for why).
 */
export const HISP_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'messages, deliveries, MDN tracking, inbound de-duplication, quarantine',
    up: `
      -- The envelope of a message, stored once (design rule 17, zone-mta mail-queue).
      CREATE TABLE messages (
        queue_id     TEXT PRIMARY KEY,
        direction    TEXT NOT NULL CHECK (direction IN ('outbound', 'inbound')),
        mail_from    TEXT NOT NULL,              -- '' is the null reverse-path
        rcpt_to      TEXT NOT NULL,              -- JSON array, as received
        submitted_by TEXT,                       -- the authenticated SMTP user
        message_id   TEXT,                       -- the Message-ID header, without <>
        received_at  INTEGER NOT NULL,
        size         INTEGER NOT NULL,
        meta         TEXT,                       -- JSON object: client, HELO, TLS, MDN request…
        body         BLOB                        -- a small body inline; NULL: in messages/<queue_id>.eml
      );
      CREATE INDEX messages_by_message_id ON messages (message_id) WHERE message_id IS NOT NULL;
      CREATE INDEX messages_by_received_at ON messages (received_at);

      -- One row per (message, recipient). While leased, next_attempt_at holds the lease's expiry, so
      -- "due" (state 'queued' and next_attempt_at <= now) covers both deferred work and the work of a
      -- worker that died: one partial index answers lease() (per direction).
      CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY,
        queue_id        TEXT NOT NULL REFERENCES messages (queue_id) ON DELETE CASCADE,
        seq             INTEGER NOT NULL,
        recipient       TEXT NOT NULL,
        domain          TEXT NOT NULL,          -- lowercased: one secured copy per recipient domain
        direction       TEXT NOT NULL,          -- the message's: relay workers and local delivery lease apart
        state           TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'delivered', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,  -- tries that ended with a reply (complete, defer, fail)
        leases          INTEGER NOT NULL DEFAULT 0,  -- times leased; the current one is the attempt token
        lease_owner     TEXT,
        next_attempt_at INTEGER,                -- NULL once final
        last_attempt_at INTEGER,
        finished_at     INTEGER,
        completed_lease INTEGER,                -- the lease whose complete() delivered it
        reply_code      INTEGER,                -- the last remote reply (defer keeps it)
        reply_enhanced  TEXT,
        reply_text      TEXT,
        dsn_queued_at   INTEGER,                -- failed: when its DSN was queued (NULL: still to send)
        UNIQUE (queue_id, seq)
      );
      CREATE INDEX deliveries_due ON deliveries (direction, next_attempt_at) WHERE state = 'queued';
      CREATE INDEX deliveries_dsn_pending ON deliveries (finished_at) WHERE state = 'failed' AND dsn_queued_at IS NULL;

      -- MDN tracking per (message, recipient) (R-MDN-7, R-MDN-9, decision 6). next_deadline is the
      -- one deadline still pending (processed, then dispatched), NULL once the outcome is known.
      CREATE TABLE mdn_tracking (
        id                    INTEGER PRIMARY KEY,
        queue_id              TEXT NOT NULL,
        message_id            TEXT NOT NULL,
        recipient             TEXT NOT NULL,
        sender                TEXT NOT NULL,
        dispatched_requested  INTEGER NOT NULL,
        sent_at               INTEGER NOT NULL,
        processed_deadline    INTEGER NOT NULL,
        dispatched_timeout_ms INTEGER NOT NULL,
        dispatched_deadline   INTEGER,
        processed_at          INTEGER,
        processed_late        INTEGER NOT NULL DEFAULT 0,
        dispatched_at         INTEGER,
        dispatched_late       INTEGER NOT NULL DEFAULT 0,
        failed_at             INTEGER,
        failed_late           INTEGER NOT NULL DEFAULT 0,
        timed_out             TEXT CHECK (timed_out IN ('processed', 'dispatched')),
        timed_out_at          INTEGER,
        next_deadline         INTEGER,
        UNIQUE (message_id, recipient)
      );
      CREATE INDEX mdn_tracking_due ON mdn_tracking (next_deadline) WHERE next_deadline IS NOT NULL;
      CREATE INDEX mdn_tracking_by_queue_id ON mdn_tracking (queue_id);
      CREATE INDEX mdn_tracking_by_sent_at ON mdn_tracking (sent_at);

      -- Inbound messages already accepted, per (envelope sender, Message-ID, recipient).
      CREATE TABLE inbound_seen (
        sender     TEXT NOT NULL,
        message_id TEXT NOT NULL,
        recipient  TEXT NOT NULL,
        seen_at    INTEGER NOT NULL,
        PRIMARY KEY (sender, message_id, recipient)
      ) WITHOUT ROWID;
      CREATE INDEX inbound_seen_by_seen_at ON inbound_seen (seen_at);

      -- Inbound messages kept for the operator, with the reason (an error code and its detail).
      CREATE TABLE quarantine (
        queue_id       TEXT PRIMARY KEY REFERENCES messages (queue_id) ON DELETE CASCADE,
        reason_code    TEXT NOT NULL,
        detail         TEXT NOT NULL,
        quarantined_at INTEGER NOT NULL
      );
      CREATE INDEX quarantine_by_time ON quarantine (quarantined_at);
    `,
  },
  {
    version: 2,
    description: 'MDN sent per inbound recipient; how a tracked failure was reported',
    up: `
      -- The MDNs the receive side queued, per (inbound message, recipient, disposition): a worker
      -- that dies after queuing one and retries the delivery does not send it twice.
      CREATE TABLE mdn_sent (
        queue_id    TEXT NOT NULL REFERENCES messages (queue_id) ON DELETE CASCADE,
        recipient   TEXT NOT NULL,
        disposition TEXT NOT NULL,
        queued_at   INTEGER NOT NULL,
        PRIMARY KEY (queue_id, recipient, disposition)
      ) WITHOUT ROWID;

      -- A failure the sender learnt from something other than a signed, trusted MDN: an ordinary
      -- mail server's plain DSN is recorded as 'unauthenticated DSN from <MTA>' (issue 5).
      ALTER TABLE mdn_tracking ADD COLUMN failure_note TEXT;
    `,
  },
  {
    version: 3,
    description: 'message bodies in the spool',
    up: `
      -- A body in the spool (message-store.ts, body-spool.ts): its segment and the offset of its
      -- record there. NULL for a body inline in the row (earlier releases) or in a file.
      ALTER TABLE messages ADD COLUMN spool_segment INTEGER;
      ALTER TABLE messages ADD COLUMN spool_offset INTEGER;
      -- Which segments are still referred to (reclaim).
      CREATE INDEX messages_by_spool_segment ON messages (spool_segment) WHERE spool_segment IS NOT NULL;
    `,
  },
  {
    version: 4,
    description: 'quarantine bounds: entry sizes, their total, automatic drops per day',
    up: `
      -- The size of the entry's message, kept with the entry (quarantine-store.ts): the triggers
      -- below keep the total in quarantine_usage, so that the size cap is checked in constant time
      -- however many entries there are; an entry too large for the cap is found by index.
      ALTER TABLE quarantine ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
      UPDATE quarantine SET size = COALESCE((SELECT m.size FROM messages AS m WHERE m.queue_id = quarantine.queue_id), 0);
      CREATE INDEX quarantine_by_size ON quarantine (size);
      CREATE TABLE quarantine_usage (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        entries INTEGER NOT NULL,
        bytes   INTEGER NOT NULL
      );
      INSERT INTO quarantine_usage (id, entries, bytes) SELECT 1, COUNT(*), COALESCE(SUM(size), 0) FROM quarantine;
      -- Also fired by the ON DELETE CASCADE of a deleted message.
      CREATE TRIGGER quarantine_usage_insert AFTER INSERT ON quarantine BEGIN
        UPDATE quarantine_usage SET entries = entries + 1, bytes = bytes + NEW.size WHERE id = 1;
      END;
      CREATE TRIGGER quarantine_usage_delete AFTER DELETE ON quarantine BEGIN
        UPDATE quarantine_usage SET entries = entries - 1, bytes = bytes - OLD.size WHERE id = 1;
      END;
      CREATE TRIGGER quarantine_usage_update AFTER UPDATE OF size ON quarantine BEGIN
        UPDATE quarantine_usage SET bytes = bytes - OLD.size + NEW.size WHERE id = 1;
      END;

      -- Entries the gateway dropped by itself, per UTC day (ms of its midnight) and cause: past
      -- quarantine.retentionDays, or over quarantine.maxBytes. Each drop is also logged with its
      -- detail; this is what \`hisp quarantine list\` reports afterwards. Kept 90 days.
      CREATE TABLE quarantine_drops (
        day     INTEGER NOT NULL,
        cause   TEXT NOT NULL CHECK (cause IN ('retention', 'cap')),
        entries INTEGER NOT NULL,
        bytes   INTEGER NOT NULL,
        PRIMARY KEY (day, cause)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 5,
    description: 'failure notices that could not be queued: back-off and the reason',
    up: `
      -- A failure notice (DSN) that could not be built or queued is tried again on the retry
      -- schedule, not at every round of the notifier (issue 14, item 1); one that never can be is
      -- settled with its reason (dsn_queued_at set, dsn_error the why), for the operator to see.
      ALTER TABLE deliveries ADD COLUMN dsn_attempts INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE deliveries ADD COLUMN dsn_retry_at INTEGER;
      ALTER TABLE deliveries ADD COLUMN dsn_error TEXT;
      -- The same for the notice of an MDN time-out.
      ALTER TABLE mdn_tracking ADD COLUMN notice_attempts INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE mdn_tracking ADD COLUMN notice_retry_at INTEGER;
      ALTER TABLE mdn_tracking ADD COLUMN notice_error TEXT;
    `,
  },
  {
    version: 6,
    description: 'the event outbox: every state change of a recipient, written by triggers in the commit of the change; failure reasons and evidence; idempotency keys',
    up: `
      -- Why a delivery failed, in the API's words (gateway/events/failure-reason.ts): no-certificate,
      -- untrusted, no-route, rejected, expired, bounced, local-error. Set with the failure.
      ALTER TABLE deliveries ADD COLUMN failure_reason TEXT;
      -- The notification that moved a tracked recipient on: its Message-ID (the evidence the API
      -- shows), and whether a failure came as an MDN or as a DSN.
      ALTER TABLE mdn_tracking ADD COLUMN processed_evidence TEXT;
      ALTER TABLE mdn_tracking ADD COLUMN dispatched_evidence TEXT;
      ALTER TABLE mdn_tracking ADD COLUMN failed_evidence TEXT;
      ALTER TABLE mdn_tracking ADD COLUMN failed_via TEXT CHECK (failed_via IN ('mdn', 'dsn'));

      -- The outbox (issue 15, "Events"). seq is the cursor (?after=): AUTOINCREMENT never reuses a
      -- value, and SQLite has one writer at a time, so seq grows in commit order: a reader that has
      -- seen seq n has seen every event committed before it. Rows are written only by
      -- the triggers below, inside the transaction of the change they announce: an event cannot be
      -- lost between the change and its delivery, nor announce a change that was rolled back.
      -- address: whose event it is (the sender of an outbound message, the mailbox of a received
      -- one); an API key sees the events of the addresses and domains of its scopes.
      CREATE TABLE events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL UNIQUE,
        type       TEXT NOT NULL,
        queue_id   TEXT NOT NULL,
        recipient  TEXT NOT NULL,
        address    TEXT NOT NULL,
        domain     TEXT NOT NULL,
        at         INTEGER NOT NULL,
        data       TEXT NOT NULL
      );
      CREATE INDEX events_by_queue_id ON events (queue_id, seq);
      CREATE INDEX events_by_domain ON events (domain, seq);
      CREATE INDEX events_by_at ON events (at);

      -- queued: a delivery created for an outbound message with a sender (not our own notices,
      -- whose reverse-path is null: RFC 3798 §3, RFC 3464 §2).
      CREATE TRIGGER events_queued AFTER INSERT ON deliveries
      WHEN NEW.direction = 'outbound' AND (SELECT mail_from FROM messages WHERE queue_id = NEW.queue_id) <> ''
      BEGIN
        INSERT INTO events (id, type, queue_id, recipient, address, domain, at, data)
        SELECT 'evt_' || lower(hex(randomblob(12))), 'message.queued', NEW.queue_id, NEW.recipient, lower(m.mail_from),
               lower(substr(m.mail_from, instr(m.mail_from, '@') + 1)), m.received_at,
               json_object('state', 'queued', 'messageId', m.message_id)
        FROM messages AS m WHERE m.queue_id = NEW.queue_id;
      END;

      -- relayed (outbound, the remote HISP took it) and received (inbound, delivered to the mailbox).
      CREATE TRIGGER events_delivered AFTER UPDATE OF state ON deliveries
      WHEN NEW.state = 'delivered' AND OLD.state <> 'delivered'
        AND (NEW.direction = 'inbound' OR (SELECT mail_from FROM messages WHERE queue_id = NEW.queue_id) <> '')
      BEGIN
        INSERT INTO events (id, type, queue_id, recipient, address, domain, at, data)
        SELECT 'evt_' || lower(hex(randomblob(12))),
               CASE NEW.direction WHEN 'outbound' THEN 'message.relayed' ELSE 'message.received' END,
               NEW.queue_id, NEW.recipient,
               CASE NEW.direction WHEN 'outbound' THEN lower(m.mail_from) ELSE lower(NEW.recipient) END,
               CASE NEW.direction WHEN 'outbound' THEN lower(substr(m.mail_from, instr(m.mail_from, '@') + 1)) ELSE NEW.domain END,
               COALESCE(NEW.finished_at, 0),
               CASE NEW.direction WHEN 'outbound'
                 THEN json_object('state', 'relayed', 'messageId', m.message_id,
                        'evidence', json_object('reply', trim(NEW.reply_code || ' ' || COALESCE(NEW.reply_enhanced || ' ', '') || COALESCE(NEW.reply_text, ''))))
                 ELSE json_object('state', 'received', 'messageId', m.message_id, 'from', m.mail_from)
               END
        FROM messages AS m WHERE m.queue_id = NEW.queue_id;
      END;

      CREATE TRIGGER events_failed AFTER UPDATE OF state ON deliveries
      WHEN NEW.state = 'failed' AND OLD.state <> 'failed' AND NEW.direction = 'outbound'
        AND (SELECT mail_from FROM messages WHERE queue_id = NEW.queue_id) <> ''
      BEGIN
        INSERT INTO events (id, type, queue_id, recipient, address, domain, at, data)
        SELECT 'evt_' || lower(hex(randomblob(12))), 'message.failed', NEW.queue_id, NEW.recipient, lower(m.mail_from),
               lower(substr(m.mail_from, instr(m.mail_from, '@') + 1)), COALESCE(NEW.finished_at, 0),
               json_object('state', 'failed', 'messageId', m.message_id, 'reason', COALESCE(NEW.failure_reason, 'rejected'),
                 'detail', trim(COALESCE(NEW.reply_code || ' ', '') || COALESCE(NEW.reply_enhanced || ' ', '') || COALESCE(NEW.reply_text, '')),
                 'evidence', json_object('reply', trim(COALESCE(NEW.reply_code || ' ', '') || COALESCE(NEW.reply_enhanced || ' ', '') || COALESCE(NEW.reply_text, ''))))
        FROM messages AS m WHERE m.queue_id = NEW.queue_id;
      END;

      -- processed, dispatched, a failure MDN or DSN, and the two time-outs (R-MDN-7, decision 6).
      CREATE TRIGGER events_processed AFTER UPDATE OF processed_at ON mdn_tracking
      WHEN NEW.processed_at IS NOT NULL AND OLD.processed_at IS NULL
      BEGIN
        INSERT INTO events (id, type, queue_id, recipient, address, domain, at, data)
        VALUES ('evt_' || lower(hex(randomblob(12))), 'message.processed', NEW.queue_id, NEW.recipient, lower(NEW.sender),
                lower(substr(NEW.sender, instr(NEW.sender, '@') + 1)), NEW.processed_at,
                json_object('state', 'processed', 'messageId', NEW.message_id, 'late', json(CASE NEW.processed_late WHEN 1 THEN 'true' ELSE 'false' END),
                  'evidence', json_object('mdnMessageId', NEW.processed_evidence)));
      END;
      CREATE TRIGGER events_dispatched AFTER UPDATE OF dispatched_at ON mdn_tracking
      WHEN NEW.dispatched_at IS NOT NULL AND OLD.dispatched_at IS NULL
      BEGIN
        INSERT INTO events (id, type, queue_id, recipient, address, domain, at, data)
        VALUES ('evt_' || lower(hex(randomblob(12))), 'message.dispatched', NEW.queue_id, NEW.recipient, lower(NEW.sender),
                lower(substr(NEW.sender, instr(NEW.sender, '@') + 1)), NEW.dispatched_at,
                json_object('state', 'dispatched', 'messageId', NEW.message_id, 'late', json(CASE NEW.dispatched_late WHEN 1 THEN 'true' ELSE 'false' END),
                  'evidence', json_object('mdnMessageId', NEW.dispatched_evidence)));
      END;
      CREATE TRIGGER events_mdn_failed AFTER UPDATE OF failed_at ON mdn_tracking
      WHEN NEW.failed_at IS NOT NULL AND OLD.failed_at IS NULL
      BEGIN
        INSERT INTO events (id, type, queue_id, recipient, address, domain, at, data)
        VALUES ('evt_' || lower(hex(randomblob(12))), 'message.failed', NEW.queue_id, NEW.recipient, lower(NEW.sender),
                lower(substr(NEW.sender, instr(NEW.sender, '@') + 1)), NEW.failed_at,
                json_object('state', 'failed', 'messageId', NEW.message_id,
                  'reason', CASE WHEN NEW.failed_via = 'dsn' OR NEW.failure_note IS NOT NULL THEN 'dsn' ELSE 'failure-mdn' END,
                  'detail', COALESCE(NEW.failure_note, CASE WHEN NEW.failed_via = 'dsn' THEN 'a delivery status notification reported a failure' ELSE 'a signed MDN reported a failure' END),
                  'late', json(CASE NEW.failed_late WHEN 1 THEN 'true' ELSE 'false' END),
                  'evidence', json_object(CASE WHEN NEW.failed_via = 'dsn' OR NEW.failure_note IS NOT NULL THEN 'dsnMessageId' ELSE 'mdnMessageId' END, NEW.failed_evidence)));
      END;
      CREATE TRIGGER events_timed_out AFTER UPDATE OF timed_out ON mdn_tracking
      WHEN NEW.timed_out IS NOT NULL AND OLD.timed_out IS NULL
      BEGIN
        INSERT INTO events (id, type, queue_id, recipient, address, domain, at, data)
        VALUES ('evt_' || lower(hex(randomblob(12))), 'message.failed', NEW.queue_id, NEW.recipient, lower(NEW.sender),
                lower(substr(NEW.sender, instr(NEW.sender, '@') + 1)), COALESCE(NEW.timed_out_at, 0),
                json_object('state', 'failed', 'messageId', NEW.message_id, 'reason', NEW.timed_out || '-timeout',
                  'detail', CASE NEW.timed_out WHEN 'processed' THEN 'no processed MDN came in time' ELSE 'no dispatched MDN came in time' END,
                  'evidence', json_object()));
      END;

      -- Idempotency-Key of a send (issue 15): the first response, kept in the commit that stores
      -- the message; the same key with another body is refused. Scoped by API key. Kept 24 h.
      CREATE TABLE idempotency_keys (
        api_key_id   TEXT NOT NULL,
        key          TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        queue_id     TEXT NOT NULL,
        response     TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        PRIMARY KEY (api_key_id, key)
      ) WITHOUT ROWID;
      CREATE INDEX idempotency_keys_by_created_at ON idempotency_keys (created_at);
    `,
  },
  {
    version: 7,
    description: 'API mailboxes: received messages waiting for the PHR to take them',
    up: `
      -- A message delivered to an address whose delivery is \`api\` (issue 15, "Receive"): it waits
      -- here until the PHR acknowledges it, which is its final delivery (the dispatched MDN goes
      -- then). The message (Authentication-Results, trace, then the decrypted message as signed)
      -- is a file of its own under <dataDir>/mailboxes/, independent of the queue's copy, which is
      -- purged a week after delivery. delivery_id is the queue delivery's: a retried delivery finds
      -- its row and writes nothing twice (exactly once per delivery).
      CREATE TABLE mailbox_messages (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        delivery_id  TEXT NOT NULL UNIQUE,
        mailbox      TEXT NOT NULL,              -- lowercased recipient address
        queue_id     TEXT NOT NULL,              -- the inbound message (its MDNs are recorded under it)
        mail_from    TEXT NOT NULL,
        message_id   TEXT,
        received_at  INTEGER NOT NULL,
        size         INTEGER NOT NULL,
        file         TEXT NOT NULL,              -- relative to the data folder
        security     TEXT NOT NULL,              -- JSON: the signer metadata of the trust check
        dispatched_requested INTEGER NOT NULL,   -- the sender asked for a dispatched MDN (R-MDN-5)
        acked_at     INTEGER,
        acked_by     TEXT
      );
      CREATE INDEX mailbox_messages_by_mailbox ON mailbox_messages (mailbox, seq);
      CREATE INDEX mailbox_messages_by_acked_at ON mailbox_messages (acked_at) WHERE acked_at IS NOT NULL;
    `,
  },
  {
    version: 8,
    description: 'webhook subscriptions of API keys: where the events go, and how far they got',
    up: `
      -- One subscription per API key (issue 15, "Events"): the events of the key's scopes are POSTed
      -- to url, signed per Standard Webhooks with secret (kept as it must be used: an HMAC key; the
      -- database is the data folder's, mode 0600). cursor is the last event the subscriber
      -- acknowledged with a 2xx: at least once, in order; a failure waits next_attempt_at
      -- (back-off), never less.
      CREATE TABLE webhooks (
        api_key_id      TEXT PRIMARY KEY,
        url             TEXT NOT NULL,
        secret          TEXT NOT NULL,
        cursor          INTEGER NOT NULL,
        failures        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        last_success_at INTEGER,
        created_at      INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 9,
    description: 'API keys: a hash of each secret, the key\'s scopes and rate',
    up: `
      -- The keys of the HTTP API (api-key-store.ts, issue 15). The key itself is shown once, when
      -- created: only the SHA-256 of its secret part is kept. id is its public part; actions,
      -- send_as and mailboxes its scopes (JSON arrays); rate_per_minute NULL: [api.rateLimit]'s.
      -- A revoked key stays listed with the time of its revocation.
      CREATE TABLE api_keys (
        id              TEXT PRIMARY KEY,
        name            TEXT NOT NULL,
        secret_sha256   BLOB NOT NULL,
        actions         TEXT NOT NULL,
        send_as         TEXT NOT NULL,
        mailboxes       TEXT NOT NULL,
        rate_per_minute INTEGER,
        created_at      INTEGER NOT NULL,
        revoked_at      INTEGER,
        last_used_at    INTEGER
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 10,
    description: 'the audit log: an append-only chain of who did what, every event of the outbox among it',
    up: `
      -- The audit log (issue 16, "Audit"; gateway/audit/). Each entry carries the hash of the one
      -- before (prev_hash) and its own (hash: SHA-256 over prev_hash and every column, in
      -- gateway/audit/audit-chain.ts, registered on each connection as hisp_audit_hash): editing or
      -- deleting a past entry breaks the chain (hisp audit verify). seq counts 1, 2, 3… with no gap:
      -- it counts on from sqlite_sequence too, so an entry removed from the end leaves a gap before
      -- the next one. actor_kind: api-key, smtp-user, operator, remote, system. outcome: success or
      -- failure. detail: JSON, never a secret. patient_ref: the data holder's patient reference
      -- (authorizations and transmissions), for the patient's history.
      CREATE TABLE audit_log (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        id          TEXT NOT NULL UNIQUE,
        at          INTEGER NOT NULL,
        actor_kind  TEXT NOT NULL,
        actor_id    TEXT NOT NULL,
        action      TEXT NOT NULL,
        object_kind TEXT NOT NULL,
        object_id   TEXT NOT NULL,
        outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
        patient_ref TEXT,
        detail      TEXT NOT NULL,
        prev_hash   TEXT NOT NULL,
        hash        TEXT NOT NULL
      );
      CREATE INDEX audit_log_by_at ON audit_log (at);
      CREATE INDEX audit_log_by_action ON audit_log (action, seq);
      CREATE INDEX audit_log_by_actor ON audit_log (actor_id, seq);
      CREATE INDEX audit_log_by_object ON audit_log (object_kind, object_id, seq);
      CREATE INDEX audit_log_by_patient ON audit_log (patient_ref, seq) WHERE patient_ref IS NOT NULL;

      -- Append-only through SQL. Whoever holds the file can drop these triggers: the chain is what
      -- shows an edit then.
      CREATE TRIGGER audit_log_append_only_update BEFORE UPDATE ON audit_log
      BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
      CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log
      BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

      -- Every event of the outbox (a message queued, relayed, processed, dispatched, failed,
      -- received) is an audit entry too, in the same transaction. The actor: who submitted a queued
      -- message (api:KEY an API key, else the SMTP user), the sender of a received one, the
      -- recipient's side for its MDNs, hisp itself for the relay's outcomes.
      CREATE TRIGGER audit_events AFTER INSERT ON events
      BEGIN
        INSERT INTO audit_log (seq, id, at, actor_kind, actor_id, action, object_kind, object_id, outcome, patient_ref, detail, prev_hash, hash)
        SELECT s.seq, s.id, NEW.at, s.actor_kind, s.actor_id, NEW.type, 'message', NEW.queue_id, s.outcome, NULL, s.detail, s.prev,
               hisp_audit_hash(s.prev, s.seq, s.id, NEW.at, s.actor_kind, s.actor_id, NEW.type, 'message', NEW.queue_id, s.outcome, NULL, s.detail)
        FROM (
          -- sqlite_sequence: never a seq handed out before (an entry cut off the end leaves a gap); it is
          -- written back at the end of a statement, so the entries of one statement (an UPDATE of two
          -- deliveries fires this twice) count on from the largest seq there is.
          SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'), 0), COALESCE((SELECT max(seq) FROM audit_log), 0)) + 1 AS seq,
                 -- The event's own random id, not randomblob(): SQLite may flatten this subquery and
                 -- evaluate the expression once per use (the column, the hash), differently each time.
                 'aud_' || substr(NEW.id, 5) AS id,
                 COALESCE((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), '0000000000000000000000000000000000000000000000000000000000000000') AS prev,
                 CASE
                   WHEN NEW.type = 'message.queued' THEN
                     CASE WHEN m.submitted_by LIKE 'api:%' THEN 'api-key' WHEN COALESCE(m.submitted_by, '') <> '' THEN 'smtp-user' ELSE 'system' END
                   WHEN NEW.type IN ('message.received', 'message.processed', 'message.dispatched') THEN 'remote'
                   ELSE 'system'
                 END AS actor_kind,
                 CASE
                   WHEN NEW.type = 'message.queued' THEN
                     CASE WHEN m.submitted_by LIKE 'api:%' THEN substr(m.submitted_by, 5) WHEN COALESCE(m.submitted_by, '') <> '' THEN m.submitted_by ELSE 'hisp' END
                   WHEN NEW.type = 'message.received' THEN lower(COALESCE(m.mail_from, ''))
                   WHEN NEW.type IN ('message.processed', 'message.dispatched') THEN lower(NEW.recipient)
                   ELSE 'hisp'
                 END AS actor_id,
                 CASE NEW.type WHEN 'message.failed' THEN 'failure' ELSE 'success' END AS outcome,
                 json_object('event', NEW.id, 'recipient', NEW.recipient, 'address', NEW.address, 'data', json(NEW.data)) AS detail
          FROM (SELECT NULL) LEFT JOIN messages AS m ON m.queue_id = NEW.queue_id
        ) AS s;
      END;
    `,
  },
  {
    version: 11,
    description: 'Blue Button+ transmit: patient authorizations, records pushed, and one transmission per destination',
    up: `
      -- Blue Button+ "Transmitting Data Using the Direct Protocol" (issue 16, gateway/transmit/): a
      -- patient's authorization to send their record to destinations (R-BB-1). Nothing is ever
      -- deleted: a revocation sets revoked_at/revoked_by (prospective only); a once-authorization is
      -- fulfilled by its first send (fulfilled_sha256: the document it went with, so that a push of
      -- the same document retried after a crash still reaches the destinations it had not reached).
      -- patient_key: '<assigning authority>|<patientRef>', or the patientRef alone.
      CREATE TABLE transmit_authorizations (
        id                  TEXT PRIMARY KEY,
        patient_key         TEXT NOT NULL,
        patient_ref         TEXT NOT NULL,
        assigning_authority TEXT,
        patient_name        TEXT NOT NULL,
        patient_birth_date  TEXT,
        from_address        TEXT NOT NULL,
        data_holder_name    TEXT NOT NULL,
        destinations        TEXT NOT NULL,
        frequency           TEXT NOT NULL CHECK (frequency IN ('once', 'on-update')),
        interval_minutes    INTEGER,
        granted_by          TEXT NOT NULL,
        method              TEXT NOT NULL,
        consent_version     TEXT NOT NULL,
        consent_sha256      TEXT NOT NULL,
        expires_at          INTEGER,
        created_at          INTEGER NOT NULL,
        created_by          TEXT NOT NULL,
        revoked_at          INTEGER,
        revoked_by          TEXT,
        fulfilled_at        INTEGER,
        fulfilled_sha256    TEXT
      ) WITHOUT ROWID;
      CREATE INDEX transmit_authorizations_by_patient ON transmit_authorizations (patient_key, created_at);
      CREATE TRIGGER transmit_authorizations_kept BEFORE DELETE ON transmit_authorizations
      BEGIN SELECT RAISE(ABORT, 'authorizations are revoked, never deleted'); END;

      -- A document the EHR pushed for a patient (its octets are not kept: they go in the messages).
      CREATE TABLE transmit_records (
        id           TEXT PRIMARY KEY,
        patient_key  TEXT NOT NULL,
        sha256       TEXT NOT NULL,
        filename     TEXT NOT NULL,
        content_type TEXT NOT NULL,
        kind         TEXT NOT NULL,
        trigger      TEXT NOT NULL,
        made_at      INTEGER NOT NULL,
        received_at  INTEGER NOT NULL,
        received_by  TEXT NOT NULL
      ) WITHOUT ROWID;

      -- One row per destination of a push: queued (with the message it went in) or skipped (why).
      -- The unique index is the rule "the same document is never sent twice to the same destination":
      -- two pushes at once both compose, and the second commit fails on it and is rolled back.
      CREATE TABLE transmissions (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT NOT NULL UNIQUE,
        patient_key      TEXT NOT NULL,
        record_id        TEXT NOT NULL,
        authorization_id TEXT NOT NULL,
        destination      TEXT NOT NULL,
        sha256           TEXT NOT NULL,
        trigger          TEXT NOT NULL,
        status           TEXT NOT NULL CHECK (status IN ('queued', 'skipped')),
        reason           TEXT,
        queue_id         TEXT,
        message_id       TEXT,
        created_at       INTEGER NOT NULL
      );
      CREATE UNIQUE INDEX transmissions_sent_once ON transmissions (patient_key, destination, sha256) WHERE status = 'queued';
      CREATE INDEX transmissions_by_patient ON transmissions (patient_key, seq);
      CREATE INDEX transmissions_last_sent ON transmissions (authorization_id, destination, created_at) WHERE status = 'queued';
    `,
  },
  {
    version: 12,
    description: 'FHIR Tasks: each message sent for an MHD Provide Document Bundle, with its SubmissionSet',
    up: `
      -- One row per Direct message sent for an ITI-65 Provide Document Bundle (gateway/fhir/): one
      -- message per intended recipient, so the message's queue_id is its Task's id. submission_id:
      -- the SubmissionSet's id (List/<id>, Task.focus); patient: JSON, List.subject as a FHIR Reference (Task.for);
      -- owner_type: the resource the recipient was found in; documents: JSON array of the
      -- DocumentReference ids (<submission>-<n>).
      CREATE TABLE fhir_tasks (
        queue_id      TEXT PRIMARY KEY,
        submission_id TEXT NOT NULL,
        recipient     TEXT NOT NULL,
        owner_type    TEXT NOT NULL,
        patient       TEXT,
        documents     TEXT NOT NULL,
        created_at    INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX fhir_tasks_by_submission ON fhir_tasks (submission_id, queue_id);
    `,
  },
  {
    version: 13,
    description: "the audit entries of a transmission's message carry the patient: the patient's audit shows its deliveries' outcomes",
    up: `
      -- Issue 16, "Audit": "every transmission and its outcome", and GET /v1/audit?patientRef= for
      -- the patient's history. The outcomes (relayed, processed, dispatched, failed) are audit
      -- entries of the message, written by the trigger below, which had no patient (migration 10).
      -- A message sent for a Blue Button+ transmission is its row in transmissions (queue_id, in the
      -- message's own commit), whose patient_key is the form the application's entries take:
      -- '<assigning authority>|<patientRef>', or the reference alone (gateway/transmit/).
      CREATE INDEX transmissions_by_queue_id ON transmissions (queue_id) WHERE queue_id IS NOT NULL;

      -- The same trigger as migration 10's (same actors, outcome, seq and chain), plus patient_ref,
      -- and the transmission's id in the detail. message.queued fires when the deliveries are
      -- inserted, before the send's commit writes the transmission row: the message's meta names
      -- the transmission and its authorization then (TransmitService.push), and the authorization's
      -- patient_key is the transmission's. The hash covers patient_ref like every column.
      DROP TRIGGER audit_events;
      CREATE TRIGGER audit_events AFTER INSERT ON events
      BEGIN
        INSERT INTO audit_log (seq, id, at, actor_kind, actor_id, action, object_kind, object_id, outcome, patient_ref, detail, prev_hash, hash)
        SELECT s.seq, s.id, NEW.at, s.actor_kind, s.actor_id, NEW.type, 'message', NEW.queue_id, s.outcome, s.patient_ref, s.detail, s.prev,
               hisp_audit_hash(s.prev, s.seq, s.id, NEW.at, s.actor_kind, s.actor_id, NEW.type, 'message', NEW.queue_id, s.outcome, s.patient_ref, s.detail)
        FROM (
          SELECT r.seq, r.id, r.prev, r.actor_kind, r.actor_id, r.outcome, r.patient_ref,
                 CASE WHEN r.transmission IS NULL THEN r.detail ELSE json_set(r.detail, '$.transmission', r.transmission) END AS detail
          FROM (
            SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'), 0), COALESCE((SELECT max(seq) FROM audit_log), 0)) + 1 AS seq,
                   'aud_' || substr(NEW.id, 5) AS id,
                   COALESCE((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), '0000000000000000000000000000000000000000000000000000000000000000') AS prev,
                   CASE
                     WHEN NEW.type = 'message.queued' THEN
                       CASE WHEN m.submitted_by LIKE 'api:%' THEN 'api-key' WHEN COALESCE(m.submitted_by, '') <> '' THEN 'smtp-user' ELSE 'system' END
                     WHEN NEW.type IN ('message.received', 'message.processed', 'message.dispatched') THEN 'remote'
                     ELSE 'system'
                   END AS actor_kind,
                   CASE
                     WHEN NEW.type = 'message.queued' THEN
                       CASE WHEN m.submitted_by LIKE 'api:%' THEN substr(m.submitted_by, 5) WHEN COALESCE(m.submitted_by, '') <> '' THEN m.submitted_by ELSE 'hisp' END
                     WHEN NEW.type = 'message.received' THEN lower(COALESCE(m.mail_from, ''))
                     WHEN NEW.type IN ('message.processed', 'message.dispatched') THEN lower(NEW.recipient)
                     ELSE 'hisp'
                   END AS actor_id,
                   CASE NEW.type WHEN 'message.failed' THEN 'failure' ELSE 'success' END AS outcome,
                   json_object('event', NEW.id, 'recipient', NEW.recipient, 'address', NEW.address, 'data', json(NEW.data)) AS detail,
                   -- Scalar subqueries (LIMIT 1), never a join: one event is one entry whatever the
                   -- rows say. The meta is hisp's own JSON (message-store.ts), read only for a
                   -- queued outbound message.
                   COALESCE(
                     (SELECT t.patient_key FROM transmissions AS t WHERE t.queue_id = NEW.queue_id LIMIT 1),
                     CASE WHEN NEW.type = 'message.queued' AND json_valid(m.meta) THEN
                       (SELECT a.patient_key FROM transmit_authorizations AS a WHERE a.id = json_extract(m.meta, '$.authorization'))
                     END
                   ) AS patient_ref,
                   COALESCE(
                     (SELECT t.id FROM transmissions AS t WHERE t.queue_id = NEW.queue_id LIMIT 1),
                     CASE WHEN NEW.type = 'message.queued' AND json_valid(m.meta)
                       AND EXISTS (SELECT 1 FROM transmit_authorizations AS a WHERE a.id = json_extract(m.meta, '$.authorization'))
                       THEN json_extract(m.meta, '$.transmission')
                     END
                   ) AS transmission
            FROM (SELECT NULL) LEFT JOIN messages AS m ON m.queue_id = NEW.queue_id
          ) AS r
        ) AS s;
      END;
    `,
  },
  {
    version: 14,
    description: 'a transmission whose delivery surely failed no longer counts as sent: the same document goes again, superseding it',
    up: `
      -- Issue 16, "Sending on updates": the same document is never sent twice to the same
      -- destination, but one whose message surely did not arrive (its delivery failed for a reason
      -- that proves it: gateway/events/failure-reason.ts NON_DELIVERY_REASONS) goes again on the
      -- next push of it. The re-send is a new queued row; the old one keeps its history and names
      -- the row that superseded it (resent_by, set in the re-send's own commit). The rule "sent
      -- once" then holds among the rows not superseded: two pushes re-sending at once still cannot
      -- both commit. Each row keeps its own queue_id: the audit trigger of migration 13 finds a
      -- message's transmission by it as before.
      ALTER TABLE transmissions ADD COLUMN resent_by TEXT;
      DROP INDEX transmissions_sent_once;
      CREATE UNIQUE INDEX transmissions_sent_once ON transmissions (patient_key, destination, sha256) WHERE status = 'queued' AND resent_by IS NULL;
    `,
  },
];
