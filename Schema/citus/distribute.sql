-- Distributes the Tanhui schema over a Citus cluster. Run once, on the coordinator, as the
-- schema owner, after `tanhui migrate` has created the tables (still empty, or small: existing
-- rows are copied into the shards):
--
--   psql "$COORDINATOR_URL" -v ON_ERROR_STOP=1 -f Schema/citus/distribute.sql
--
-- Scripts/citus.sh runs exactly this on a local coordinator and two workers (and so does the
-- cluster suite of Scripts/test.sh, once per test database). Scripts/citus-check.py reads the
-- table lists below and checks the migrated schema against the Citus rules without a
-- cluster — every table classified, `province` in every key, index, exclusion constraint and
-- foreign key of a distributed table, one `province` type everywhere, no foreign key from a
-- reference table to a distributed one, none from a distributed table to a reference table,
-- and referenced tables distributed before the tables that reference them.
-- Keep one create_*_table call per line, with the table name as a quoted literal: the check
-- parses them.
--
-- Layout: every large table is hash-distributed on `province` and colocated with
-- citizen_accounts, so an award (event, transaction, entries, account, caps, chain link, and
-- the rule set it names) is a single-shard transaction and the per-province audit and sealer
-- never cross shards. Small tables without a province are reference tables (a full copy on
-- every node; writes use 2PC).
--
-- Prerequisites on every node: the citus and btree_gist extensions (the events exclusion
-- constraint uses gist; create btree_gist on the coordinator after the workers are added, or
-- Citus copies it when a worker is added later).

-- The append-only guards (tanhui_reject_change triggers on rule_sets, events, ledger_*) would
-- make create_*_table refuse the tables; Citus 11+ lets triggers through with this setting and
-- creates them on every shard. They touch no other table, which is what makes them safe.
-- Immutability does not rest on them alone: tanhui_service has no UPDATE/DELETE/TRUNCATE on
-- history tables, and the hash chain detects any rewrite.
SET citus.enable_unsafe_triggers TO on;

-- rule_sets is distributed too, not a reference table: ledger_transactions holds a foreign
-- key to it, and Citus can build neither order of that layout. Made a reference table first,
-- it turns every table that references it, and every table referencing those (the whole
-- foreign-key graph: ledger_transactions, ledger_entries, ledger_chain), into Citus local
-- tables, and create_distributed_table('ledger_transactions') then fails with "foreign keys
-- from reference tables and local tables to distributed tables are not supported"; distributed
-- first, ledger_transactions would reference a plain local table. A rule set belongs to one
-- province, so colocating it costs nothing: the award's foreign-key check stays in its shard,
-- and a publication writes one shard instead of every node.
SELECT create_reference_table('operators');
SELECT create_reference_table('tanhui_schema_migrations');

-- Distributed tables, colocated on `province` (text everywhere; the type cannot change later).
-- citizen_accounts anchors the colocation group; referenced tables before referencing ones.
SELECT create_distributed_table('citizen_accounts', 'province');
SELECT create_distributed_table('rule_sets', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('citizen_devices', 'province', colocate_with => 'citizen_accounts');
-- events: the exclusion constraint events_no_overlapping_trips compares `province WITH =`
-- first, which is what Citus requires of an exclusion constraint on a distributed table; the
-- unique index events_evidence_credited_once starts with province too.
SELECT create_distributed_table('events', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('ledger_transactions', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('ledger_entries', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('cap_usage', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('ledger_chain', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('ledger_checkpoints', 'province', colocate_with => 'citizen_accounts');
-- The summaries v2 checkpoints sign (migration 0004), per province like the checkpoints.
SELECT create_distributed_table('ledger_checkpoint_states', 'province', colocate_with => 'citizen_accounts');
-- The rollup copies checkpoints sign (migration 0011), with the summaries.
SELECT create_distributed_table('ledger_checkpoint_reports', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('ledger_checkpoint_rollup', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('ledger_checkpoint_rejections', 'province', colocate_with => 'citizen_accounts');
-- The report rollup (migration 0008): folded per province from that province's chain, so
-- the advance and every report are single-shard statements.
SELECT create_distributed_table('report_rollup', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('report_rejections', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('report_citizens', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('report_progress', 'province', colocate_with => 'citizen_accounts');
-- Partners belong to one province (migration 0005); their records (holds, links, feeds) colocate.
SELECT create_distributed_table('partners', 'province', colocate_with => 'citizen_accounts');
-- Rule-set governance (migration 0009): a province's policies, proposals, reviews and
-- publications, colocated with its rule sets (publications reference them, reviews proposals).
SELECT create_distributed_table('ruleset_policies', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('ruleset_proposals', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('ruleset_reviews', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('ruleset_publications', 'province', colocate_with => 'citizen_accounts');
-- Partner feeds (migration 0007): owned evidence sources, link codes, links and uploaded records.
SELECT create_distributed_table('partner_evidence_sources', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('partner_link_codes', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('partner_link_changes', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('partner_records', 'province', colocate_with => 'citizen_accounts');
-- Redemption (migration 0006): offers reference partners, so they follow them.
SELECT create_distributed_table('offers', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('redeem_tokens', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('redemptions', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('redemption_outcomes', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('redemption_refunds', 'province', colocate_with => 'citizen_accounts');
-- Lots (migration 0010): a citizen's lots and their movements, colocated with the awards and
-- the redemptions that move them (a capture, its draws and its lot caches are one shard).
SELECT create_distributed_table('point_lots', 'province', colocate_with => 'citizen_accounts');
SELECT create_distributed_table('lot_movements', 'province', colocate_with => 'citizen_accounts');

-- Notes for operating on Citus:
-- * ledger_transaction_ids is a bigint sequence used from the coordinator; ids are unique but
--   not commit-ordered, which nothing relies on (the chain sequence is assigned per province
--   by the sealer).
-- * Audits run per province (no cross-shard snapshot exists); global totals are sums of
--   per-province verified results.
-- * With only a handful of provinces, a hash on `province` gives at most that many busy
--   shards: size citus.shard_count and node count accordingly, or isolate a large province
--   onto its own shard with isolate_tenant_to_new_shard('events', 'CN-GD', 'CASCADE').
