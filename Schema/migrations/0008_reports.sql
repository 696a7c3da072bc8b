-- 0008: districts on events, and the report rollup advanced from the sealed chain.
--
-- `district` is the GB/T 2260 six-digit county code the device sent (`data.district`),
-- validated against the province's two-digit prefix before it is stored (TanhuiCore
-- `District.validate`). It is part of the event's content hash, so a resubmission with
-- another district is a conflict, not a duplicate.
ALTER TABLE events ADD COLUMN district text CHECK (district ~ '^[0-9]{6}$');

-- The rollup: one row per (province, local day, kind, variant, district), where the local
-- day is the China Standard Time (UTC+08:00) date of the judged `occurred_at`, `variant` the
-- transit mode or recycled material ('' when the event has neither) and `district` '' when
-- the event carries none. Written only by the advance (never by a push), which folds the
-- records whose seal ids lie in (report_progress.sealed_through, the chain link it stops
-- at], under a per-province advisory lock: one writer per province, no hot rows.
--   accepted / rejected: events by verdict (rejected counts every non-accepted verdict,
--   report_rejections splits it by code); grams_co2e / points: the net of awards and
--   reversals of the cell's events (a reversal counts in its award's cell); reversals: how
--   many reversal transactions.
CREATE TABLE report_rollup (
    province    text    NOT NULL,
    day         date    NOT NULL,
    kind        text    NOT NULL,
    variant     text    NOT NULL,
    district    text    NOT NULL,
    accepted    bigint  NOT NULL DEFAULT 0,
    rejected    bigint  NOT NULL DEFAULT 0,
    grams_co2e  bigint  NOT NULL DEFAULT 0,
    points      bigint  NOT NULL DEFAULT 0,
    reversals   bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (province, day, kind, variant, district)
);

CREATE TABLE report_rejections (
    province    text    NOT NULL,
    day         date    NOT NULL,
    kind        text    NOT NULL,
    variant     text    NOT NULL,
    district    text    NOT NULL,
    code        text    NOT NULL,
    events      bigint  NOT NULL,
    PRIMARY KEY (province, day, kind, variant, district, code)
);

-- Distinct citizens cannot be summed across cells (one citizen active on two days counts
-- once for the two days together), so each finest cell keeps the set of citizens with an
-- accepted event in it, and a report counts DISTINCT citizen_id over the cells it covers.
CREATE TABLE report_citizens (
    province    text    NOT NULL,
    day         date    NOT NULL,
    kind        text    NOT NULL,
    variant     text    NOT NULL,
    district    text    NOT NULL,
    citizen_id  uuid    NOT NULL,
    PRIMARY KEY (province, day, kind, variant, district, citizen_id)
);

-- How far the rollup has folded each province's chain: every record with a seal id up to
-- `sealed_through`, which is the seal id of link `chain_seq` (hash `head_hash`).
CREATE TABLE report_progress (
    province        text        NOT NULL PRIMARY KEY,
    sealed_through  bigint      NOT NULL,
    chain_seq       bigint      NOT NULL,
    head_hash       text        NOT NULL CHECK (head_hash ~ '^[0-9a-f]{64}$'),
    advanced_at     timestamptz NOT NULL DEFAULT now()
);

-- The rollup is a cache of sealed history (`tanhui audit` check reports_match_ledger
-- recomputes it), so the service maintains it like the balances.
GRANT SELECT, INSERT, UPDATE ON report_rollup, report_rejections, report_citizens, report_progress TO tanhui_service;
