-- 0009: rule-set governance. Operator keys get roles; each province has a policy (set by an
-- admin from the CLI); a new version is proposed by an author, approved by distinct approvers
-- (never the author), and published after a notice period. Policies, proposals, reviews and
-- publications are append-only and sealed in the province chain (record kinds
-- ruleset_policy, ruleset_proposal, ruleset_review, ruleset_publication, keyed by record_key).

-- Existing keys keep every role: what they may do is now decided by the province's policy
-- (without one a province is governed, so a single key can no longer publish alone).
ALTER TABLE operators ADD COLUMN roles text[] NOT NULL DEFAULT ARRAY['author', 'approver', 'publisher']::text[]
    CHECK (cardinality(roles) >= 1 AND roles <@ ARRAY['author', 'approver', 'publisher']::text[]);

-- A province's policy history; the one in force is the highest policy_seq. No row: governed
-- with 2 approvals and 7 days' notice (the defaults live in GovernanceService too).
CREATE TABLE ruleset_policies (
    province              text        NOT NULL CHECK (province ~ '^CN-[A-Z]{2}$'),
    policy_seq            integer     NOT NULL CHECK (policy_seq >= 1),
    required_approvals    integer     NOT NULL CHECK (required_approvals BETWEEN 1 AND 10),
    notice_days           integer     NOT NULL CHECK (notice_days BETWEEN 0 AND 365),
    approver_may_publish  boolean     NOT NULL,
    -- Development only: operators with the publisher role publish at once (POST …/rulesets).
    direct_publish        boolean     NOT NULL,
    set_by                text        NOT NULL CHECK (length(set_by) BETWEEN 1 AND 200),
    set_at                timestamptz NOT NULL DEFAULT now(),
    seal_id               bigint      NOT NULL DEFAULT nextval('ledger_transaction_ids'),
    PRIMARY KEY (province, policy_seq)
);

CREATE TABLE ruleset_proposals (
    province        text        NOT NULL CHECK (province ~ '^CN-[A-Z]{2}$'),
    proposal_id     uuid        NOT NULL,
    version         integer     NOT NULL CHECK (version >= 1),
    effective_from  timestamptz NOT NULL,
    -- When the approval expires; renewal is a new proposal (a new version).
    valid_until     timestamptz CHECK (valid_until > effective_from),
    document        text        NOT NULL,
    document_format text        NOT NULL CHECK (document_format IN ('yaml', 'json')),
    content_sha256  text        NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    -- The validation result when proposed (an invalid draft is stored so the author sees why).
    valid           boolean     NOT NULL,
    issues          text        NOT NULL,
    author_id       uuid        NOT NULL,
    author_name     text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    seal_id         bigint      NOT NULL DEFAULT nextval('ledger_transaction_ids'),
    PRIMARY KEY (province, proposal_id)
);

CREATE TABLE ruleset_reviews (
    province      text        NOT NULL,
    review_id     uuid        NOT NULL,
    proposal_id   uuid        NOT NULL,
    reviewer_id   uuid        NOT NULL,
    reviewer_name text        NOT NULL,
    verdict       text        NOT NULL CHECK (verdict IN ('approve', 'reject')),
    comment       text        NOT NULL CHECK (length(comment) <= 2000),
    created_at    timestamptz NOT NULL DEFAULT now(),
    seal_id       bigint      NOT NULL DEFAULT nextval('ledger_transaction_ids'),
    PRIMARY KEY (province, review_id),
    -- Each key reviews a proposal once: two approvals are never one person's.
    UNIQUE (province, proposal_id, reviewer_id),
    FOREIGN KEY (province, proposal_id) REFERENCES ruleset_proposals (province, proposal_id)
);

-- One row per published version, however it was published: 'proposal' (governed), 'direct'
-- (a direct-publish policy), 'admin' (`tanhui rules publish` with database credentials),
-- 'legacy' (published before this migration).
CREATE TABLE ruleset_publications (
    province        text        NOT NULL,
    version         integer     NOT NULL,
    mode            text        NOT NULL CHECK (mode IN ('proposal', 'direct', 'admin', 'legacy')),
    proposal_id     uuid,
    policy_seq      integer,
    -- The approvals that counted (distinct, not the author, keys active at publication).
    approver_ids    uuid[]      NOT NULL DEFAULT '{}',
    approved_at     timestamptz,
    publisher_id    uuid,
    published_by    text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    seal_id         bigint      NOT NULL DEFAULT nextval('ledger_transaction_ids'),
    PRIMARY KEY (province, version),
    UNIQUE (province, proposal_id),
    CHECK ((mode = 'proposal') = (proposal_id IS NOT NULL)),
    FOREIGN KEY (province, version) REFERENCES rule_sets (province, version)
);

INSERT INTO ruleset_publications (province, version, mode, published_by)
SELECT province, version, 'legacy', published_by FROM rule_sets ORDER BY seal_id;

CREATE TRIGGER ruleset_policies_append_only BEFORE UPDATE OR DELETE ON ruleset_policies
    FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ruleset_policies_no_truncate BEFORE TRUNCATE ON ruleset_policies
    FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ruleset_proposals_append_only BEFORE UPDATE OR DELETE ON ruleset_proposals
    FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ruleset_proposals_no_truncate BEFORE TRUNCATE ON ruleset_proposals
    FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ruleset_reviews_append_only BEFORE UPDATE OR DELETE ON ruleset_reviews
    FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ruleset_reviews_no_truncate BEFORE TRUNCATE ON ruleset_reviews
    FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ruleset_publications_append_only BEFORE UPDATE OR DELETE ON ruleset_publications
    FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER ruleset_publications_no_truncate BEFORE TRUNCATE ON ruleset_publications
    FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();

-- Policies are an admin's (the CLI, as the schema owner); the service reads them.
GRANT SELECT ON ruleset_policies TO tanhui_service;
GRANT SELECT, INSERT ON ruleset_proposals, ruleset_reviews, ruleset_publications TO tanhui_service;
