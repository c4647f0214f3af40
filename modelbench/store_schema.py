"""The run store's schema: its tables, its version, and the migrations that bring an older store
up to date (in one transaction, so that a second process opening it at the same moment waits, then
finds it done). The shared SQL fragments that `Store` and the migrations both use live here too.

Version 1 kept only the latest attempt at each response key; version 2 added `response_failures`,
each run's own failures, which the 1-to-2 migration recovers from the run's item scores.
"""

import sqlite3
from pathlib import Path

from modelbench.core import GRADABLE_OUTCOMES
from modelbench.errors import UserError

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    uid TEXT PRIMARY KEY, hazard TEXT NOT NULL, subhazard TEXT, persona TEXT NOT NULL,
    locale TEXT NOT NULL, text TEXT NOT NULL, source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, sut_uid TEXT NOT NULL, item_uid TEXT NOT NULL, outcome TEXT NOT NULL,
    text TEXT, error TEXT, latency_s REAL, prompt_tokens INTEGER, completion_tokens INTEGER,
    attempts INTEGER, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY, response_key TEXT NOT NULL, evaluator_uid TEXT NOT NULL,
    p_unsafe REAL, categories TEXT NOT NULL, raw TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL,
    config TEXT NOT NULL, summary TEXT
);
CREATE TABLE IF NOT EXISTS run_responses (
    run_id TEXT NOT NULL, sut_uid TEXT NOT NULL, item_uid TEXT NOT NULL, response_key TEXT NOT NULL,
    PRIMARY KEY (run_id, sut_uid, item_uid)
);
CREATE TABLE IF NOT EXISTS run_item_scores (
    run_id TEXT NOT NULL, sut_uid TEXT NOT NULL, item_uid TEXT NOT NULL, response_key TEXT NOT NULL,
    p_unsafe REAL, is_safe INTEGER, entropy REAL, uncertain INTEGER NOT NULL, members TEXT NOT NULL,
    PRIMARY KEY (run_id, sut_uid, item_uid)
);
CREATE TABLE IF NOT EXISTS response_failures (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL, run_id TEXT NOT NULL, sut_uid TEXT NOT NULL,
    item_uid TEXT NOT NULL, outcome TEXT NOT NULL, text TEXT, error TEXT, latency_s REAL,
    prompt_tokens INTEGER, completion_tokens INTEGER, attempts INTEGER, created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS response_failures_by_run ON response_failures (run_id, key);
CREATE TABLE IF NOT EXISTS run_legs (
    run_id TEXT NOT NULL, leg INTEGER NOT NULL, started_at TEXT NOT NULL, wall_s REAL,
    status TEXT NOT NULL, PRIMARY KEY (run_id, leg)
);
"""
GRADABLE_SQL = ",".join(f"'{o}'" for o in sorted(GRADABLE_OUTCOMES))
RESPONSE_COLUMNS = (
    "sut_uid, item_uid, outcome, text, error, latency_s, prompt_tokens, completion_tokens, attempts,"
    " created_at"
)
FAILURE_COLUMNS = f"key, run_id, {RESPONSE_COLUMNS}"
# An item score of a failed response: nothing was graded (a graded item has member verdicts).
FAILED_SCORE = "{s}.p_unsafe IS NULL AND {s}.is_safe IS NULL AND {s}.members = '[]'"
LOST_FAILURE = "this run's failure was overwritten by a later run's retry before the store kept history"


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def v1_failures(schema: str) -> str:
    """The failures of the runs of a version-1 store (`schema` is "main" or an attached name), as
    rows of `response_failures` without the id. A version-1 store kept only the latest attempt at
    each key; a run whose item score is empty saw a failure. Its failure row is the stored failure
    when there still is one (a later failure may have replaced an earlier one: its details stand
    for both), and a placeholder `error` when a later run's success replaced it."""
    return f"""
        SELECT r.key, s.run_id, r.sut_uid, r.item_uid, r.outcome, r.text, r.error, r.latency_s,
               r.prompt_tokens, r.completion_tokens, r.attempts, r.created_at
        FROM {schema}.run_item_scores s JOIN {schema}.responses r ON r.key = s.response_key
        WHERE r.outcome NOT IN ({GRADABLE_SQL}) AND s.is_safe IS NULL AND s.p_unsafe IS NULL
        UNION ALL
        SELECT s.response_key, s.run_id, s.sut_uid, s.item_uid, 'error', NULL,
               {_sql_text(LOST_FAILURE)}, NULL, NULL, NULL, NULL, COALESCE(u.started_at, r.created_at)
        FROM {schema}.run_item_scores s JOIN {schema}.responses r ON r.key = s.response_key
        LEFT JOIN {schema}.runs u ON u.run_id = s.run_id
        WHERE r.outcome IN ({GRADABLE_SQL}) AND {FAILED_SCORE.format(s="s")}
    """


def insert_failures_once(select_sql: str) -> str:
    """Append the rows of `select_sql` that are not already there (merging twice adds nothing)."""
    return f"""
        INSERT INTO response_failures ({FAILURE_COLUMNS})
        SELECT * FROM ({select_sql}) x
        WHERE NOT EXISTS (
            SELECT 1 FROM response_failures m
            WHERE m.key = x.key AND m.run_id = x.run_id AND m.created_at = x.created_at
              AND m.outcome = x.outcome AND m.error IS x.error AND m.attempts IS x.attempts
        )
        ORDER BY x.created_at, x.run_id, x.key
    """


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    db.execute(insert_failures_once(v1_failures("main")))


MIGRATIONS = {1: _migrate_1_to_2}  # from version n to n + 1


def read_version(db: sqlite3.Connection, schema: str, path: Path) -> int | None:
    """The schema version written in a store's meta table; None for a new, empty store."""
    has_meta = db.execute(
        f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return None
    row = db.execute(f"SELECT value FROM {schema}.meta WHERE name = 'schema_version'").fetchone()
    if row is None:
        return None
    try:
        return int(row[0])
    except ValueError:
        raise UserError(f"store {path} has an unreadable schema version '{row[0]}'") from None


def check_version(version: int | None, path: Path) -> None:
    """A one-line error for a store this modelbench cannot read."""
    if version is not None and version > SCHEMA_VERSION:
        raise UserError(
            f"store {path} has schema version {version}, newer than this modelbench"
            f" reads ({SCHEMA_VERSION}); upgrade modelbench to use it"
        )
    if version is not None and version < 1:
        raise UserError(f"store {path} has an unknown schema version {version}")


def upgrade(db: sqlite3.Connection, path: Path) -> None:
    """Write the schema version of a new store, or migrate an older one, in one transaction
    (a second process opening the store at the same moment waits, then finds it done)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = read_version(db, "main", path)
        check_version(version, path)
        if version is None:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        else:
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](db)
            db.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))
        db.commit()
    except BaseException:
        db.rollback()
        raise
