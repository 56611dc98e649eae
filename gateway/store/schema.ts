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
];
