-- 0007: partner feeds — verified records pushed server-to-server, linked to citizens.
--
-- A feed partner (scope `feed`, migration 0005) signs every record upload with its Ed25519
-- key (the public half is registered here), may report only the kinds it is registered for,
-- and owns evidence sources: evidence of an owned source is creditable through that partner
-- only (a device guessing a metro transaction number gets nothing).
-- Ed25519 public key, base64 of the 32 raw bytes; NULL: the partner cannot upload records.
-- (One subcommand per statement, as Citus wants on a distributed table.)
ALTER TABLE partners ADD COLUMN signing_key text CHECK (signing_key ~ '^[A-Za-z0-9+/]{43}=$');
ALTER TABLE partners ADD COLUMN kinds text[] NOT NULL DEFAULT '{}' CHECK (cardinality(kinds) <= 32);

GRANT UPDATE (signing_key) ON partners TO tanhui_service;

-- Who owns an evidence source in a province: one partner at most (the primary key).
CREATE TABLE partner_evidence_sources (
    province        text NOT NULL,
    evidence_source text NOT NULL CHECK (length(evidence_source) BETWEEN 1 AND 200),
    partner_id      uuid NOT NULL,
    PRIMARY KEY (province, evidence_source),
    FOREIGN KEY (province, partner_id) REFERENCES partners (province, partner_id)
);
GRANT SELECT, INSERT ON partner_evidence_sources TO tanhui_service;

-- A code the citizen's app requests and the citizen types into the partner's app; only its
-- SHA-256 is stored, it is valid 10 minutes and for one confirmation.
CREATE TABLE partner_link_codes (
    province    text        NOT NULL,
    code_sha256 text        NOT NULL CHECK (code_sha256 ~ '^[0-9a-f]{64}$'),
    partner_id  uuid        NOT NULL,
    citizen_id  uuid        NOT NULL,
    device_id   text        NOT NULL,
    scene       text        NOT NULL CHECK (length(scene) BETWEEN 1 AND 100),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    PRIMARY KEY (province, code_sha256),
    FOREIGN KEY (province, partner_id) REFERENCES partners (province, partner_id)
);
GRANT SELECT, INSERT ON partner_link_codes TO tanhui_service;
GRANT UPDATE (used_at) ON partner_link_codes TO tanhui_service;

-- Links between a partner's subject (its own opaque user id) and a citizen, append-only: a
-- grant row and at most one revocation row per link. A record is linked when a grant with
-- `at <= occurred_at` has no revocation with `at <= occurred_at`. Sealed into the chain
-- (record kind `partner_link`, key `<link_id>:<change>`): a verdict depends on them.
CREATE TABLE partner_link_changes (
    province   text        NOT NULL,
    link_id    uuid        NOT NULL,
    change     text        NOT NULL CHECK (change IN ('granted', 'revoked')),
    partner_id uuid        NOT NULL,
    subject    text        NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
    citizen_id uuid        NOT NULL,
    scene      text        NOT NULL CHECK (length(scene) BETWEEN 1 AND 100),
    at         timestamptz NOT NULL,
    actor      text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 300),
    seal_id    bigint      NOT NULL DEFAULT nextval('ledger_transaction_ids'),
    PRIMARY KEY (province, link_id, change),
    FOREIGN KEY (province, partner_id) REFERENCES partners (province, partner_id)
);
CREATE INDEX partner_link_changes_by_subject ON partner_link_changes (province, partner_id, subject, at);
CREATE INDEX partner_link_changes_by_citizen ON partner_link_changes (province, citizen_id);
CREATE UNIQUE INDEX partner_link_changes_by_seal_id ON partner_link_changes (province, seal_id);
GRANT SELECT, INSERT ON partner_link_changes TO tanhui_service;

-- Every record a partner uploaded, once per (partner, record_id) forever, with its verdict:
-- linked ones also stored as events (device_id `partner:<partner_id>`, event id derived from
-- the partner and record id) through the push path; unlinked or out-of-scope ones only here.
-- Sealed into the chain (record kind `partner_record`, key `<partner_id>:<record_id>`).
CREATE TABLE partner_records (
    province       text        NOT NULL,
    partner_id     uuid        NOT NULL,
    record_id      text        NOT NULL CHECK (length(record_id) BETWEEN 1 AND 200),
    event_id       uuid        NOT NULL,
    subject        text        NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
    link_id        uuid,
    citizen_id     uuid,
    kind           text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    content_sha256 text        NOT NULL,
    status         text        NOT NULL,
    code           text,
    received_at    timestamptz NOT NULL,
    seal_id        bigint      NOT NULL DEFAULT nextval('ledger_transaction_ids'),
    PRIMARY KEY (province, partner_id, record_id),
    FOREIGN KEY (province, partner_id) REFERENCES partners (province, partner_id)
);
CREATE INDEX partner_records_by_event ON partner_records (province, event_id);
CREATE INDEX partner_records_by_day ON partner_records (province, partner_id, received_at);
CREATE UNIQUE INDEX partner_records_by_seal_id ON partner_records (province, seal_id);
GRANT SELECT, INSERT ON partner_records TO tanhui_service;

CREATE TRIGGER partner_link_changes_append_only BEFORE UPDATE OR DELETE ON partner_link_changes
    FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER partner_link_changes_no_truncate BEFORE TRUNCATE ON partner_link_changes
    FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER partner_records_append_only BEFORE UPDATE OR DELETE ON partner_records
    FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER partner_records_no_truncate BEFORE TRUNCATE ON partner_records
    FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();
