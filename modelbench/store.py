"""The SQLite run store: items, responses and verdicts, content-addressed so that work is never
done twice and never lost.

Response keys hash the SUT's identity and the item; verdict keys hash the evaluator's identity and
the response key. A repeated or resumed run therefore finds everything it already did by key.
Each batch is committed as soon as it is done (WAL mode), so a crash loses only what was in
flight. Error responses are stored for the record but are not reused: the next run retries them.
"""

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelbench.errors import UserError
from modelbench.graders.base import Verdict
from modelbench.prompts.items import TestItem
from modelbench.suts.base import GRADABLE_OUTCOMES, SUTResponse

SCHEMA_VERSION = 1
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
"""
_CHUNK = 500
MERGED_TABLES = ("items", "responses", "verdicts", "runs")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _chunks(keys: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]


def _lock_timeout() -> float:
    """Seconds to wait for another writer; long by default, short in tests and scripts."""
    try:
        return float(os.environ.get("MODELBENCH_LOCK_TIMEOUT", "30"))
    except ValueError:
        return 30.0


class Store:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=_lock_timeout())
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.db.commit()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"cannot use store {self.path}: {exc}") from None
        except OSError as exc:
            raise UserError(f"cannot create store {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        self.db.close()

    # -- items ---------------------------------------------------------------------------------
    def put_items(self, items: Iterable[TestItem]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(i.uid, i.hazard, i.subhazard, i.persona, i.locale, i.text, i.source) for i in items],
        )
        self.db.commit()

    # -- responses -----------------------------------------------------------------------------
    def get_responses(self, keys: Iterable[str]) -> dict[str, SUTResponse]:
        """Stored gradable responses by key (failures are not returned: they are to be retried)."""
        gradable = ",".join(f"'{o}'" for o in sorted(GRADABLE_OUTCOMES))
        found: dict[str, SUTResponse] = {}
        for chunk in _chunks(list(keys)):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT key, sut_uid, item_uid, outcome, text, error, latency_s, prompt_tokens,"
                f" completion_tokens, attempts FROM responses WHERE outcome IN ({gradable})"
                f" AND key IN ({marks})",
                chunk,
            )
            for key, sut, item, outcome, text, error, latency, n_prompt, n_completion, attempts in rows:
                found[key] = SUTResponse(
                    sut_uid=sut,
                    item_uid=item,
                    outcome=outcome,
                    text=text,
                    error=error,
                    latency_s=latency,
                    prompt_tokens=n_prompt,
                    completion_tokens=n_completion,
                    attempts=attempts,
                )
        return found

    def put_responses(self, keyed: list[tuple[str, SUTResponse]], commit: bool = True) -> None:
        created = _now()
        self.db.executemany(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    key,
                    r.sut_uid,
                    r.item_uid,
                    r.outcome,
                    r.text,
                    r.error,
                    r.latency_s,
                    r.prompt_tokens,
                    r.completion_tokens,
                    r.attempts,
                    created,
                )
                for key, r in keyed
            ],
        )
        if commit:
            self.db.commit()

    # -- verdicts ------------------------------------------------------------------------------
    def get_verdicts(self, keys: Iterable[str]) -> dict[str, Verdict]:
        """Stored valid verdicts by key. An invalid verdict (an HTTP error, an unparseable answer, a
        grader that failed on its batch) is kept as the run's record but never reused as a result:
        the next run asks the grader again, and a success replaces it."""
        found: dict[str, Verdict] = {}
        for chunk in _chunks(list(keys)):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT key, evaluator_uid, p_unsafe, categories, raw FROM verdicts"
                f" WHERE p_unsafe IS NOT NULL AND key IN ({marks})",
                chunk,
            )
            for key, evaluator, p, categories, raw in rows:
                found[key] = Verdict(
                    evaluator_uid=evaluator, p_unsafe=p, categories=json.loads(categories), raw=raw
                )
        return found

    def put_verdicts(self, keyed: list[tuple[str, str, Verdict]], commit: bool = True) -> None:
        """(verdict key, response key, verdict) triples."""
        created = _now()
        self.db.executemany(
            "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    key,
                    response_key,
                    v.evaluator_uid,
                    v.p_unsafe,
                    json.dumps(v.categories),
                    v.raw,
                    created,
                )
                for key, response_key, v in keyed
            ],
        )
        if commit:
            self.db.commit()

    # -- runs ----------------------------------------------------------------------------------
    def start_run(self, run_id: str, config: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, NULL, 'running', ?, NULL)",
            (run_id, _now(), json.dumps(config, default=str)),
        )
        self.db.commit()

    def commit(self) -> None:
        self.db.commit()

    def link_responses(self, run_id: str, rows: list[tuple[str, str, str]], commit: bool = True) -> None:
        """Remember which responses a run used: (sut uid, item uid, response key)."""
        self.db.executemany(
            "INSERT OR REPLACE INTO run_responses VALUES (?, ?, ?, ?)",
            [(run_id, sut, item, key) for sut, item, key in rows],
        )
        if commit:
            self.db.commit()

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE run_id = ?",
            (_now(), status, json.dumps(summary, default=str), run_id),
        )
        self.db.commit()

    def put_item_scores(
        self, run_id: str, rows: list[tuple[str, str, str, Any]], commit: bool = True
    ) -> None:
        """(sut uid, item uid, response key, ItemScore or None) for every item of a finished run."""
        values = []
        for sut, item, key, score in rows:
            if score is None:
                values.append((run_id, sut, item, key, None, None, None, 0, "[]"))
            else:
                members = json.dumps([v.model_dump() for v in score.member_verdicts])
                safe = None if score.is_safe is None else int(score.is_safe)
                values.append(
                    (
                        run_id,
                        sut,
                        item,
                        key,
                        score.p_unsafe,
                        safe,
                        score.entropy,
                        int(score.uncertain),
                        members,
                    )
                )
        self.db.executemany(
            "INSERT OR REPLACE INTO run_item_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values
        )
        self.db.commit()

    def run_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY started_at, run_id")]

    def run_info(self, run_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT run_id, started_at, finished_at, status, config, summary FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            return None
        return {
            "run_id": row[0],
            "started_at": row[1],
            "finished_at": row[2],
            "status": row[3],
            "config": json.loads(row[4]),
            "summary": json.loads(row[5]) if row[5] else None,
        }

    def run_rows(self, run_id: str) -> list[dict[str, Any]]:
        """Per-item rows of a finished run: item, response and ensemble score, for export and comparison."""
        cursor = self.db.execute(
            """
            SELECT s.sut_uid, s.item_uid, i.hazard, i.subhazard, i.persona, i.locale, i.source, i.text,
                   r.outcome, r.text, r.error, r.latency_s, r.prompt_tokens, r.completion_tokens,
                   s.response_key, s.p_unsafe, s.is_safe, s.entropy, s.uncertain, s.members
            FROM run_item_scores s
            JOIN items i ON i.uid = s.item_uid
            LEFT JOIN responses r ON r.key = s.response_key
            WHERE s.run_id = ?
            ORDER BY s.sut_uid, s.rowid
            """,
            (run_id,),
        )
        names = [
            "sut_uid", "item_uid", "hazard", "subhazard", "persona", "locale", "source", "prompt",
            "outcome", "response", "error", "latency_s", "prompt_tokens", "completion_tokens",
            "response_key", "p_unsafe", "is_safe", "entropy", "uncertain", "member_verdicts",
        ]  # fmt: skip
        rows = []
        for values in cursor:
            row = dict(zip(names, values, strict=True))
            row["is_safe"] = None if row["is_safe"] is None else bool(row["is_safe"])
            row["uncertain"] = bool(row["uncertain"])
            row["member_verdicts"] = json.loads(row["member_verdicts"])
            rows.append(row)
        return rows

    def merge_from(self, other: Path) -> dict[str, int]:
        """Copy another store's rows in, by key: nothing is duplicated, a gradable response wins
        over a stored failure, and existing rows are never overwritten otherwise."""
        other = Path(other)
        if not other.is_file():
            raise UserError(f"no store at {other}")
        try:
            self.db.execute("ATTACH DATABASE ? AS src", (f"file:{other}?mode=ro",))
        except sqlite3.DatabaseError as exc:
            raise UserError(f"cannot open store {other}: {exc}") from None
        try:
            check = self.db.execute("PRAGMA src.quick_check").fetchone()[0]
            if check != "ok":
                raise UserError(f"store {other} is damaged: {check}")
            before = {t: self.count(t) for t in MERGED_TABLES}
            gradable = ",".join(f"'{o}'" for o in sorted(GRADABLE_OUTCOMES))
            self.db.execute("INSERT OR IGNORE INTO items SELECT * FROM src.items")
            self.db.execute(
                "INSERT OR REPLACE INTO responses SELECT s.* FROM src.responses s"
                f" LEFT JOIN responses m ON m.key = s.key WHERE s.outcome IN ({gradable})"
                f" AND (m.key IS NULL OR m.outcome NOT IN ({gradable}))"
            )
            self.db.execute("INSERT OR IGNORE INTO responses SELECT * FROM src.responses")
            for table in ("verdicts", "runs", "run_responses", "run_item_scores"):
                self.db.execute(f"INSERT OR IGNORE INTO {table} SELECT * FROM src.{table}")
            self.db.commit()
            return {t: self.count(t) - before[t] for t in MERGED_TABLES}
        except sqlite3.DatabaseError as exc:
            self.db.rollback()
            raise UserError(f"cannot merge {other}: {exc}") from None
        finally:
            self.db.execute("DETACH DATABASE src")

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def count(self, table: str) -> int:
        if table not in {"items", "responses", "verdicts", "runs", "run_responses", "run_item_scores"}:
            raise ValueError(table)
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
