#!/usr/bin/env python3
"""Checks that a live, migrated Tanhui schema could be distributed with Citus.

    Scripts/citus-check.py [DATABASE_URL] [--distribute-sql PATH] [--schema public]

Citus is not packaged for Debian, so the schema is checked against Citus's rules on plain
PostgreSQL instead. The table lists come from Schema/citus/distribute.sql (the script an
operator would run on a Citus coordinator), so the check and the layout cannot drift apart.
Violations:

  * a table of the schema that distribute.sql neither distributes nor makes a reference table
    (every table must be classified), or a listed table that does not exist;
  * a distributed table without its distribution column, or distributed on another column
    than the rest of its colocation group;
  * a primary key, unique constraint or unique index of a distributed table whose key
    columns do not include the distribution column (Citus cannot enforce it per shard);
  * an exclusion constraint of a distributed table that does not compare the distribution
    column with `=`;
  * a foreign key between distributed tables that does not map distribution column to
    distribution column, or that joins two colocation groups (as declared: a table without
    colocate_with starts its own group; we colocate explicitly rather than rely on Citus's
    implicit default);
  * a foreign key from a reference table to a distributed table;
  * a foreign key from a distributed table to a reference table: the real engine (Citus
    13.2) cannot build that layout in either order — create_reference_table turns the
    referencing table and its whole foreign-key graph into Citus local tables, after which
    create_distributed_table fails ("foreign keys from reference tables and local tables to
    distributed tables are not supported"); distributing first needs a reference table that
    does not exist yet. Distribute the referenced table instead (colocated), as rule_sets is;
  * a foreign key between distributed tables whose referenced table is distributed later in
    the script than the referencing one (create_distributed_table refuses a foreign key to a
    table that is still local);
  * a distribution column whose type differs between tables (colocated tables and foreign
    keys need one type).

With `--queries DIR` it checks the SQL in the Swift sources under DIR instead (no database):
every SELECT, UPDATE or DELETE that reads a distributed table must fix `province` to a value
(`province = $1`, `province = ANY($1)`) in its conditions, so Citus routes it to its shards. A query meant to span shards
says so with the comment `-- citus: multi-shard (reason)` inside its SQL. And no statement that
reads a distributed table may call a function that reads one too (such as
tanhui_province_judged_through, found in Schema/migrations): Citus routes the statement to a
shard and runs the function there, which it refuses ("cannot execute a distributed query from
a query on a shard"); call the function in a statement of its own. Nor may an UPDATE, INSERT or
DELETE of a Citus table (distributed or reference) put a non-immutable function (now(),
random(), …) inside COALESCE, CASE, GREATEST, LEAST or NULLIF: Citus refuses it ("non-IMMUTABLE
functions are not allowed in CASE or COALESCE statements"). And an INSERT … SELECT into a
distributed table needs RETURNING or ON CONFLICT: without either, Citus copies the rows into
the shards and reports a unique or exclusion violation as XX000 instead of 23505 / 23P01, so
the code cannot tell a lost race from a failure.

Uses psql (installed with PostgreSQL). Exit 0: `citus-check: ok (…)`; 1: violations, one
per line; 2: usage, parse or connection error.
"""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQL = ROOT / "Schema" / "citus" / "distribute.sql"
SEP = "\x1f"  # field separator for psql output: never part of an identifier we use


def fail(message):
    print(f"citus-check: {message}", file=sys.stderr)
    sys.exit(2)


def parse_distribute_sql(path):
    """Returns (reference tables, {distributed table: (column, colocate_with or None)}, and
    {table: position of its create_*_table call in the script})."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        fail(f"cannot read {path}: {error}")
    # Drop comments so examples in them are not taken for calls.
    text = re.sub(r"--[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)

    reference = []
    order = {}
    for match in re.finditer(r"create_reference_table\s*\(\s*'([^']+)'\s*\)", text, re.I):
        reference.append(match.group(1))
        order.setdefault(match.group(1), match.start())
    distributed = {}
    call = re.compile(r"create_distributed_table\s*\(([^;]*?)\)\s*;", re.I | re.S)
    for match in call.finditer(text):
        args = match.group(1)
        literals = re.findall(r"'([^']*)'", args)
        if len(literals) < 2:
            fail(f"{path}: cannot parse create_distributed_table({args.strip()})")
        colocate = re.search(r"colocate_with\s*=>\s*'([^']+)'", args, re.I)
        table, column = literals[0], literals[1]
        if table in distributed:
            fail(f"{path}: {table} is distributed twice")
        distributed[table] = (column, colocate.group(1) if colocate else None)
        order.setdefault(table, match.start())
    # Catch calls the patterns above did not understand (e.g. a name not quoted).
    calls = len(re.findall(r"create_(?:reference|distributed)_table\s*\(", text, re.I))
    if calls != len(reference) + len(distributed):
        fail(f"{path}: {calls} create_*_table calls but only "
             f"{len(reference) + len(distributed)} could be parsed (quote table names)")
    if not distributed:
        fail(f"{path}: no create_distributed_table calls found")
    return reference, distributed, order


class Database:
    def __init__(self, url):
        self.url = url

    def rows(self, sql):
        command = ["psql", "--no-psqlrc", "--quiet", "-At", "-F", SEP,
                   "-v", "ON_ERROR_STOP=1", "-d", self.url, "-c", sql]
        env = dict(os.environ)
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        except FileNotFoundError:
            fail("psql not found (apt-get install postgresql-client)")
        except subprocess.TimeoutExpired:
            fail("psql timed out")
        if result.returncode != 0:
            fail(f"psql failed: {result.stderr.strip()}")
        return [line.split(SEP) for line in result.stdout.splitlines() if line != ""]


def split_list(text):
    return [item for item in text.split(",") if item != ""] if text else []


SQL_START = re.compile(r"\b(SELECT|UPDATE|DELETE|WITH)\b")


def sql_literals(text):
    """(line, text) of Swift string literals that look like SQL: multi-line and one-line."""
    found = []
    for match in re.finditer(r'"""(.*?)"""', text, re.S):
        found.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    stripped = re.sub(r'"""(.*?)"""', lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    for number, line in enumerate(stripped.splitlines(), 1):
        for match in re.finditer(r'"((?:[^"\\]|\\.)*)"', line):
            found.append((number, match.group(1)))
    return [(line, sql) for line, sql in found if SQL_START.search(sql)]


MIGRATIONS = ROOT / "Schema" / "migrations"


def functions_reading(tables_pattern, migrations=MIGRATIONS):
    """Names of SQL functions created by the migrations whose bodies read a distributed table."""
    reads = re.compile(r"\b(?:FROM|JOIN)\s+(?:" + tables_pattern + r")\b", re.I)
    names = set()
    for path in sorted(migrations.glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\(.*?\$(\w*)\$(.*?)\$\2\$",
                                 text, re.I | re.S):
            if reads.search(match.group(3)):
                names.add(match.group(1).lower())
            else:
                names.discard(match.group(1).lower())  # a later CREATE OR REPLACE decides
    return names


VOLATILE = r"\b(?:now|clock_timestamp|statement_timestamp|transaction_timestamp|timeofday|random|gen_random_uuid|nextval)\s*\(|\bcurrent_(?:timestamp|date|time)\b|\blocal(?:timestamp|time)\b"
CONDITIONAL = re.compile(r"\b(?:coalesce|greatest|least|nullif)\s*\(((?:[^()]|\((?:[^()]|\([^()]*\))*\))*)\)|\bCASE\b(.*?)\bEND\b", re.I | re.S)


def volatile_in_conditional(sql):
    """The first COALESCE/CASE/… of `sql` that holds a non-immutable function, or None."""
    for match in CONDITIONAL.finditer(sql):
        if re.search(VOLATILE, match.group(0), re.I):
            return " ".join(match.group(0).split())[:80]
    return None


def check_queries(directory, distributed, migrations=MIGRATIONS, reference=()):
    """Violations: statements reading a distributed table without `province` in a condition,
    and statements reading one that also call a function reading one."""
    violations = []
    tables = "|".join(re.escape(t) for t in sorted(distributed, key=len, reverse=True))
    reads = re.compile(r"\b(?:FROM|JOIN|UPDATE)\s+(" + tables + r")\b", re.I)
    reading_functions = functions_reading(tables, migrations)
    citus_tables = "|".join(re.escape(t) for t in sorted(set(distributed) | set(reference), key=len, reverse=True))
    modifies = re.compile(r"^\s*(?:WITH\b.*?\)\s*)?(?:UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+(" + citus_tables + r")\b", re.I | re.S)
    for path in sorted(Path(directory).rglob("*.swift")):
        if "Generated" in path.parts:
            continue  # embedded migrations: DDL, checked against the live schema instead
        text = path.read_text(encoding="utf-8")
        for line, sql in sql_literals(text):
            if "citus: multi-shard" in sql:
                continue
            # Interpolations are parameters: `\(x)` stands for a value, never for a column.
            plain = re.sub(r"\\\((?:[^()]|\([^()]*\))*\)", "$", sql)
            plain = re.sub(r"--[^\n]*", "", plain)
            modified = modifies.match(plain)
            shown_conditional = volatile_in_conditional(plain) if modified else None
            if shown_conditional:
                where = f"{path.relative_to(directory) if path.is_relative_to(directory) else path}:{line}"
                violations.append(f"{where}: modifies {modified.group(1)} with a non-immutable function inside "
                                  f"{shown_conditional} (Citus refuses it; compute the value apart)")
            if (modified and re.match(r"\s*INSERT\b", plain, re.I) and modified.group(1) in distributed
                    and re.search(r"\bSELECT\b", plain, re.I)
                    and not re.search(r"\bON\s+CONFLICT\b|\bRETURNING\b", plain, re.I)):
                where = f"{path.relative_to(directory) if path.is_relative_to(directory) else path}:{line}"
                violations.append(f"{where}: INSERT … SELECT into {modified.group(1)} without RETURNING or ON CONFLICT: "
                                  "Citus copies such rows into the shards and reports any constraint violation as "
                                  "XX000, so a lost race (23505, 23P01) is not recognised (add RETURNING)")
            if re.match(r"\s*INSERT\b", plain, re.I) and not re.search(r"\bSELECT\b", plain, re.I):
                continue
            named = sorted({m.group(1) for m in reads.finditer(plain)})
            if not named:
                continue
            where = f"{path.relative_to(directory) if path.is_relative_to(directory) else path}:{line}"
            for function in sorted(reading_functions):
                if re.search(r"\b" + re.escape(function) + r"\s*\(", plain, re.I):
                    violations.append(f"{where}: reads {', '.join(named)} and calls {function}(), which reads a "
                                      "distributed table: on Citus the function would run on a shard (call it alone)")
            conditions = " ".join(re.findall(r"\b(?:WHERE|ON)\b(.*?)(?=\b(?:GROUP|ORDER|LIMIT|RETURNING|UNION|FOR|WINDOW)\b|$)", plain, re.I | re.S))
            # Routed to one shard only by a condition fixing province to a value (a join on
            # t.province = e.province colocates, but does not route).
            if not re.search(r"\bprovince\s*=\s*(?:ANY\s*\(\s*)?\$", conditions, re.I):
                shown = " ".join(plain.split())[:120]
                violations.append(f"{path.relative_to(directory) if path.is_relative_to(directory) else path}:{line}: "
                                  f"reads {', '.join(named)} without province in its conditions (multi-shard on Citus): {shown}")
    return violations


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database_url", nargs="?", default=os.environ.get("DATABASE_URL"),
                        help="libpq URL of a migrated database (default: $DATABASE_URL)")
    parser.add_argument("--distribute-sql", type=Path, default=DEFAULT_SQL,
                        help=f"Citus layout to check against (default: {DEFAULT_SQL.relative_to(ROOT)})")
    parser.add_argument("--schema", default="public", help="schema to inspect (default: public)")
    parser.add_argument("--queries", type=Path, metavar="DIR",
                        help="check the SQL in the Swift sources under DIR instead of a database")
    parser.add_argument("--migrations", type=Path, default=MIGRATIONS,
                        help="with --queries: where the SQL functions are defined (default: Schema/migrations)")
    args = parser.parse_args()
    if args.queries is not None:
        reference, distributed, _ = parse_distribute_sql(args.distribute_sql)
        if not args.queries.is_dir():
            fail(f"{args.queries} is not a directory")
        violations = check_queries(args.queries, distributed, args.migrations, reference)
        if violations:
            print(f"citus-check: {len(violations)} quer(y/ies) break the Citus rules:", file=sys.stderr)
            for violation in violations:
                print(f"  - {violation}", file=sys.stderr)
            sys.exit(1)
        print(f"citus-check: queries ok (every read of {len(distributed)} distributed tables names province)")
        return
    if not args.database_url:
        fail("no database: pass a URL or set DATABASE_URL")

    reference, distributed, order = parse_distribute_sql(args.distribute_sql)
    db = Database(args.database_url)
    schema = args.schema.replace("'", "''")
    violations = []

    # --- Classification --------------------------------------------------------------
    for table in set(reference) & set(distributed):
        violations.append(f"{table}: listed both as reference and as distributed table")
    for table in {t for t in reference if reference.count(t) > 1}:
        violations.append(f"{table}: listed twice as reference table")

    # Ordinary and partitioned tables, not partitions (they follow their parent) and not
    # tables an extension owns.
    tables = {name for (name,) in db.rows(f"""
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY 1""")}
    for table in sorted(tables - set(reference) - set(distributed)):
        violations.append(f"{table}: not classified in {args.distribute_sql.name} "
                          "(add create_distributed_table or create_reference_table)")
    for table in sorted((set(reference) | set(distributed)) - tables):
        violations.append(f"{table}: listed in {args.distribute_sql.name} but not a table "
                          f"of schema {args.schema}")

    # --- Colocation groups and distribution columns -----------------------------------
    def group_of(table, seen=()):
        column, colocate = distributed[table]
        if colocate is None:
            return table
        if colocate not in distributed or colocate in seen:
            return None
        return group_of(colocate, seen + (table,))

    groups = {}
    for table, (column, colocate) in distributed.items():
        group = group_of(table)
        if group is None:
            violations.append(f"{table}: colocate_with '{colocate}' is not a distributed table "
                              "(or colocation is circular)")
            continue
        groups[table] = group
        anchor_column = distributed[group][0]
        if column != anchor_column:
            violations.append(f"{table}: distributed on '{column}' but its colocation group "
                              f"({group}) on '{anchor_column}'")

    columns = {}  # (table, column) -> type
    for table, column, type_ in db.rows(f"""
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                       THEN ' COLLATE ' || quote_ident(co.collname) ELSE '' END
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_collation co ON co.oid = a.attcollation
        WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'p') AND a.attnum > 0
          AND NOT a.attisdropped"""):
        columns[(table, column)] = type_

    dist_column = {}  # distributed tables that exist and have their column
    for table, (column, _) in sorted(distributed.items()):
        if table not in tables:
            continue
        if (table, column) not in columns:
            violations.append(f"{table}: distributed on '{column}' but has no such column")
        else:
            dist_column[table] = column

    # One type per distribution column name, across every table that has such a column
    # (reference tables too: distributed → reference foreign keys compare them).
    for name in sorted({c for c, _ in distributed.values()}):
        types = {}
        for (table, column), type_ in columns.items():
            if column == name and table in tables:
                types.setdefault(type_, []).append(table)
        if len(types) > 1:
            detail = "; ".join(f"{t}: {', '.join(sorted(ts))}" for t, ts in sorted(types.items()))
            violations.append(f"column '{name}' has different types across tables ({detail})")

    # --- Unique indexes (primary keys and unique constraints are backed by one) -------
    for table, index, constraint, keys in db.rows(f"""
        SELECT c.relname, ic.relname, coalesce(con.conname, ''),
               array_to_string(ARRAY(
                   SELECT coalesce(a.attname, '<expression>')
                   FROM generate_series(0, i.indnkeyatts - 1) AS g(k)
                   LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[g.k]
                   ORDER BY g.k), ',')
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype IN ('p', 'u')
        WHERE n.nspname = '{schema}' AND i.indisunique
        ORDER BY 1, 2"""):
        if table in dist_column and dist_column[table] not in split_list(keys):
            what = f"constraint {constraint}" if constraint else f"unique index {index}"
            violations.append(f"{table}: {what} ({keys}) does not include "
                              f"distribution column '{dist_column[table]}'")

    # --- Exclusion constraints ---------------------------------------------------------
    for table, constraint, keys, operators in db.rows(f"""
        SELECT c.relname, con.conname,
               array_to_string(ARRAY(
                   SELECT coalesce(a.attname, '<expression>')
                   FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
                   LEFT JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
                   ORDER BY k.ord), ','),
               array_to_string(ARRAY(
                   SELECT o.oprname FROM unnest(con.conexclop) WITH ORDINALITY AS x(opr, ord)
                   JOIN pg_operator o ON o.oid = x.opr ORDER BY x.ord), ',')
        FROM pg_constraint con
        JOIN pg_class c ON c.oid = con.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = '{schema}' AND con.contype = 'x'
        ORDER BY 1, 2"""):
        if table not in dist_column:
            continue
        pairs = list(zip(split_list(keys), split_list(operators)))
        if (dist_column[table], "=") not in pairs:
            violations.append(f"{table}: exclusion constraint {constraint} does not compare "
                              f"distribution column '{dist_column[table]}' WITH =")

    # --- Foreign keys ------------------------------------------------------------------
    for child, constraint, parent, child_keys, parent_keys in db.rows(f"""
        SELECT c.relname, con.conname, p.relname,
               array_to_string(ARRAY(
                   SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
                   ORDER BY k.ord), ','),
               array_to_string(ARRAY(
                   SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
                   ORDER BY k.ord), ',')
        FROM pg_constraint con
        JOIN pg_class c ON c.oid = con.conrelid
        JOIN pg_class p ON p.oid = con.confrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = '{schema}' AND con.contype = 'f'
        ORDER BY 1, 2"""):
        label = f"{child}: foreign key {constraint} ({child_keys}) → {parent} ({parent_keys})"
        if child in reference and parent in distributed:
            violations.append(f"{label}: a reference table cannot reference a distributed table")
        elif child in distributed and parent in reference:
            violations.append(f"{label}: Citus cannot distribute a table that references a "
                              "reference table through a foreign-key graph (create_reference_table "
                              "makes the referencing tables Citus local tables); distribute "
                              f"{parent} colocated instead")
        elif child in distributed and parent in distributed:
            if child not in dist_column or parent not in dist_column:
                continue  # already reported: missing distribution column
            pairs = list(zip(split_list(child_keys), split_list(parent_keys)))
            if (dist_column[child], dist_column[parent]) not in pairs:
                violations.append(f"{label}: must map distribution column "
                                  f"'{dist_column[child]}' to '{dist_column[parent]}'")
            if child != parent and order.get(parent, -1) > order.get(child, -1):
                violations.append(f"{label}: {parent} is distributed after {child} "
                                  "(a referenced table must be distributed first)")
            if groups.get(child) is not None and groups.get(child) != groups.get(parent):
                violations.append(f"{label}: tables are not colocated "
                                  f"({groups.get(child)} vs {groups.get(parent)})")

    if violations:
        print(f"citus-check: {len(violations)} violation(s) of the Citus rules "
              f"({args.distribute_sql}):", file=sys.stderr)
        for violation in violations:
            print(f"  - {violation}", file=sys.stderr)
        sys.exit(1)
    print(f"citus-check: ok ({len(distributed)} distributed, {len(reference)} reference tables)")


if __name__ == "__main__":
    main()
