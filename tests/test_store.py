"""The SQLite store: content-addressed reuse, error rows retried, clear errors on bad files."""

import re

import pytest

from modelbench import UserError
from modelbench import store as store_module
from modelbench.graders import Verdict
from modelbench.prompts import TestItem
from modelbench.store import Store
from modelbench.suts import SUTResponse


def test_responses_round_trip_and_errors_are_not_reused(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    ok = SUTResponse(
        sut_uid="s", item_uid="i1", text="hello", latency_s=0.5, prompt_tokens=3, completion_tokens=2
    )
    bad = SUTResponse(sut_uid="s", item_uid="i2", outcome="error", error="boom")
    store.put_responses([("k1", ok), ("k2", bad)])
    found = store.get_responses(["k1", "k2", "k3"])
    assert found == {"k1": ok}
    assert store.count("responses") == 2
    # A retry that succeeds replaces the error row.
    store.put_responses([("k2", SUTResponse(sut_uid="s", item_uid="i2", text="fine"))])
    assert store.get_responses(["k2"])["k2"].text == "fine"
    assert store.count("responses") == 2
    store.close()


def test_valid_verdicts_round_trip_and_invalid_ones_are_not_reused(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    verdicts = [
        ("v1", "k1", Verdict(evaluator_uid="e", p_unsafe=0.25, categories=["vcr"], raw="why")),
        ("v2", "k2", Verdict(evaluator_uid="e", raw="unparseable")),
    ]
    store.put_verdicts(verdicts)
    assert store.get_verdicts(["v1", "v2"]) == {"v1": verdicts[0][2]}
    assert store.count("verdicts") == 2  # the failure is kept, not reused
    store.put_verdicts([("v2", "k2", Verdict(evaluator_uid="e", p_unsafe=0.5, raw="retried"))])
    assert store.get_verdicts(["v2"])["v2"].raw == "retried" and store.count("verdicts") == 2
    store.close()


def test_many_keys_are_fetched_in_chunks(tmp_path, monkeypatch):
    """SQLite caps the bound parameters of one statement (999 in older builds, 32766 in newer),
    so a lookup of many keys must be split. Any key count below the local cap passes without
    chunking, so the chunk is shrunk to 100 and the lookup queries are counted: 250 keys must be
    3 queries of 100, 100 and 50 keys, and every key must come back."""
    monkeypatch.setattr(store_module, "_CHUNK", 100)
    store = Store(tmp_path / "s.sqlite")
    rows = [(f"k{i}", SUTResponse(sut_uid="s", item_uid=f"i{i}", text=str(i))) for i in range(250)]
    store.put_responses(rows)
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    found = store.get_responses([k for k, _ in rows])
    store.db.set_trace_callback(None)
    lookups = [s for s in statements if s.startswith("SELECT") and "FROM responses" in s]
    # The trace shows each statement with its values bound: count the keys each one asked for.
    assert [len(re.findall(r"'k\d+'", s)) for s in lookups] == [100, 100, 50]
    assert found == dict(rows)
    store.close()


def test_data_survives_reopening(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    store.put_items([TestItem(uid="i", hazard="vcr", persona="normal", text="t", source="x")])
    store.put_responses([("k", SUTResponse(sut_uid="s", item_uid="i", text="t"))])
    store.close()
    again = Store(path)
    assert again.count("items") == 1 and again.get_responses(["k"])["k"].text == "t"
    again.close()


def test_a_file_that_is_not_a_store_is_a_clear_error(tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="cannot use store"):
        Store(path)
    assert path.read_bytes() == b"this is not sqlite" * 100
