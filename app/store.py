"""SQLite store of conversations, turns and card feedback from the chat page.

One file (path from ``--db``), created on first use with a ``schema_version`` table; WAL journal
and ``synchronous=FULL`` so a row is on disk once its transaction commits, and a killed process
loses no committed row. Every write is one transaction. One connection shared by Gradio's worker
threads, serialised by a lock.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    id          TEXT PRIMARY KEY,
    started_at  REAL NOT NULL,
    user_id     INTEGER,              -- MovieLens user the person started from, NULL for a new person
    meta        TEXT NOT NULL         -- JSON: dataset, llm, ...
);
CREATE TABLE IF NOT EXISTS turns (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    at              REAL NOT NULL,
    user_text       TEXT NOT NULL,
    reply           TEXT NOT NULL,
    action          TEXT,
    suggestions     TEXT NOT NULL,    -- JSON list of {item_id, title, score}
    state           TEXT NOT NULL,    -- JSON DialogState.to_dict() after the turn
    notice          TEXT,
    ms              REAL
);
CREATE TABLE IF NOT EXISTS feedback (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    at              REAL NOT NULL,
    item_id         INTEGER NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('like', 'dislike', 'seen')),
    title           TEXT
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns(conversation_id, id);
CREATE INDEX IF NOT EXISTS feedback_by_conversation ON feedback(conversation_id, id);
"""


class StoreError(RuntimeError):
    """The database file is not one this code can use (newer schema, not SQLite)."""


class Store:
    def __init__(self, path):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{path} is not a usable conversation database ({e}); "
                             "move it away or pass another --db") from None

    def _migrate(self) -> None:
        with self._tx() as db:
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            if row[0] is None:
                db.execute("INSERT INTO schema_version(version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {row[0]}, newer than this code's "
                                 f"{SCHEMA_VERSION}; use a newer checkout or another --db")

    class _Tx:
        def __init__(self, store):
            self.store = store

        def __enter__(self):
            self.store._lock.acquire()
            self.store._db.execute("BEGIN IMMEDIATE")
            return self.store._db

        def __exit__(self, exc_type, exc, tb):
            try:
                self.store._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.store._lock.release()
            return False

    def _tx(self):
        """One transaction: committed on normal exit, rolled back on an exception."""
        return Store._Tx(self)

    # -- writes -----------------------------------------------------------------------------
    def start_conversation(self, user_id: int | None = None, meta: dict | None = None) -> str:
        cid = uuid.uuid4().hex
        with self._tx() as db:
            db.execute("INSERT INTO conversations(id, started_at, user_id, meta) VALUES (?, ?, ?, ?)",
                       (cid, time.time(), user_id, json.dumps(meta or {})))
        return cid

    def log_turn(self, conversation_id: str, user_text: str, reply: str, action: str | None,
                 suggestions: list[dict], state: dict, notice: str | None = None, ms: float | None = None) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO turns(conversation_id, at, user_text, reply, action, suggestions, state, notice, ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, time.time(), user_text, reply, action, json.dumps(suggestions, default=str),
                 json.dumps(state, default=str), notice, ms))
            return cur.lastrowid

    def log_feedback(self, conversation_id: str, item_id: int, kind: str, title: str | None = None) -> int:
        with self._tx() as db:
            cur = db.execute("INSERT INTO feedback(conversation_id, at, item_id, kind, title) VALUES (?, ?, ?, ?, ?)",
                             (conversation_id, time.time(), int(item_id), kind, title))
            return cur.lastrowid

    # -- reads ------------------------------------------------------------------------------
    def schema_version(self) -> int:
        with self._lock:
            return self._db.execute("SELECT max(version) FROM schema_version").fetchone()[0]

    def conversations(self) -> list[dict]:
        """Every conversation with its turns and feedback, oldest first (JSON-ready)."""
        with self._lock:
            db = self._db
            convs = db.execute("SELECT id, started_at, user_id, meta FROM conversations ORDER BY started_at, id").fetchall()
            turns = db.execute("SELECT conversation_id, at, user_text, reply, action, suggestions, state, notice, ms"
                               " FROM turns ORDER BY id").fetchall()
            fb = db.execute("SELECT conversation_id, at, item_id, kind, title FROM feedback ORDER BY id").fetchall()
        out = {c[0]: {"conversation_id": c[0], "started_at": c[1], "user_id": c[2], "meta": json.loads(c[3]),
                      "turns": [], "feedback": []} for c in convs}
        for t in turns:
            out[t[0]]["turns"].append({"at": t[1], "user_text": t[2], "reply": t[3], "action": t[4],
                                       "suggestions": json.loads(t[5]), "state": json.loads(t[6]),
                                       "notice": t[7], "ms": t[8]})
        for f in fb:
            out[f[0]]["feedback"].append({"at": f[1], "item_id": f[2], "kind": f[3], "title": f[4]})
        return list(out.values())

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {t: self._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ("conversations", "turns", "feedback")}

    def close(self) -> None:
        with self._lock:
            self._db.close()
