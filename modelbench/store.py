"""The SQLite run store: items, responses and verdicts, content-addressed so that work is never
done twice and never lost, and a history of runs that later runs never rewrite.

Response keys hash the SUT's identity and the item; verdict keys hash the evaluator's identity and
the response key. A repeated or resumed run therefore finds everything it already did by key.
Each batch is committed as soon as it is done (WAL mode), so a crash loses only what was in
flight.

`responses` holds the latest attempt at each key: a gradable response is reused by every later
run and never replaced; a failure (error, invalid_response, empty_choices) is not reused, and the
next run's attempt replaces it there. So that a run's record keeps its own outcomes, a failure is
also appended to `response_failures` with the run that saw it, and `run_rows` shows a run its own
failure, never a later run's retry. A run resumed after an interruption has one `run_legs` row per
leg; its timing is the first leg's start and the sum of the legs' wall times.

The schema, its version and the migrations of older stores are in `modelbench.store_schema`.
"""

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelbench.core import SUTResponse, TestItem, Verdict
from modelbench.errors import UserError
from modelbench.store_schema import (  # noqa: F401 (LOST_FAILURE, MIGRATIONS: re-exported)
    FAILED_SCORE,
    FAILURE_COLUMNS,
    GRADABLE_SQL,
    LOST_FAILURE,
    MIGRATIONS,
    RESPONSE_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    check_version,
    insert_failures_once,
    read_version,
    upgrade,
    v1_failures,
)

_CHUNK = 500
MERGED_TABLES = ("items", "responses", "verdicts", "runs", "response_failures")
COUNTED_TABLES = frozenset(
    {
        "items",
        "responses",
        "verdicts",
        "runs",
        "run_responses",
        "run_item_scores",
        "response_failures",
        "run_legs",
    }
)
# A gradable response is final: a later attempt at the same key replaces only a failure.
_UPSERT_RESPONSE = (
    "INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in RESPONSE_COLUMNS.split(", "))
    + f" WHERE responses.outcome NOT IN ({GRADABLE_SQL})"
)


STORE_NAME = "modelbench.sqlite"


def open_store(run_dir: Path, purpose: str = "") -> "Store":
    """The existing store of a run dir; a missing one is a one-line error, never a new empty store."""
    path = Path(run_dir) / STORE_NAME
    if not path.is_file():
        raise UserError(f"{purpose + ': ' if purpose else ''}no store at {path} (give --run-dir)")
    return Store(path)


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
        except OSError as exc:
            raise UserError(f"cannot create store {self.path}: {exc.strerror or exc}") from None
        try:
            self.db = sqlite3.connect(self.path, timeout=_lock_timeout())
        except sqlite3.DatabaseError as exc:
            raise UserError(f"cannot use store {self.path}: {exc}") from None
        try:
            check_version(read_version(self.db, "main", self.path), self.path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            if read_version(self.db, "main", self.path) != SCHEMA_VERSION:
                upgrade(self.db, self.path)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise UserError(f"cannot use store {self.path}: {exc}") from None
        except OSError as exc:
            self.db.close()
            raise UserError(f"cannot create store {self.path}: {exc.strerror or exc}") from None
        except UserError:
            self.db.close()
            raise

    def schema_version(self) -> int | None:
        return read_version(self.db, "main", self.path)

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
        found: dict[str, SUTResponse] = {}
        for chunk in _chunks(list(keys)):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT key, sut_uid, item_uid, outcome, text, error, latency_s, prompt_tokens,"
                f" completion_tokens, attempts FROM responses WHERE outcome IN ({GRADABLE_SQL})"
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

    def put_responses(
        self, keyed: list[tuple[str, SUTResponse]], run_id: str | None = None, commit: bool = True
    ) -> None:
        """Store (key, response) pairs that run `run_id` got. A gradable response is stored once
        and never replaced; a failure replaces only an earlier failure in `responses`, and is
        appended to the run's own history (`response_failures`) when the run is named."""
        created = _now()
        values = [
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
        ]
        self.db.executemany(_UPSERT_RESPONSE, values)
        if run_id is not None:
            failures = [
                (v[0], run_id, *v[1:]) for v, (_, r) in zip(values, keyed, strict=True) if not r.gradable
            ]
            if failures:
                self.db.executemany(
                    f"INSERT INTO response_failures ({FAILURE_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    failures,
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
    def start_run(self, run_id: str, config: dict[str, Any]) -> int:
        """Start a run, or a new leg of it (a resume): the run keeps its first `started_at`, is
        marked running with this leg's config, and a leg opens. Returns the leg's number (1, 2...)."""
        now = _now()
        updated = self.db.execute(
            "UPDATE runs SET finished_at = NULL, status = 'running', config = ?, summary = NULL"
            " WHERE run_id = ?",
            (json.dumps(config, default=str), run_id),
        ).rowcount
        if not updated:
            self.db.execute(
                "INSERT INTO runs VALUES (?, ?, NULL, 'running', ?, NULL)",
                (run_id, now, json.dumps(config, default=str)),
            )
        leg = self.db.execute(
            "SELECT COALESCE(MAX(leg), 0) + 1 FROM run_legs WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
        self.db.execute("INSERT INTO run_legs VALUES (?, ?, ?, NULL, 'running')", (run_id, leg, now))
        self.db.commit()
        return int(leg)

    def end_leg(self, run_id: str, status: str, wall_s: float | None) -> None:
        """Close the run's current (latest) leg: how it ended ("finished", "interrupted", "failed")
        and its wall time in seconds. The run's own status is `finish_run`'s to set."""
        self.db.execute(
            "UPDATE run_legs SET status = ?, wall_s = ? WHERE run_id = ?"
            " AND leg = (SELECT MAX(leg) FROM run_legs WHERE run_id = ?)",
            (status, None if wall_s is None else round(float(wall_s), 3), run_id, run_id),
        )
        self.db.commit()

    def run_timing(self, run_id: str) -> dict[str, Any] | None:
        """When the run first started, its wall time summed over its legs (those with a recorded
        wall time: a leg whose process was killed has none), and the legs. None for no such run.
        A run from before legs were kept has no legs; its recorded wall time stands."""
        row = self.db.execute("SELECT started_at, summary FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        legs = [
            {"leg": leg, "started_at": started, "wall_s": wall, "status": status}
            for leg, started, wall, status in self.db.execute(
                "SELECT leg, started_at, wall_s, status FROM run_legs WHERE run_id = ? ORDER BY leg",
                (run_id,),
            )
        ]
        walls = [leg["wall_s"] for leg in legs if leg["wall_s"] is not None]
        wall_s = round(sum(walls), 3) if walls else None
        if not legs and row[1]:
            timing = ((json.loads(row[1]).get("record") or {}).get("timing")) or {}
            wall_s = timing.get("wall_s")
        return {"started_at": row[0], "wall_s": wall_s, "legs": legs}

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

    def keep_record(self, run_id: str, record: dict[str, Any]) -> None:
        """Put a (rebuilt) record into a finished run's summary; its status, finish time and the
        rest of its summary stay as they were."""
        row = self.db.execute("SELECT summary FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        summary = json.loads(row[0]) if row and row[0] else {}
        self.db.execute(
            "UPDATE runs SET summary = ? WHERE run_id = ?",
            (json.dumps(summary | {"record": record}, default=str), run_id),
        )
        self.db.commit()

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        """Set the run's status and summary. A leg still open takes the status (its wall time
        stays unknown unless `end_leg` gives it)."""
        self.db.execute(
            "UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE run_id = ?",
            (_now(), status, json.dumps(summary, default=str), run_id),
        )
        self.db.execute(
            "UPDATE run_legs SET status = ? WHERE run_id = ? AND status = 'running' AND wall_s IS NULL"
            " AND leg = (SELECT MAX(leg) FROM run_legs WHERE run_id = ?)",
            (status, run_id, run_id),
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
        """Runs in the order they started. `started_at` has whole seconds, so two runs of one second
        are ordered as they were inserted (rowid), not by their ids' random suffix."""
        return [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY started_at, rowid")]

    def finished_run_ids(self) -> list[str]:
        return [r for r in self.run_ids() if (self.run_info(r) or {}).get("status") == "finished"]

    def finished_run(self, run: str) -> dict[str, Any]:
        """The info of a finished run, `latest` naming the newest: the one way every command that
        reads a finished run (report, export, compare, leaderboard) finds it, with one-line errors."""
        if run == "latest":
            finished = self.finished_run_ids()
            if not finished:
                raise UserError(f"no finished run in {self.path}")
            run = finished[-1]
        info = self.run_info(run)
        if info is None:
            raise UserError(f"no run '{run}' in {self.path}")
        if info["status"] != "finished":
            raise UserError(f"run '{run}' did not finish ({info['status']}); run it again to complete it")
        return info

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
        """Per-item rows of a finished run: item, response and ensemble score, for export and
        comparison. An item whose response failed in this run shows this run's own failure (the
        latest, when a resumed run failed on it again), whatever later runs stored for its key."""
        cursor = self.db.execute(
            f"""
            SELECT s.sut_uid, s.item_uid, i.hazard, i.subhazard, i.persona, i.locale, i.source, i.text,
                   CASE WHEN f.id IS NULL THEN r.outcome ELSE f.outcome END,
                   CASE WHEN f.id IS NULL THEN r.text ELSE f.text END,
                   CASE WHEN f.id IS NULL THEN r.error ELSE f.error END,
                   CASE WHEN f.id IS NULL THEN r.latency_s ELSE f.latency_s END,
                   CASE WHEN f.id IS NULL THEN r.prompt_tokens ELSE f.prompt_tokens END,
                   CASE WHEN f.id IS NULL THEN r.completion_tokens ELSE f.completion_tokens END,
                   s.response_key, s.p_unsafe, s.is_safe, s.entropy, s.uncertain, s.members
            FROM run_item_scores s
            JOIN items i ON i.uid = s.item_uid
            LEFT JOIN response_failures f ON {FAILED_SCORE.format(s="s")} AND f.id = (
                SELECT MAX(x.id) FROM response_failures x WHERE x.run_id = s.run_id AND x.key = s.response_key
            )
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
        over a stored failure, and existing rows are never overwritten otherwise. Each run's
        failures come along (from a version-1 store, as its migration would find them)."""
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
            check_version(read_version(self.db, "src", other), other)
            src_tables = {
                r[0] for r in self.db.execute("SELECT name FROM src.sqlite_master WHERE type = 'table'")
            }
            before = {t: self.count(t) for t in MERGED_TABLES}
            self.db.execute("INSERT OR IGNORE INTO items SELECT * FROM src.items")
            self.db.execute(
                "INSERT OR REPLACE INTO responses SELECT s.* FROM src.responses s"
                f" LEFT JOIN responses m ON m.key = s.key WHERE s.outcome IN ({GRADABLE_SQL})"
                f" AND (m.key IS NULL OR m.outcome NOT IN ({GRADABLE_SQL}))"
            )
            self.db.execute("INSERT OR IGNORE INTO responses SELECT * FROM src.responses")
            for table in ("verdicts", "runs", "run_responses", "run_item_scores", "run_legs"):
                if table in src_tables:
                    self.db.execute(f"INSERT OR IGNORE INTO {table} SELECT * FROM src.{table}")
            if "response_failures" in src_tables:
                failures = f"SELECT {FAILURE_COLUMNS} FROM src.response_failures ORDER BY id"
            else:
                failures = v1_failures("src")
            self.db.execute(insert_failures_once(failures))
            self.db.commit()
            return {t: self.count(t) - before[t] for t in MERGED_TABLES}
        except sqlite3.DatabaseError as exc:
            self.db.rollback()
            raise UserError(f"cannot merge {other}: {exc}") from None
        except BaseException:
            self.db.rollback()
            raise
        finally:
            self.db.execute("DETACH DATABASE src")

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def count(self, table: str) -> int:
        if table not in COUNTED_TABLES:
            raise ValueError(table)
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
