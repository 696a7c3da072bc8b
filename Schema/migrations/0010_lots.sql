-- 0010: points that expire by lot. A rule set may say `points_validity`; every award judged
-- by such a version is a lot whose expiry instant is fixed when the award is made (from the
-- version in force at the event's occurred_at, in the province time zone). Spends (captures,
-- reversals) draw lots oldest-expiry first, refunds return points to the lots they were drawn
-- from, and each lot's remainder expires once, by an `expiry` ledger transaction to the
-- `expired` account (migration 0006 reserved both). Awards of versions without a validity
-- make no lot: those points never expire.

-- One row per lot. points, expires_at and citizen_id never change (the audit rebuilds them
-- from the award, its event and its rule-set version); remaining_points and expired are
-- caches of the lot's movements below, like citizen_accounts.balance_points is of entries.
CREATE TABLE point_lots (
    province              text        NOT NULL,
    award_transaction_id  bigint      NOT NULL,
    citizen_id            uuid        NOT NULL,
    points                bigint      NOT NULL CHECK (points >= 1),
    expires_at            timestamptz NOT NULL,
    remaining_points      bigint      NOT NULL CHECK (remaining_points BETWEEN 0 AND points),
    expired               boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (province, award_transaction_id)
);
-- A citizen's lots in draw order; the expirer's queue (lots not yet expired, by instant).
CREATE INDEX point_lots_by_citizen ON point_lots (province, citizen_id, expires_at, award_transaction_id);
CREATE INDEX point_lots_due ON point_lots (province, expires_at) WHERE NOT expired;

-- Every move of points into or out of a lot, by the ledger transaction that made it:
-- `draw` (a capture or a reversal took points from the lot), `return` (a refund gave points
-- back to a lot the capture drew; at or after the lot's expiry they expire at once, inside
-- the refund, which sends them to `expired`), `expiry` (the lot's remainder, once per lot).
-- `at` is when the move took effect: for an expiry the lot's expires_at, else the
-- transaction's instant. Append-only; sealed by the chain as `lot_movement` records.
CREATE TABLE lot_movements (
    province              text        NOT NULL,
    transaction_id        bigint      NOT NULL,
    award_transaction_id  bigint      NOT NULL,
    citizen_id            uuid        NOT NULL,
    kind                  text        NOT NULL CHECK (kind IN ('draw', 'return', 'expiry')),
    points                bigint      NOT NULL CHECK (points >= 1),
    at                    timestamptz NOT NULL,
    seal_id               bigint      NOT NULL,
    PRIMARY KEY (province, transaction_id, award_transaction_id),
    FOREIGN KEY (province, award_transaction_id) REFERENCES point_lots (province, award_transaction_id)
);
CREATE UNIQUE INDEX lot_movements_one_expiry_per_lot ON lot_movements (province, award_transaction_id) WHERE kind = 'expiry';
CREATE INDEX lot_movements_by_lot ON lot_movements (province, award_transaction_id);
CREATE UNIQUE INDEX lot_movements_by_seal_id ON lot_movements (province, seal_id);

CREATE TRIGGER lot_movements_append_only BEFORE UPDATE OR DELETE ON lot_movements FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER lot_movements_no_truncate BEFORE TRUNCATE ON lot_movements FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();

-- A lot's identity never changes; only its caches do.
CREATE FUNCTION tanhui_lot_identity_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.province <> OLD.province OR NEW.award_transaction_id <> OLD.award_transaction_id
       OR NEW.citizen_id <> OLD.citizen_id OR NEW.points <> OLD.points OR NEW.expires_at <> OLD.expires_at THEN
        RAISE EXCEPTION 'point_lots: only remaining_points and expired may change' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER point_lots_identity_fixed BEFORE UPDATE OR DELETE ON point_lots FOR EACH ROW EXECUTE FUNCTION tanhui_lot_identity_fixed();
CREATE TRIGGER point_lots_no_truncate BEFORE TRUNCATE ON point_lots FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();

GRANT SELECT, INSERT ON point_lots, lot_movements TO tanhui_service;
GRANT UPDATE (remaining_points, expired) ON point_lots TO tanhui_service;
