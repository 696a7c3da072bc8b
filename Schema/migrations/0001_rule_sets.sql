-- 0001: published province rule sets and the operators who publish them.
--
-- Distribution (Citus, see Schema/citus/): rule_sets is small and read by every node, so it
-- becomes a reference table; its key still starts with province.

-- Rejects any change to an append-only table. Guard rail for history tables: rows are
-- written once and corrected only by new rows.
CREATE FUNCTION tanhui_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TABLE rule_sets (
    province        text        NOT NULL CHECK (province ~ '^CN-[A-Z]{2}$'),
    version         integer     NOT NULL CHECK (version >= 1),
    effective_from  timestamptz NOT NULL,
    -- The document exactly as the operator published it, and the SHA-256 of its UTF-8 bytes.
    document        text        NOT NULL,
    document_format text        NOT NULL CHECK (document_format IN ('yaml', 'json')),
    content_sha256  text        NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    methodology     text        NOT NULL,
    published_at    timestamptz NOT NULL DEFAULT now(),
    published_by    text        NOT NULL,
    PRIMARY KEY (province, version)
);

CREATE TRIGGER rule_sets_append_only BEFORE UPDATE OR DELETE ON rule_sets
    FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change();
CREATE TRIGGER rule_sets_no_truncate BEFORE TRUNCATE ON rule_sets
    FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change();

-- The latest instant of a province at which a verdict has already been given. A new
-- rule-set version may only take effect after it, so no verdict can change. Until the
-- events table exists (ledger migration) nothing has been judged.
CREATE FUNCTION tanhui_province_judged_through(p_province text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT NULL::timestamptz $$;

-- Province operators authenticate with API keys; only a SHA-256 of each key is stored.
CREATE TABLE operators (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_sha256  text        NOT NULL UNIQUE CHECK (key_sha256 ~ '^[0-9a-f]{64}$'),
    provinces   text[]      NOT NULL CHECK (cardinality(provinces) >= 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
