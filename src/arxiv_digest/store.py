"""SQLite state: papers and their versions, fetches, which post shows which paper, LLM texts.

One file, WAL mode, a versioned schema migrated forward in a transaction. Every pipeline step
that changes state does it inside ``transaction()`` so a killed run leaves the store consistent.

Every SQLite failure reaches the user as one ``StoreError`` that names the file and says what to do
(damaged, disk full, read-only). Another program holding the write lock (a SQLite browser, a backup)
is waited for ``lock_wait`` seconds, with a line saying which process it is, instead of a silent wait.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from .errors import StoreError
from .models import Author, Paper, Window

log = logging.getLogger(__name__)

FIRST_LOCK_WAIT = 0.5  # seconds a busy store is waited for before the wait is announced

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE papers (
        arxiv_id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        published TEXT NOT NULL,
        data TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL
    );
    CREATE INDEX papers_published ON papers(published);
    CREATE TABLE paper_versions (
        arxiv_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated TEXT NOT NULL,
        data TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        PRIMARY KEY (arxiv_id, version)
    );
    CREATE TABLE fetches (
        id INTEGER PRIMARY KEY,
        range_start TEXT NOT NULL,
        range_end TEXT NOT NULL,
        fetched_at TEXT NOT NULL,
        requests INTEGER NOT NULL,
        results INTEGER NOT NULL
    );
    CREATE TABLE windows (
        day TEXT PRIMARY KEY,
        start TEXT NOT NULL,
        end TEXT NOT NULL,
        fetch_id INTEGER NOT NULL REFERENCES fetches(id),
        fetched_at TEXT NOT NULL
    );
    CREATE TABLE post_papers (
        arxiv_id TEXT PRIMARY KEY REFERENCES papers(arxiv_id),
        day TEXT NOT NULL,
        added_at TEXT NOT NULL,
        pending INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX post_papers_day ON post_papers(day);
    CREATE TABLE posts (
        day TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        fetched INTEGER NOT NULL,
        shown INTEGER NOT NULL,
        left_out INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        written_at TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE texts (
        cache_key TEXT PRIMARY KEY,
        arxiv_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        kind TEXT NOT NULL,
        text TEXT NOT NULL,
        model TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX texts_paper ON texts(arxiv_id, kind, created_at);
    CREATE TABLE fulltexts (
        versioned_id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        text TEXT NOT NULL,
        fetched_at TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE late_notes (
        arxiv_id TEXT PRIMARY KEY REFERENCES post_papers(arxiv_id),
        listed_in TEXT NOT NULL,
        added_at TEXT NOT NULL
    );
    CREATE INDEX late_notes_listed_in ON late_notes(listed_in);
    """,
    # LLM pending queue: how many runs each paper's texts failed in, and whether it was given up
    """
    CREATE TABLE llm_failures (
        arxiv_id TEXT PRIMARY KEY,
        runs INTEGER NOT NULL,
        given_up INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
)


# Papers the LLM stage gave up on (llm.pending_max_runs) are no longer pending: no run retries them.
NOT_GIVEN_UP = "arxiv_id NOT IN (SELECT arxiv_id FROM llm_failures WHERE given_up = 1)"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_iso(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def paper_to_json(paper: Paper) -> str:
    data = asdict(paper)
    data["published"], data["updated"] = _iso(paper.published), _iso(paper.updated)
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def paper_from_json(text: str) -> Paper:
    data = json.loads(text)
    data["authors"] = tuple(Author(**a) for a in data["authors"])
    data["categories"] = tuple(data["categories"])
    data["published"], data["updated"] = _from_iso(data["published"]), _from_iso(data["updated"])
    return Paper(**data)


class StoreBusy(StoreError):
    """Another process holds the store's write lock."""


def store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """One message per kind of SQLite failure, naming the file and the way out."""
    kind = getattr(exc, "sqlite_errorname", "")
    if kind.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreBusy(f"store {path} is locked by {lock_holder(path)}")
    if kind.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return StoreError(
            f"store {path} is damaged ({exc}): restore it from a backup, or move it away to start a new one "
            "(posts already written stay; papers are fetched and texts generated again)"
        )
    if kind.startswith("SQLITE_FULL"):
        return StoreError(f"store {path}: the disk is full; free some space and run again")
    if kind.startswith("SQLITE_READONLY"):
        return StoreError(f"store {path} is read-only ({exc}); make it and its folder writable")
    if kind.startswith("SQLITE_CANTOPEN"):
        return StoreError(f"store {path} cannot be opened ({exc}); check that its folder exists and is writable")
    return StoreError(f"store {path}: {exc}")


def lock_holder(path: Path) -> str:
    """Who holds a write lock on the store, from Linux's ``/proc/locks``: "pid 123 (sqlite3)"."""
    inodes = set()
    for name in (path, path.with_name(path.name + "-shm"), path.with_name(path.name + "-wal")):
        try:
            st = os.stat(name)
        except OSError:
            continue
        inodes.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    try:
        lines = Path("/proc/locks").read_text(encoding="ascii").splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()  # 7: POSIX ADVISORY WRITE 30530 fe:00:2170945 120 120 ("->" marks a waiter)
        if len(fields) < 6 or fields[1] == "->" or fields[3] != "WRITE":
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if key in inodes and pid not in (os.getpid(), 0, -1):
            try:
                command = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
            except OSError:
                command = ""
            return f"another program (pid {pid}{', ' + command if command else ''})"
    return "another program"


class _Connection(sqlite3.Connection):
    """A connection whose failures are ``StoreError``s naming the file (set ``path`` after connecting)."""

    path: Path

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None


class Store:
    def __init__(self, path: Path, lock_wait: float = 10) -> None:
        self.path = path
        self.lock_wait = lock_wait
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=FIRST_LOCK_WAIT, factory=_Connection)
        except sqlite3.Error as exc:
            raise store_error(path, exc) from None
        except OSError as exc:
            raise StoreError(f"store {path}: cannot create its folder ({exc.strerror}: {exc.filename})") from None
        self.db.path = path
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            with self.transaction():  # waits for, or names, a program holding the store before any work
                pass
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        current = self.db.execute("PRAGMA user_version").fetchone()[0]
        if current > len(MIGRATIONS):
            raise StoreError(
                f"store {self.path} has schema version {current}, newer than this arxiv-digest "
                f"understands ({len(MIGRATIONS)}); upgrade arxiv-digest"
            )
        for version in range(current, len(MIGRATIONS)):
            with self.transaction():
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {version + 1}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE .. COMMIT; rolls back on any exception so no half-change survives."""
        self._begin()
        try:
            yield self.db
        except BaseException:
            if self.db.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _begin(self) -> None:
        """Take the write lock; if another program holds it, say who and wait up to ``lock_wait``."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            return
        except StoreBusy as exc:
            log.warning("%s; waiting up to %g s for it to finish", exc, self.lock_wait)
        self.db.execute(f"PRAGMA busy_timeout = {int(self.lock_wait * 1000)}")
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except StoreBusy as exc:
            raise StoreBusy(
                f"{exc}, still after {self.lock_wait:g} s; close that program or wait for it, then run again"
            ) from None
        finally:
            self.db.execute(f"PRAGMA busy_timeout = {int(FIRST_LOCK_WAIT * 1000)}")

    # papers -------------------------------------------------------------------------------
    def save_fetch(
        self,
        papers: Iterable[Paper],
        windows: Sequence[Window],
        requests: int,
        now: datetime,
    ) -> None:
        """Record, in one transaction, windows whose fetch is complete and their papers (latest
        version wins). A fetch interrupted later keeps these; the rest is fetched again."""
        papers = list(papers)
        stamp = _iso(now)
        range_start, range_end = min(w.start for w in windows), max(w.end for w in windows)
        with self.transaction() as db:
            for paper in papers:
                data = paper_to_json(paper)
                db.execute(
                    "INSERT INTO paper_versions VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (paper.arxiv_id, paper.version, _iso(paper.updated), data, stamp),
                )
                db.execute(
                    """INSERT INTO papers VALUES (?, ?, ?, ?, ?, ?)
                       ON CONFLICT(arxiv_id) DO UPDATE SET last_seen = excluded.last_seen,
                         version = excluded.version, data = excluded.data, published = excluded.published
                       WHERE excluded.version >= papers.version""",
                    (paper.arxiv_id, paper.version, _iso(paper.published), data, stamp, stamp),
                )
            fetch_id = db.execute(
                "INSERT INTO fetches (range_start, range_end, fetched_at, requests, results) VALUES (?, ?, ?, ?, ?)",
                (_iso(range_start), _iso(range_end), stamp, requests, len(papers)),
            ).lastrowid
            for window in windows:
                db.execute(
                    "INSERT OR REPLACE INTO windows VALUES (?, ?, ?, ?, ?)",
                    (window.day.isoformat(), _iso(window.start), _iso(window.end), fetch_id, stamp),
                )

    def papers_between(self, start: datetime, end: datetime) -> list[Paper]:
        rows = self.db.execute(
            "SELECT data FROM papers WHERE published >= ? AND published < ? ORDER BY published, arxiv_id",
            (_iso(start), _iso(end)),
        )
        return [paper_from_json(data) for (data,) in rows]

    def window_fetched_at(self, day: date) -> datetime | None:
        row = self.db.execute("SELECT fetched_at FROM windows WHERE day = ?", (day.isoformat(),)).fetchone()
        return _from_iso(row[0]) if row else None

    # posts --------------------------------------------------------------------------------
    def post_days(self, ids: Iterable[str]) -> dict[str, date]:
        """Which post shows each of ``ids`` (those not shown anywhere are absent)."""
        found: dict[str, date] = {}
        ids = list(ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT arxiv_id, day FROM post_papers WHERE arxiv_id IN ({marks})", chunk)
            found.update((arxiv_id, date.fromisoformat(day)) for arxiv_id, day in rows)
        return found

    def assign(self, day: date, ids: Iterable[str], now: datetime) -> None:
        """Record that the post of ``day`` shows ``ids`` (a paper is in exactly one post)."""
        self.db.executemany(
            "INSERT INTO post_papers (arxiv_id, day, added_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(arxiv_id, day.isoformat(), _iso(now)) for arxiv_id in ids],
        )

    def set_pending(self, arxiv_id: str, pending: bool) -> None:
        self.db.execute("UPDATE post_papers SET pending = ? WHERE arxiv_id = ?", (int(pending), arxiv_id))

    def pending_count(self) -> int:
        return self.db.execute(f"SELECT count(*) FROM post_papers WHERE pending = 1 AND {NOT_GIVEN_UP}").fetchone()[0]

    def record_post(
        self, day: date, path: Path, fetched: int, shown: int, left_out: int, sha: str, now: datetime
    ) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO posts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (day.isoformat(), str(path), fetched, shown, left_out, sha, _iso(now)),
        )

    def add_late(self, ids: Iterable[str], listed_in: date, now: datetime) -> None:
        """Papers added to an earlier, already published post; listed at the end of ``listed_in``."""
        self.db.executemany(
            "INSERT INTO late_notes VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(arxiv_id, listed_in.isoformat(), _iso(now)) for arxiv_id in ids],
        )

    def adopt_unlisted_late_notes(self, listed_in: date) -> None:
        """Notes meant for an earlier day that never got a post (no papers) move to ``listed_in``."""
        self.db.execute(
            "UPDATE late_notes SET listed_in = ? WHERE listed_in < ? AND listed_in NOT IN (SELECT day FROM posts)",
            (listed_in.isoformat(), listed_in.isoformat()),
        )

    def late_notes(self, listed_in: date) -> list[tuple[date, Paper]]:
        rows = self.db.execute(
            """SELECT pp.day, p.data FROM late_notes l JOIN post_papers pp USING (arxiv_id)
               JOIN papers p USING (arxiv_id) WHERE l.listed_in = ? ORDER BY pp.day, p.published, p.arxiv_id""",
            (listed_in.isoformat(),),
        )
        return [(date.fromisoformat(day), paper_from_json(data)) for day, data in rows]

    def pending_days(self) -> list[date]:
        rows = self.db.execute(
            f"SELECT DISTINCT day FROM post_papers WHERE pending = 1 AND {NOT_GIVEN_UP} ORDER BY day"
        )
        return [date.fromisoformat(day) for (day,) in rows]

    # LLM texts and full texts ----------------------------------------------------------------
    def text(self, cache_key: str) -> str | None:
        row = self.db.execute("SELECT text FROM texts WHERE cache_key = ?", (cache_key,)).fetchone()
        return row[0] if row else None

    def latest_text(self, arxiv_id: str, kind: str) -> str | None:
        """The newest valid text of any key: shown while a fresher one is pending, never worse than nothing."""
        row = self.db.execute(
            "SELECT text FROM texts WHERE arxiv_id = ? AND kind = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (arxiv_id, kind),
        ).fetchone()
        return row[0] if row else None

    def save_text(
        self,
        cache_key: str,
        paper_id: str,
        version: int,
        kind: str,
        text: str,
        model: str,
        source: str,
        now: datetime,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO texts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (cache_key, paper_id, version, kind, text, model, source, _iso(now)),
            )

    def fulltext(self, versioned_id: str) -> tuple[str, str] | None:
        row = self.db.execute("SELECT source, text FROM fulltexts WHERE versioned_id = ?", (versioned_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def save_fulltext(self, versioned_id: str, source: str, text: str, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO fulltexts VALUES (?, ?, ?, ?)",
                (versioned_id, source, text, _iso(now)),
            )

    def post_sha(self, day: date) -> str | None:
        row = self.db.execute("SELECT sha256 FROM posts WHERE day = ?", (day.isoformat(),)).fetchone()
        return row[0] if row else None

    # the LLM pending queue ------------------------------------------------------------------
    def record_llm_failures(self, errors: dict[str, str], give_up_after: int, now: datetime) -> list[str]:
        """Count one more failed run for each paper in ``errors`` (id -> why); return the ids given
        up by this run (``give_up_after`` runs; 0 = never)."""
        newly: list[str] = []
        with self.transaction() as db:
            for arxiv_id, error in errors.items():
                row = db.execute("SELECT runs, given_up FROM llm_failures WHERE arxiv_id = ?", (arxiv_id,)).fetchone()
                runs = (row[0] if row else 0) + 1
                give_up = bool(give_up_after) and runs >= give_up_after
                if give_up and not (row and row[1]):
                    newly.append(arxiv_id)
                db.execute(
                    "INSERT OR REPLACE INTO llm_failures VALUES (?, ?, ?, ?, ?)",
                    (arxiv_id, runs, int(give_up or bool(row and row[1])), error[:500], _iso(now)),
                )
        return newly

    def clear_llm_failures(self, ids: Iterable[str]) -> None:
        """Papers whose texts are complete leave the queue."""
        with self.transaction() as db:
            db.executemany("DELETE FROM llm_failures WHERE arxiv_id = ?", [(i,) for i in ids])

    def given_up(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT arxiv_id FROM llm_failures WHERE given_up = 1 AND arxiv_id IN ({marks})", chunk
            )
            found.update(arxiv_id for (arxiv_id,) in rows)
        return found
