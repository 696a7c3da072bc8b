-- 0013: cheaper writes on the push path (devices and partners alike), same guarantees.
--
-- The trip-overlap exclusion constraint keyed its GiST index by province first. Every index
-- tuple a search or an insert looks at decompresses its keys column by column until one
-- fails; the province (btree_gist text, a detoasted copy per tuple) never fails inside one
-- province, so every trip paid for it on every tuple visited: measured on a 300k-event bench
-- ledger, inserting 5,000 accepted trips cost ≈ 124 µs per row with the constraint against
-- ≈ 27 µs without it, and a quarter of the database CPU of a partner upload was in that index. Keyed
-- by citizen first, a tuple of another citizen fails on its first key; the province still
-- takes part with equality (what Citus requires of an exclusion constraint on a distributed
-- table), and the constraint forbids exactly the same rows. Rebuilding it reads every
-- accepted trip once.
ALTER TABLE events DROP CONSTRAINT events_no_overlapping_trips;
ALTER TABLE events ADD CONSTRAINT events_no_overlapping_trips EXCLUDE USING gist (
    citizen_id WITH =, province WITH =, tanhui_trip_range(occurred_at, ended_at) WITH &&
) WHERE (status = 'accepted' AND occupies_interval);

-- Accounts and cap counters are updated in place on every push that credits a citizen (a
-- partner upload updates one account and one counter per record). With full pages the new
-- row version lands on another page and every index gets a new entry: the bench measured 14 %
-- of account updates as HOT. Free space on each page lets the new version stay beside the
-- old one (no indexed column changes). Applies to pages written from now on.
ALTER TABLE citizen_accounts SET (fillfactor = 70);
ALTER TABLE cap_usage SET (fillfactor = 70);
