"""The durable webhook outbox: one SQLite file (WAL) of rows waiting for delivery, and a
`dead` table for rows that ran out of attempts.

Nothing here runs SQL on the event loop's thread except the counts in `pending` and
`dead_counts` (reads, on a second connection, which WAL never blocks behind a writer).
Every write goes to one writer thread: `append` only queues the rows (the thread writes
whatever has queued up in one transaction), and the delivery lanes `await` their reads
and updates through the same thread, after every append queued before them. A file
locked by another process therefore delays the writes, never a request; appended rows
are kept and retried until the file can be written, and `close` flushes them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

try:  # one delivering dispatcher per outbox file (POSIX advisory lock)
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("routeiq.webhooks")

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    created    REAL    NOT NULL,
    body       BLOB    NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    REAL    NOT NULL,
    last_error TEXT    NOT NULL DEFAULT '',
    UNIQUE (event_id, target)
);
CREATE INDEX IF NOT EXISTS outbox_target_seq ON outbox (target, seq);
CREATE TABLE IF NOT EXISTS dead (
    seq        INTEGER PRIMARY KEY,
    event_id   TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    created    REAL    NOT NULL,
    body       BLOB    NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT    NOT NULL,
    died_at    REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_target ON dead (target);
"""

_INSERT = "INSERT INTO outbox (event_id, target, type, created, body, next_at) VALUES (?, ?, ?, ?, ?, ?)"
_RETRY_S = 0.2  # between tries of a batch the file would not take (locked, disk full)


@dataclass(frozen=True)
class NewRow:
    event_id: str
    target: str
    type: str
    created: float
    body: bytes


@dataclass(frozen=True)
class Row:
    seq: int
    event_id: str
    type: str
    body: bytes
    attempts: int
    next_at: float


class _Close:
    pass


class Outbox:
    """One outbox file, its writer thread and its delivery lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _connect(self.path)  # the writer thread's, once it runs
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
        self._db.executescript(_SCHEMA)
        self._reader = _connect(self.path)
        self._reader_lock = threading.Lock()
        # Rows appended but not yet committed, per target; changed together with a commit
        # under this lock so that `pending` never counts a row twice or not at all.
        self._queued: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self.write_errors = 0  # rows dropped because the file refused them for good
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._lockfile: Any = None
        self._thread = threading.Thread(target=self._write_loop, name=f"webhook-outbox:{self.path.name}", daemon=True)
        self._thread.start()

    # -- from any thread -----------------------------------------------------------------

    def append(self, rows: Sequence[NewRow]) -> None:
        """Queue rows for the writer thread; returns at once."""
        if self._closing.is_set():
            raise RuntimeError(f"outbox {self.path} is closed")
        with self._count_lock:
            self._queued.update(r.target for r in rows)
        self._jobs.put(list(rows))

    def submit(self, job: Callable[[sqlite3.Connection], T]) -> "concurrent.futures.Future[T]":
        """Run `job(db)` on the writer thread, after every row appended before it."""
        if self._closing.is_set():
            raise RuntimeError(f"outbox {self.path} is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((job, future))
        return future

    async def run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self.submit(job))

    def pending(self) -> dict[str, tuple[int, float | None]]:
        """Per target: rows waiting (committed or still queued) and the oldest's creation
        time (of the committed ones)."""
        with self._count_lock, self._reader_lock:
            found = {t: (n, oldest) for t, n, oldest in self._reader.execute("SELECT target, COUNT(*), MIN(created) FROM outbox GROUP BY target")}
            for target, n in self._queued.items():
                if n:
                    count, oldest = found.get(target, (0, None))
                    found[target] = (count + n, oldest)
        return found

    def dead_counts(self) -> dict[str, int]:
        with self._reader_lock:
            return dict(self._reader.execute("SELECT target, COUNT(*) FROM dead GROUP BY target").fetchall())

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, then close the file (the lock too)."""
        self.release()
        if not self._closing.is_set():
            self._closing.set()
            self._jobs.put(_Close())
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("webhook outbox %s: writer thread did not finish within %g s", self.path, timeout_s)
        with self._reader_lock:
            self._reader.close()

    # -- the delivery lock ---------------------------------------------------------------

    def claim(self) -> None:
        """Take `<outbox>.lock`: one delivering dispatcher per file."""
        if fcntl is None or self._lockfile is not None:
            return
        handle = open(self.path.with_name(self.path.name + ".lock"), "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RuntimeError(f"another webhook dispatcher is delivering from {self.path}") from None
        self._lockfile = handle

    def release(self) -> None:
        if self._lockfile is not None:
            self._lockfile.close()  # closing drops the flock
            self._lockfile = None

    # -- the writer thread ---------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            while True:
                job = self._jobs.get()
                batch: list[NewRow] = []
                while isinstance(job, list):  # coalesce the appends queued up meanwhile
                    batch.extend(job)
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        job = None
                if batch:
                    self._write(batch)
                if isinstance(job, _Close):
                    return
                if job is not None:
                    self._call(*job)
        finally:
            self._db.close()

    def _write(self, batch: list[NewRow]) -> None:
        while True:
            try:
                self._db.execute("BEGIN IMMEDIATE")  # waits out busy_timeout if the file is locked
                try:
                    self._db.executemany(_INSERT, [(r.event_id, r.target, r.type, r.created, r.body, r.created) for r in batch])
                    with self._count_lock:
                        self._db.execute("COMMIT")
                        self._queued.subtract(r.target for r in batch)
                    return
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:  # locked or busy, disk full, I/O: try again
                if self._closing.is_set():
                    self._drop(batch, exc)
                    return
                log.warning("webhook outbox %s: %d row(s) not written yet (%s); retrying", self.path, len(batch), exc)
                time.sleep(_RETRY_S)
            except Exception as exc:
                self._drop(batch, exc)
                return

    def _drop(self, batch: list[NewRow], exc: Exception) -> None:
        with self._count_lock:
            self._queued.subtract(r.target for r in batch)
        self.write_errors += len(batch)
        log.error("webhook outbox %s: %d event row(s) lost: %s", self.path, len(batch), exc)

    def _call(self, job: Callable[[sqlite3.Connection], Any], future: concurrent.futures.Future[Any]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(job(self._db))
        except BaseException as exc:
            future.set_exception(exc)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout=5000")
    return db


# -- the jobs the delivery lanes run on the writer thread ------------------------------------


def head(db: sqlite3.Connection, target: str) -> Row | None:
    found = db.execute("SELECT seq, event_id, type, body, attempts, next_at FROM outbox WHERE target = ? ORDER BY seq LIMIT 1", (target,)).fetchone()
    return None if found is None else Row(found[0], found[1], found[2], bytes(found[3]), found[4], found[5])


def delete(db: sqlite3.Connection, seq: int) -> None:
    db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))


def retry_later(db: sqlite3.Connection, seq: int, attempts: int, next_at: float, error: str) -> None:
    db.execute("UPDATE outbox SET attempts = ?, next_at = ?, last_error = ? WHERE seq = ?", (attempts, next_at, error, seq))


def bury(db: sqlite3.Connection, seq: int, attempts: int, error: str, now: float) -> None:
    """Move a row that ran out of attempts to `dead`."""
    with _transaction(db):
        db.execute(
            "INSERT OR REPLACE INTO dead (seq, event_id, target, type, created, body, attempts, last_error, died_at)"
            " SELECT seq, event_id, target, type, created, body, ?, ?, ? FROM outbox WHERE seq = ?",
            (attempts, error, now, seq),
        )
        db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))


def requeue_dead(db: sqlite3.Connection, target: str | None, now: float) -> int:
    """Dead rows (of one target, or all) back to the end of the outbox, attempts reset."""
    where, args = ("WHERE target = ?", (target,)) if target is not None else ("", ())
    with _transaction(db):
        moved = db.execute(
            f"INSERT OR IGNORE INTO outbox (event_id, target, type, created, body, attempts, next_at, last_error)"
            f" SELECT event_id, target, type, created, body, 0, ?, last_error FROM dead {where} ORDER BY seq",
            (now, *args),
        ).rowcount
        db.execute(f"DELETE FROM dead {where}", args)
    return moved


class _transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
