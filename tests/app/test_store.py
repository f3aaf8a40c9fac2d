"""The SQLite conversation store: schema version, round trip, export, and crash safety."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.export import main as export_main
from app.store import SCHEMA_VERSION, Store, StoreError

REPO = Path(__file__).resolve().parents[2]


def test_new_store_has_schema_version_and_wal(tmp_path):
    store = Store(tmp_path / "sub" / "c.sqlite")
    assert store.schema_version() == SCHEMA_VERSION
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    assert Store(tmp_path / "sub" / "c.sqlite").schema_version() == SCHEMA_VERSION   # reopen: no duplicate row


def test_round_trip_and_export(tmp_path):
    store = Store(tmp_path / "c.sqlite")
    cid = store.start_conversation(42, {"dataset": "ml-100k"})
    store.log_turn(cid, "something <funny> 😀", "Try Up", "recommend", [{"item_id": 1, "title": "Up", "score": 1.0}],
                   {"turn": 1}, None, 12.5)
    store.log_feedback(cid, 1, "dislike", "Up")
    with pytest.raises(Exception):
        store.log_feedback(cid, 1, "meh", "Up")         # kind is checked by the schema
    store.close()
    out = tmp_path / "out" / "c.jsonl"
    assert export_main(["--db", str(tmp_path / "c.sqlite"), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 1 and rows[0]["user_id"] == 42 and rows[0]["meta"] == {"dataset": "ml-100k"}
    assert rows[0]["turns"][0]["user_text"] == "something <funny> 😀"
    assert rows[0]["turns"][0]["suggestions"][0]["title"] == "Up"
    assert [f["kind"] for f in rows[0]["feedback"]] == ["dislike"]


def test_export_missing_db_is_a_clear_error(tmp_path, capsys):
    assert export_main(["--db", str(tmp_path / "nope.sqlite"), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "no database" in capsys.readouterr().err


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "c.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable conversation database"):
        Store(bad)


def test_newer_schema_is_refused(tmp_path):
    store = Store(tmp_path / "c.sqlite")
    store._db.execute("INSERT INTO schema_version(version) VALUES (?)", (SCHEMA_VERSION + 1,))
    store.close()
    with pytest.raises(StoreError, match="newer"):
        Store(tmp_path / "c.sqlite")


CHILD = """
import sys, time
from app.store import Store
store = Store(sys.argv[1])
cid = store.start_conversation(None, {})
store.log_turn(cid, "committed", "reply", "recommend", [], {}, None, 1.0)
store.log_feedback(cid, 7, "seen", "Heat")
db = store._db
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO turns(conversation_id, at, user_text, reply, suggestions, state) VALUES (?, 0, 'open', '', '[]', '{}')", (cid,))
print("ready", flush=True)
time.sleep(60)
"""


def test_killed_process_keeps_committed_rows(tmp_path):
    db = tmp_path / "c.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = Store(db)
    convs = store.conversations()
    assert [t["user_text"] for t in convs[0]["turns"]] == ["committed"]     # the open transaction is gone
    assert convs[0]["feedback"][0]["title"] == "Heat"
    assert store.counts() == {"conversations": 1, "turns": 1, "feedback": 1}
