-- 0003: the push path keyed by province everywhere, trips that cannot escape the overlap
-- rule, and a publication check no stored input can block.

-- Events are identified by (province, event_id), the primary key; nothing looks them up by
-- id alone any more, so the id-only index is one write less per event.
DROP INDEX events_by_id;

-- A trip without ended_at occupies its first millisecond, so it still conflicts with an
-- overlapping trip. Declared IMMUTABLE: adding a sub-day interval to a timestamptz does not
-- depend on the session's time zone.
CREATE FUNCTION tanhui_trip_range(occurred timestamptz, ended timestamptz) RETURNS tstzrange
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT tstzrange(occurred, coalesce(ended, occurred + interval '1 millisecond'), '[)') $$;

ALTER TABLE events DROP CONSTRAINT events_no_overlapping_trips;
-- The push reads a citizen's accepted trips through the exclusion constraint's own GiST
-- index (province, citizen, range), so the separate per-citizen btree is one write too many.
DROP INDEX events_by_citizen;
ALTER TABLE events ADD CONSTRAINT events_no_overlapping_trips EXCLUDE USING gist (
    province WITH =, citizen_id WITH =, tanhui_trip_range(occurred_at, ended_at) WITH &&
) WHERE (status = 'accepted' AND occupies_interval);

-- The latest instant of a province whose verdict depended on its rules. Device-clock
-- verdicts (clock_skew, stored by earlier versions) say nothing about the rules, so they
-- cannot hold back a new version; every other stored event lies at most a few minutes
-- after its receipt. Read backwards from an index, not by scanning the province's events.
CREATE INDEX events_by_province_time ON events (province, occurred_at);

CREATE OR REPLACE FUNCTION tanhui_province_judged_through(p_province text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT occurred_at FROM events
    WHERE province = p_province AND code IS DISTINCT FROM 'clock_skew'
    ORDER BY occurred_at DESC LIMIT 1
$$;

-- Pull and status start from the citizen's accounts (the token names no province).
CREATE INDEX citizen_accounts_by_citizen ON citizen_accounts (citizen_id);

-- Entries and chain links are written by the same transaction as (or, for the chain, only
-- after) the ledger transaction they belong to; a per-row foreign-key trigger on every entry
-- costs more than the insert it guards. `tanhui audit` checks both relations (no entry
-- without its transaction, no link to a missing transaction), as it checks the balances.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_province_transaction_id_fkey;
ALTER TABLE ledger_chain DROP CONSTRAINT ledger_chain_province_transaction_id_fkey;
