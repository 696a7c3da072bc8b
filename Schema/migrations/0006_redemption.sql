-- 0006: spending points. A partner (scope `redeem`) holds points a citizen chose to spend
-- (the citizen shows a short-lived redeem token from their device), then captures or voids
-- the hold; captured points can be refunded. Every move is a double-entry ledger
-- transaction (kinds hold, capture, void, refund; expiry is reserved for lot expiry) on the
-- accounts `citizen:<uuid>` (available points), `held:<uuid>` (the citizen's held
-- sub-account), `partner:<uuid>` (what the partner redeemed) and `expired`. The details of
-- each redemption live in append-only tables below, sealed by the chain as `redemption`
-- records (seal ids drawn under the publication lock, like every ledger write).

ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check
    CHECK (kind IN ('award', 'reversal', 'hold', 'capture', 'void', 'refund', 'expiry'));
-- Only reversals name the award they reverse (the award-only rule of 0002 predates other kinds).
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_reverses_only_reversals
    CHECK ((kind = 'reversal') = (reverses_id IS NOT NULL));

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_account_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_account_check CHECK (
    account IN ('issuance', 'expired') OR account ~ '^(citizen|held|partner):[0-9a-f-]{36}$');

-- The citizen's held sub-account (a cache of the held:<uuid> entries, like balance_points is
-- of the citizen:<uuid> entries). balance_points is what the citizen may spend (available).
ALTER TABLE citizen_accounts ADD COLUMN held_points bigint NOT NULL DEFAULT 0 CHECK (held_points >= 0);

-- Single-use tokens a device shows a partner (as a QR code). Only a SHA-256 is stored.
-- `used_at` is the one mutable column: set once, by the hold that consumed the token.
CREATE TABLE redeem_tokens (
    province      text        NOT NULL,
    token_sha256  text        NOT NULL CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    citizen_id    uuid        NOT NULL,
    offer_id      uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    PRIMARY KEY (province, token_sha256),
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '5 minutes')
);

-- Offers an operator defines: a fixed points cost, optional limits; redeemed by one partner,
-- or (partner_id NULL) by every redeem partner of the province (a voucher many merchants take).
CREATE TABLE offers (
    province            text        NOT NULL,
    offer_id            uuid        NOT NULL,
    partner_id          uuid,
    name                text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    points_cost         bigint      NOT NULL CHECK (points_cost BETWEEN 1 AND 1000000000),
    total_limit         bigint      CHECK (total_limit BETWEEN 1 AND 1000000000),
    per_citizen_count   integer     CHECK (per_citizen_count BETWEEN 1 AND 1000000),
    per_citizen_period  text        CHECK (per_citizen_period IN ('day', 'month', 'year', 'ever')),
    valid_from          timestamptz NOT NULL,
    valid_to            timestamptz NOT NULL,
    created_by          text        NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (province, offer_id),
    FOREIGN KEY (province, partner_id) REFERENCES partners (province, partner_id),
    CHECK (valid_to > valid_from),
    CHECK ((per_citizen_count IS NULL) = (per_citizen_period IS NULL))
);

-- One row per hold, keyed by the partner's own id for it (idempotent forever: the same id
-- with the same request returns the same redemption, another request under it is refused).
CREATE TABLE redemptions (
    province            text        NOT NULL,
    partner_id          uuid        NOT NULL,
    redemption_id       uuid        NOT NULL,
    request_sha256      text        NOT NULL CHECK (request_sha256 ~ '^[0-9a-f]{64}$'),
    citizen_id          uuid        NOT NULL,
    offer_id            uuid,
    points              bigint      NOT NULL CHECK (points >= 1),
    partner_ref         text        CHECK (length(partner_ref) <= 200),
    hold_transaction_id bigint      NOT NULL,
    created_at          timestamptz NOT NULL,
    expires_at          timestamptz NOT NULL,
    seal_id             bigint      NOT NULL,
    PRIMARY KEY (province, partner_id, redemption_id),
    UNIQUE (province, hold_transaction_id),
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '15 minutes')
);
CREATE INDEX redemptions_by_offer ON redemptions (province, offer_id, citizen_id, created_at) WHERE offer_id IS NOT NULL;
CREATE INDEX redemptions_by_expiry ON redemptions (province, expires_at);

-- How a hold ended: captured or voided (by the partner, or by its TTL). The primary key is
-- the rule that exactly one of capture and void wins.
CREATE TABLE redemption_outcomes (
    province        text        NOT NULL,
    partner_id      uuid        NOT NULL,
    redemption_id   uuid        NOT NULL,
    outcome         text        NOT NULL CHECK (outcome IN ('captured', 'voided', 'expired')),
    transaction_id  bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    seal_id         bigint      NOT NULL,
    PRIMARY KEY (province, partner_id, redemption_id),
    UNIQUE (province, transaction_id)
);

-- Refunds of captured points, keyed by the partner's own refund id.
CREATE TABLE redemption_refunds (
    province        text        NOT NULL,
    partner_id      uuid        NOT NULL,
    refund_id       uuid        NOT NULL,
    redemption_id   uuid        NOT NULL,
    points          bigint      NOT NULL CHECK (points >= 1),
    transaction_id  bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    seal_id         bigint      NOT NULL,
    PRIMARY KEY (province, partner_id, refund_id),
    UNIQUE (province, transaction_id)
);
CREATE INDEX redemption_refunds_by_redemption ON redemption_refunds (province, partner_id, redemption_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['offers', 'redemptions', 'redemption_outcomes', 'redemption_refunds'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change()', t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change()', t || '_no_truncate', t);
    END LOOP;
END $$;

GRANT SELECT, INSERT ON offers, redemptions, redemption_outcomes, redemption_refunds, redeem_tokens TO tanhui_service;
GRANT UPDATE (used_at) ON redeem_tokens TO tanhui_service;
GRANT UPDATE (held_points) ON citizen_accounts TO tanhui_service;

-- The sealer reads each table's unsealed tail by seal id; the audit joins links by it.
CREATE UNIQUE INDEX redemptions_by_seal_id ON redemptions (province, seal_id);
CREATE UNIQUE INDEX redemption_outcomes_by_seal_id ON redemption_outcomes (province, seal_id);
CREATE UNIQUE INDEX redemption_refunds_by_seal_id ON redemption_refunds (province, seal_id);
