-- 0005: partners, and chain records beyond the first three kinds.
--
-- A partner is an organisation a province works with server-to-server: a merchant or
-- transit operator that redeems points (scope `redeem`), a data platform that reports
-- verified records (scope `feed`). It belongs to one province, authenticates with its own
-- API key (only a SHA-256 is stored, like operator keys), and is revoked, never deleted:
-- records it made keep naming it.
CREATE TABLE partners (
    province    text        NOT NULL,
    partner_id  uuid        NOT NULL,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    scopes      text[]      NOT NULL CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY['redeem', 'feed']::text[]),
    key_sha256  text        NOT NULL CHECK (key_sha256 ~ '^[0-9a-f]{64}$'),
    created_by  text        NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (province, partner_id),
    -- A key authenticates in the province of the request's path (a key is never valid in two
    -- provinces: keys are 256 random bits).
    UNIQUE (province, key_sha256)
);

GRANT SELECT, INSERT ON partners TO tanhui_service;
GRANT UPDATE (revoked_at) ON partners TO tanhui_service;

-- Later record kinds (partner links, governance records, …) name their record by a text key
-- in `record_key`; the first three keep their typed key columns. A kind is a lower-case word,
-- so a new kind needs no change to this table.
-- One subcommand per statement: Citus refuses ADD CONSTRAINT beside other subcommands on a
-- distributed table (this runs on clusters distributed at 0004).
ALTER TABLE ledger_chain ADD COLUMN record_key text;
ALTER TABLE ledger_chain DROP CONSTRAINT ledger_chain_record_check;
ALTER TABLE ledger_chain DROP CONSTRAINT ledger_chain_record_key;
ALTER TABLE ledger_chain ADD CONSTRAINT ledger_chain_record_kind CHECK (record ~ '^[a-z][a-z_]{0,39}$');
ALTER TABLE ledger_chain ADD CONSTRAINT ledger_chain_record_key CHECK (
        (format = 1 AND record = 'transaction' AND transaction_id IS NOT NULL AND seal_id IS NULL AND record_key IS NULL)
        OR (format = 2 AND seal_id IS NOT NULL AND (
            (record = 'transaction' AND transaction_id = seal_id AND event_id IS NULL AND rule_set_version IS NULL AND record_key IS NULL)
            OR (record = 'event' AND event_id IS NOT NULL AND transaction_id IS NULL AND rule_set_version IS NULL AND record_key IS NULL)
            OR (record = 'rule_set' AND rule_set_version IS NOT NULL AND transaction_id IS NULL AND event_id IS NULL AND record_key IS NULL)
            OR (record NOT IN ('transaction', 'event', 'rule_set') AND record_key IS NOT NULL
                AND transaction_id IS NULL AND event_id IS NULL AND rule_set_version IS NULL))));
