-- 0011: the report rollup as it stood at each checkpoint.
--
-- `tanhui ledger checkpoint` copies the province's rollup cells (report_rollup,
-- report_rejections and the progress they stand at) in the same snapshot as the summary of
-- balances (ledger_checkpoint_states), and signs the copy's SHA-256 as the checkpoint's
-- `reports` line. `tanhui audit --since` then checks every cell against that copy plus the
-- records folded since (seal ids in (copy's sealed_through, current sealed_through]), instead
-- of recomputing the rollup from all history. report_citizens is not copied: it grows with
-- the citizens, so --since checks only that the new records' citizens are in it (a citizen
-- added to a cell is found by the full audit).
-- Append-only, like the rest of history.
CREATE TABLE ledger_checkpoint_reports (
    province        text    NOT NULL,
    watermark       bigint  NOT NULL,
    -- report_progress.sealed_through in the checkpoint's snapshot (0: no progress yet).
    sealed_through  bigint  NOT NULL CHECK (sealed_through >= 0),
    PRIMARY KEY (province, watermark)
);

CREATE TABLE ledger_checkpoint_rollup (
    province    text    NOT NULL,
    watermark   bigint  NOT NULL,
    day         date    NOT NULL,
    kind        text    NOT NULL,
    variant     text    NOT NULL,
    district    text    NOT NULL,
    accepted    bigint  NOT NULL,
    rejected    bigint  NOT NULL,
    grams_co2e  bigint  NOT NULL,
    points      bigint  NOT NULL,
    reversals   bigint  NOT NULL,
    PRIMARY KEY (province, watermark, day, kind, variant, district)
);

CREATE TABLE ledger_checkpoint_rejections (
    province    text    NOT NULL,
    watermark   bigint  NOT NULL,
    day         date    NOT NULL,
    kind        text    NOT NULL,
    variant     text    NOT NULL,
    district    text    NOT NULL,
    code        text    NOT NULL,
    events      bigint  NOT NULL,
    PRIMARY KEY (province, watermark, day, kind, variant, district, code)
);

CREATE TRIGGER ledger_checkpoint_reports_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoint_reports
    FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ledger_checkpoint_reports_no_truncate BEFORE TRUNCATE ON ledger_checkpoint_reports
    FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ledger_checkpoint_rollup_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoint_rollup
    FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ledger_checkpoint_rollup_no_truncate BEFORE TRUNCATE ON ledger_checkpoint_rollup
    FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ledger_checkpoint_rejections_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoint_rejections
    FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ledger_checkpoint_rejections_no_truncate BEFORE TRUNCATE ON ledger_checkpoint_rejections
    FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();
GRANT SELECT, INSERT ON ledger_checkpoint_reports, ledger_checkpoint_rollup, ledger_checkpoint_rejections TO tanhui_service;
