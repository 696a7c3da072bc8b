-- 0002: citizen actions and the carbon-credit ledger.
--
-- Every large table is keyed by province first: it is the Citus distribution column, so an
-- award (event, transaction, entries, account, caps) is a single-shard transaction, and every
-- unique constraint below includes it. Tables written once are append-only (triggers, and the
-- service role has no UPDATE/DELETE/TRUNCATE on them); the mutable ones (accounts, cap usage)
-- are caches the audit recomputes from the append-only rows.

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- A citizen's account in one province's programme (credits of different provinces never
-- mix). Pseudonymous: a UUID, nothing else about the person. `last_seq` numbers the
-- citizen's ledger transactions 1, 2, 3… in commit order; batches of one citizen serialise
-- on this row, so the numbering has no gaps and the sync cursor never skips.
CREATE TABLE citizen_accounts (
    province        text        NOT NULL CHECK (province ~ '^CN-[A-Z]{2}$'),
    citizen_id      uuid        NOT NULL,
    balance_points  bigint      NOT NULL DEFAULT 0,
    balance_grams   bigint      NOT NULL DEFAULT 0,
    last_seq        bigint      NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (province, citizen_id)
);

CREATE TABLE citizen_devices (
    province    text        NOT NULL,
    citizen_id  uuid        NOT NULL,
    device_id   text        NOT NULL CHECK (length(device_id) BETWEEN 1 AND 200),
    first_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (province, citizen_id, device_id)
);

-- One row per judged event, written once with its final verdict.
CREATE TABLE events (
    province            text        NOT NULL,
    event_id            uuid        NOT NULL,
    citizen_id          uuid        NOT NULL,
    device_id           text        NOT NULL,
    kind                text        NOT NULL,
    -- Instants after clock-skew correction (these are judged), and as the device sent them.
    occurred_at         timestamptz NOT NULL,
    ended_at            timestamptz,
    device_occurred_at  text        NOT NULL,
    device_ended_at     text,
    clock_offset_ms     bigint      NOT NULL,
    mode                text,
    material            text,
    distance_m          bigint,
    weight_g            bigint,
    unit_count          bigint,
    consumption_wh      bigint,
    baseline_wh         bigint,
    days                bigint,
    evidence_source     text,
    evidence_ref        text,
    -- SHA-256 of the canonical event: a resubmission is a duplicate only if it matches.
    content_sha256      text        NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    -- Trips and rides occupy their interval: a person is not on a bus and a bike at once.
    occupies_interval   boolean     NOT NULL DEFAULT false,
    received_at         timestamptz NOT NULL,
    status              text        NOT NULL CHECK (status IN ('accepted', 'rejected', 'conflict')),
    code                text,
    message             text,
    PRIMARY KEY (province, event_id),
    CHECK (ended_at IS NULL OR ended_at >= occurred_at),
    CHECK ((evidence_source IS NULL) = (evidence_ref IS NULL)),
    CHECK ((status = 'accepted') = (code IS NULL))
);

-- Evidence is credited at most once, whoever claims it.
CREATE UNIQUE INDEX events_evidence_credited_once ON events (province, evidence_source, evidence_ref)
    WHERE status = 'accepted' AND evidence_source IS NOT NULL;

-- Accepted trips of one citizen never overlap in time.
ALTER TABLE events ADD CONSTRAINT events_no_overlapping_trips EXCLUDE USING gist (
    province WITH =, citizen_id WITH =, tstzrange(occurred_at, ended_at, '[)') WITH &&
) WHERE (status = 'accepted' AND occupies_interval);

CREATE INDEX events_by_citizen ON events (province, citizen_id, occurred_at);
CREATE INDEX events_by_id ON events (event_id);

CREATE SEQUENCE ledger_transaction_ids AS bigint;

-- Double-entry transactions: an award moves points from the province's issuance account
-- to the citizen's account; a reversal mirrors an award. Never updated.
CREATE TABLE ledger_transactions (
    province            text        NOT NULL,
    transaction_id      bigint      NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('award', 'reversal')),
    citizen_id          uuid        NOT NULL,
    -- The citizen's transaction number in this province (see citizen_accounts.last_seq).
    citizen_seq         bigint      NOT NULL CHECK (citizen_seq >= 1),
    event_id            uuid        NOT NULL,
    points              bigint      NOT NULL,
    grams_co2e          bigint      NOT NULL,
    rule_set_version    integer     NOT NULL,
    methodology         text        NOT NULL,
    points_before_caps  bigint,
    multiplier          text,
    campaign            text,
    caps_applied        text[],
    reverses_id         bigint,
    reason              text,
    actor               text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (province, transaction_id),
    UNIQUE (province, citizen_id, citizen_seq),
    FOREIGN KEY (province, rule_set_version) REFERENCES rule_sets (province, version),
    FOREIGN KEY (province, reverses_id) REFERENCES ledger_transactions (province, transaction_id),
    CHECK ((kind = 'award') = (reverses_id IS NULL)),
    CHECK ((kind = 'reversal') = (reason IS NOT NULL AND actor IS NOT NULL))
);

-- At most one award per event, at most one reversal per award.
CREATE UNIQUE INDEX ledger_one_award_per_event ON ledger_transactions (province, event_id) WHERE kind = 'award';
CREATE UNIQUE INDEX ledger_one_reversal_per_award ON ledger_transactions (province, reverses_id) WHERE kind = 'reversal';

-- Entries: `account` is 'issuance' or 'citizen:<uuid>'. Each transaction's entries sum to zero.
CREATE TABLE ledger_entries (
    province        text    NOT NULL,
    transaction_id  bigint  NOT NULL,
    account         text    NOT NULL CHECK (account = 'issuance' OR account ~ '^citizen:[0-9a-f-]{36}$'),
    points          bigint  NOT NULL,
    PRIMARY KEY (province, transaction_id, account),
    FOREIGN KEY (province, transaction_id) REFERENCES ledger_transactions (province, transaction_id)
);

-- Per citizen, per province, per cap window: what has been consumed (a cache of the awards).
CREATE TABLE cap_usage (
    province    text    NOT NULL,
    citizen_id  uuid    NOT NULL,
    window_key  text    NOT NULL,
    points      bigint  NOT NULL DEFAULT 0 CHECK (points >= 0),
    events      bigint  NOT NULL DEFAULT 0 CHECK (events >= 0),
    PRIMARY KEY (province, citizen_id, window_key)
);

-- The per-province hash chain. The sealer appends a link for every committed transaction
-- not yet sealed, in transaction-id order, so sequence numbers are assigned at sealing and
-- are contiguous: hash_n = SHA-256(hash_{n-1} || canonical transaction n).
CREATE TABLE ledger_chain (
    province        text        NOT NULL,
    chain_seq       bigint      NOT NULL CHECK (chain_seq >= 1),
    transaction_id  bigint      NOT NULL,
    previous_hash   text        NOT NULL CHECK (previous_hash ~ '^[0-9a-f]{64}$'),
    hash            text        NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    sealed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (province, chain_seq),
    UNIQUE (province, transaction_id),
    FOREIGN KEY (province, transaction_id) REFERENCES ledger_transactions (province, transaction_id)
);

-- Signed checkpoints the service exported (operators keep copies outside the database).
CREATE TABLE ledger_checkpoints (
    province    text        NOT NULL,
    chain_seq   bigint      NOT NULL,
    head_hash   text        NOT NULL,
    signed_at   timestamptz NOT NULL,
    note        text        NOT NULL,
    PRIMARY KEY (province, chain_seq, signed_at)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['events', 'ledger_transactions', 'ledger_entries', 'ledger_chain', 'ledger_checkpoints'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change()', t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change()', t || '_no_truncate', t);
    END LOOP;
END $$;

-- Now that events exist: the latest instant of a province at which a verdict was given.
CREATE OR REPLACE FUNCTION tanhui_province_judged_through(p_province text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT max(occurred_at) FROM events WHERE province = p_province $$;

-- The role `tanhui serve` runs as: it may append to history and maintain the caches, but
-- never rewrite history or change the schema. Roles are cluster-wide, so create it once.
DO $$
BEGIN
    CREATE ROLE tanhui_service LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

GRANT USAGE ON SCHEMA public TO tanhui_service;
GRANT SELECT ON rule_sets, operators, tanhui_schema_migrations TO tanhui_service;
GRANT INSERT ON rule_sets, operators TO tanhui_service;
GRANT UPDATE (revoked_at) ON operators TO tanhui_service;
GRANT SELECT, INSERT ON events, ledger_transactions, ledger_entries, ledger_chain, ledger_checkpoints TO tanhui_service;
GRANT SELECT, INSERT, UPDATE ON citizen_accounts, citizen_devices, cap_usage TO tanhui_service;
GRANT USAGE ON SEQUENCE ledger_transaction_ids TO tanhui_service;
