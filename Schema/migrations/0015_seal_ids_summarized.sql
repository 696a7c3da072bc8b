-- 0015: the seal-id BRIN index summarizes each page range once it has filled.
--
-- A BRIN range that is not summarized matches every query, so every seal-id range read
-- (the sealer's poll for pending events, each 20,000-id chunk of the audit's chain replay)
-- read the whole unsummarized tail: at 10M entries, after a burst of pushes, a tail of
-- 731,500 events in 28,169 pages that autovacuum had not reached yet made each chunk read
-- 757,602 rows to return 9,302 (503 ms; 18 ms summarized), 198 s of a 315 s full audit, and
-- an idle sealer's empty poll 370 ms. With autosummarize a filled range is queued for
-- summarizing by the next autovacuum worker (PostgreSQL's work items), so the tail stays the
-- few ranges written since; the push path pays nothing. The ranges already filled are
-- summarized once here.
ALTER INDEX events_by_seal_id SET (autosummarize = on);
SELECT brin_summarize_new_values('events_by_seal_id');
