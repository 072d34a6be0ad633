"""SQLite index over the run folders. The folders are the truth; this can always be rebuilt from them."""

import sqlite3
from pathlib import Path

from workbench.store.files import strict_json

# Named, ordered migrations. Never edit one that has shipped: append a new one.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_runs_and_metrics",
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            checkpoint_name TEXT,
            checkpoint_sha TEXT,
            checkpoint_kind TEXT,
            checkpoint_format TEXT,
            base TEXT,
            suite TEXT,
            manifest TEXT NOT NULL
        );
        CREATE INDEX runs_created ON runs(created_at);
        CREATE TABLE metrics (
            run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
            task TEXT NOT NULL,
            metric TEXT NOT NULL,
            value REAL,
            stderr REAL,
            n INTEGER,
            higher_is_better INTEGER,
            PRIMARY KEY (run_id, task, metric)
        );
        """,
    ),
]


def is_damaged(exc: sqlite3.DatabaseError) -> bool:
    """SQLite's word for a file that is not a database or is cut short: the index to rebuild, unlike a busy one."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT DEFAULT CURRENT_TIMESTAMP)")
    done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        with conn:  # one transaction per migration; a concurrent migrator loses the race harmlessly
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("SELECT 1 FROM migrations WHERE name=?", (name,)).fetchone():
                continue
            for statement in filter(str.strip, sql.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO migrations(name) VALUES (?)", (name,))


def upsert_run(conn: sqlite3.Connection, manifest: dict, metrics: list[dict]) -> None:
    ckpt = manifest.get("checkpoint") or {}
    with conn:
        conn.execute("DELETE FROM metrics WHERE run_id=?", (manifest["run_id"],))
        conn.execute(
            """INSERT OR REPLACE INTO runs(run_id, kind, status, created_at, finished_at, checkpoint_name,
               checkpoint_sha, checkpoint_kind, checkpoint_format, base, suite, manifest)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?)""",
            (
                manifest["run_id"], manifest["kind"], manifest["status"], manifest["created_at"],
                manifest.get("finished_at"), ckpt.get("name"), ckpt.get("sha"), ckpt.get("kind"),
                ckpt.get("format"), ckpt.get("base"), manifest.get("suite"), strict_json(manifest),
            ),
        )
        conn.executemany(
            "INSERT OR REPLACE INTO metrics(run_id, task, metric, value, stderr, n, higher_is_better) VALUES (?,?,?,?,?,?,?)",
            [
                (manifest["run_id"], m["task"], m["metric"], m.get("value"), m.get("stderr"), m.get("n"),
                 None if m.get("higher_is_better") is None else int(bool(m["higher_is_better"])))
                for m in metrics
            ],
        )
