"""The database behind keys, teams and spend: SQLite (embedded, one process) or
PostgreSQL (many workers and replicas), one schema, migrated at connect.

Statements are written once, portable, with `:name` parameters; for PostgreSQL they are
rewritten to psycopg's `%(name)s`. Calls are synchronous and bounded (connect and
statement timeouts); callers on the event loop run them on a thread. Each thread keeps its
own connection. Any failure to reach the database is DatabaseUnavailable."""

from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

# Ordered: each entry moves the schema one version up; never edit a released one.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE teams (
            team_id TEXT PRIMARY KEY, team_alias TEXT, models TEXT NOT NULL DEFAULT '[]',
            max_budget DOUBLE PRECISION, budget_duration TEXT, budget_reset_at DOUBLE PRECISION,
            spend DOUBLE PRECISION NOT NULL DEFAULT 0, rpm_limit BIGINT, tpm_limit BIGINT,
            metadata TEXT NOT NULL DEFAULT '{}', blocked INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE keys (
            token_hash TEXT PRIMARY KEY, key_name TEXT NOT NULL, key_alias TEXT, user_id TEXT, team_id TEXT,
            models TEXT NOT NULL DEFAULT '[]', routes TEXT NOT NULL DEFAULT '[]',
            max_budget DOUBLE PRECISION, budget_duration TEXT, budget_reset_at DOUBLE PRECISION,
            spend DOUBLE PRECISION NOT NULL DEFAULT 0, rpm_limit BIGINT, tpm_limit BIGINT,
            expires_at DOUBLE PRECISION, metadata TEXT NOT NULL DEFAULT '{}', blocked INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX keys_team ON keys (team_id)",
        "CREATE UNIQUE INDEX keys_alias ON keys (key_alias)",
        """CREATE TABLE spend_logs (
            request_id TEXT PRIMARY KEY, token_hash TEXT NOT NULL, key_alias TEXT, team_id TEXT NOT NULL, user_id TEXT,
            model_group TEXT NOT NULL, deployment TEXT NOT NULL, prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL,
            cost DOUBLE PRECISION NOT NULL, at DOUBLE PRECISION NOT NULL, day TEXT NOT NULL)""",
        "CREATE INDEX spend_logs_key ON spend_logs (token_hash, at)",
        "CREATE INDEX spend_logs_team ON spend_logs (team_id, at)",
        """CREATE TABLE daily_spend (
            day TEXT NOT NULL, token_hash TEXT NOT NULL, team_id TEXT NOT NULL, model_group TEXT NOT NULL,
            requests BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL,
            cost DOUBLE PRECISION NOT NULL, PRIMARY KEY (day, token_hash, team_id, model_group))""",
    ],
    [
        # A rotated key's successor: charges still in flight for the old key reach the new one.
        "CREATE TABLE IF NOT EXISTS rotated_keys (old_hash TEXT PRIMARY KEY, new_hash TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)",
        # Charges applied to a row: a reader knows which of a node's charges its read saw.
        "ALTER TABLE keys ADD COLUMN charges BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE teams ADD COLUMN charges BIGINT NOT NULL DEFAULT 0",
    ],
]


class DatabaseUnavailable(Exception):
    """The database could not be reached or refused a statement."""


_PARAM = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")


class Database:
    """`url`: `sqlite:///path/to/file.db` (relative to `base`) or `postgresql://user@host:port/db`."""

    def __init__(self, url: str, base: Path | None = None, timeout_s: float = 2.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.kind = "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        if self.kind == "sqlite":
            if not url.startswith("sqlite:///"):
                raise ValueError(f"database url {url!r}: use sqlite:///FILE or postgresql://...")
            path = Path(url[len("sqlite:///") :])
            self.path: Path | None = path if path.is_absolute() or base is None else base / path
        else:
            self.path = None
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------ connections
    def _connect(self) -> Any:
        try:
            if self.kind == "sqlite":
                assert self.path is not None
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the writer
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.row_factory = sqlite3.Row
                return conn
            import psycopg
            from psycopg.rows import dict_row

            timeout_ms = int(self.timeout_s * 1000)
            return psycopg.connect(self.url, connect_timeout=max(1, int(self.timeout_s + 0.999)), autocommit=True, row_factory=dict_row, options=f"-c statement_timeout={timeout_ms}")
        except Exception as exc:
            raise DatabaseUnavailable(f"{self.kind} {self._where()}: {exc}") from None

    def _where(self) -> str:
        if self.kind == "sqlite":
            return str(self.path)
        return re.sub(r"//[^@/]*@", "//***@", self.url)  # no password in messages

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _sql(self, sql: str) -> str:
        return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%")) if self.kind == "postgresql" else sql

    def _errors(self) -> tuple[type[BaseException], ...]:
        if self.kind == "sqlite":
            return (sqlite3.Error,)
        import psycopg

        return (psycopg.Error,)

    # -------------------------------------------------------------- statements
    @contextmanager
    def transaction(self) -> Iterator["Transaction"]:
        """One transaction on this thread's connection (SQLite: BEGIN IMMEDIATE, so two
        writers never interleave a read-modify-write)."""
        conn = self._conn()
        errors = self._errors()
        try:
            if self.kind == "sqlite":
                conn.execute("BEGIN IMMEDIATE")
                tx = Transaction(self, conn)
                try:
                    yield tx
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            else:
                with conn.transaction():
                    yield Transaction(self, conn)
        except errors as exc:
            self._drop()  # a broken connection is not reused
            raise DatabaseUnavailable(f"{self.kind} {self._where()}: {exc}") from None

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.transaction() as tx:
            return tx.query(sql, params)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        with self.transaction() as tx:
            return tx.execute(sql, params)

    # -------------------------------------------------------------- migrations
    def migrate(self) -> int:
        """Bring the schema to the newest version; returns it. Safe to run from several
        processes at once (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE)."""
        with self.transaction() as tx:
            if self.kind == "postgresql":  # every worker of every replica migrates at start: one at a time
                tx.query("SELECT pg_advisory_xact_lock(7265746) AS locked")
            tx.execute("CREATE TABLE IF NOT EXISTS routeiq_schema (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)")
            rows = tx.query("SELECT version FROM routeiq_schema WHERE id = 1")
            version = int(rows[0]["version"]) if rows else 0
            if version > len(MIGRATIONS):
                raise DatabaseUnavailable(f"{self._where()}: schema version {version} is newer than this RouteIQ knows ({len(MIGRATIONS)}); upgrade RouteIQ")
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    tx.execute(statement)
            if not rows:
                tx.execute("INSERT INTO routeiq_schema (id, version) VALUES (1, :v)", {"v": len(MIGRATIONS)})
            elif version < len(MIGRATIONS):
                tx.execute("UPDATE routeiq_schema SET version = :v WHERE id = 1", {"v": len(MIGRATIONS)})
        return len(MIGRATIONS)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except Exception:
                    pass
            self._connections.clear()
        self._local = threading.local()


class Transaction:
    def __init__(self, db: Database, conn: Any) -> None:
        self._db = db
        self._conn = conn

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        cur = self._conn.execute(self._db._sql(sql), dict(params or {}))
        return [dict(row) for row in cur.fetchall()]

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        cur = self._conn.execute(self._db._sql(sql), dict(params or {}))
        return int(cur.rowcount or 0)

    def execute_many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if self._db.kind == "sqlite":
            self._conn.executemany(sql, [dict(r) for r in rows])
        else:
            with self._conn.cursor() as cur:
                cur.executemany(self._db._sql(sql), [dict(r) for r in rows])


__all__ = ["Database", "DatabaseUnavailable", "MIGRATIONS", "Transaction"]
