"""The SQLite catalog of one photo library: folders, photos, and binary codes per model.

Tables (schema version in ``PRAGMA user_version``, upgraded by ``MIGRATIONS`` in order):
- roots: the folders the user added;
- photos: path, root, size, mtime (ns), content key, status ('ok' or 'failed') and the error;
- models: the models whose codes are stored (id derived from the weights, method, bits);
- codes: one packed code per (photo, model), so switching back to a model is instant;
- features (schema 2): one float16 little-endian feature vector per (photo, model), only for
  models whose method re-ranks by an exact distance (``rerank_features``); written in the same
  transaction as the code, so a photo has both or neither. float16 halves the storage of
  float32 (1 KiB a photo for DSSA's 512-d feature) and its rounding (relative 5e-4) is far below
  the gaps between the distances it ranks.

WAL journaling lets a searcher read while the indexer writes. Each thread gets its own
connection. Writes go through ``transaction()``, one per indexing batch, so a crash or cancel
loses at most the batch in flight.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import CatalogError

log = logging.getLogger(__name__)

MIGRATIONS: tuple[str, ...] = (
    # version 1
    """
    CREATE TABLE roots (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        added_at REAL NOT NULL
    );
    CREATE TABLE photos (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        root_id INTEGER NOT NULL REFERENCES roots(id) ON DELETE CASCADE,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        content_key TEXT,
        status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
        error TEXT,
        updated_at REAL NOT NULL
    );
    CREATE INDEX photos_root ON photos(root_id);
    CREATE INDEX photos_content_key ON photos(content_key);
    CREATE TABLE models (
        id TEXT PRIMARY KEY,
        method TEXT NOT NULL,
        bits INTEGER NOT NULL,
        added_at REAL NOT NULL
    );
    CREATE TABLE codes (
        photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        code BLOB NOT NULL,
        PRIMARY KEY (photo_id, model_id)
    ) WITHOUT ROWID;
    CREATE INDEX codes_model ON codes(model_id);
    """,
    # version 2: real-valued photo features for exact re-ranking (methods with rerank_features)
    """
    CREATE TABLE features (
        photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        feature BLOB NOT NULL,
        PRIMARY KEY (photo_id, model_id)
    ) WITHOUT ROWID;
    CREATE INDEX features_model ON features(model_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class PhotoRow:
    id: int
    path: str
    root_id: int
    size: int
    mtime_ns: int
    content_key: str | None
    status: str
    error: str | None


@dataclass(frozen=True)
class Failure:
    path: Path
    error: str


_PHOTO_COLUMNS = "id, path, root_id, size, mtime_ns, content_key, status, error"


class Catalog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(
                f"Cannot create the library folder {self.path.parent}: {exc}"
            ) from exc
        self._migrate()

    # ---------------------------------------------------------------- connections
    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise CatalogError(
                f"The catalog {self.path} cannot be opened ({exc}). If it is corrupt, move it "
                "away and index the folders again."
            ) from exc
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any error."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _query(self, sql: str, params: Iterable = ()) -> list[tuple]:
        return self._connect().execute(sql, tuple(params)).fetchall()

    def _migrate(self) -> None:
        try:
            conn = self._connect()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise CatalogError(
                f"{self.path} is not a SketchSearch catalog ({exc}). Move it away and re-index."
            ) from exc
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"The catalog {self.path} has schema version {version}, newer than this version "
                f"of SketchSearch understands ({SCHEMA_VERSION}). Update SketchSearch."
            )
        for target in range(version, SCHEMA_VERSION):
            log.info("Upgrading catalog %s to schema %d", self.path, target + 1)
            with self.transaction() as tx:
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        tx.execute(statement)
                tx.execute(f"PRAGMA user_version = {target + 1}")

    @property
    def schema_version(self) -> int:
        return int(self._query("PRAGMA user_version")[0][0])

    # ---------------------------------------------------------------- roots
    def roots(self) -> list[tuple[int, Path]]:
        return [
            (rid, Path(p)) for rid, p in self._query("SELECT id, path FROM roots ORDER BY path")
        ]

    def add_root(self, path: Path) -> int:
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO roots(path, added_at) VALUES (?, ?)",
                (str(path), time.time()),
            )
            return int(
                tx.execute("SELECT id FROM roots WHERE path = ?", (str(path),)).fetchone()[0]
            )

    def remove_root(self, path: Path) -> int:
        """Forget a folder and its photos (and their codes); returns the photos removed."""
        with self.transaction() as tx:
            row = tx.execute("SELECT id FROM roots WHERE path = ?", (str(path),)).fetchone()
            if row is None:
                return 0
            count = tx.execute("SELECT COUNT(*) FROM photos WHERE root_id = ?", row).fetchone()[0]
            tx.execute("DELETE FROM roots WHERE id = ?", row)
            return int(count)

    # ---------------------------------------------------------------- photos
    def photos_under(self, root_id: int) -> dict[str, PhotoRow]:
        rows = self._query(f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE root_id = ?", (root_id,))
        return {r[1]: PhotoRow(*r) for r in rows}

    def photo_count(self, status: str | None = "ok") -> int:
        if status is None:
            return int(self._query("SELECT COUNT(*) FROM photos")[0][0])
        return int(self._query("SELECT COUNT(*) FROM photos WHERE status = ?", (status,))[0][0])

    def failures(self) -> list[Failure]:
        rows = self._query("SELECT path, error FROM photos WHERE status = 'failed' ORDER BY path")
        return [Failure(Path(p), e or "unknown error") for p, e in rows]

    def paths_for(self, ids: Iterable[int]) -> dict[int, Path]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._query(f"SELECT id, path FROM photos WHERE id IN ({marks})", ids)
        return {i: Path(p) for i, p in rows}

    @staticmethod
    def upsert_photo(
        tx: sqlite3.Connection,
        path: str,
        root_id: int,
        size: int,
        mtime_ns: int,
        content_key: str | None,
        status: str = "ok",
        error: str | None = None,
    ) -> int:
        """Insert or update a photo row by path; returns its id (stable across updates)."""
        tx.execute(
            "INSERT INTO photos(path, root_id, size, mtime_ns, content_key, status, error, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
            "root_id = excluded.root_id, size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "content_key = excluded.content_key, status = excluded.status, "
            "error = excluded.error, updated_at = excluded.updated_at",
            (path, root_id, size, mtime_ns, content_key, status, error, time.time()),
        )
        return int(tx.execute("SELECT id FROM photos WHERE path = ?", (path,)).fetchone()[0])

    @staticmethod
    def move_photo(
        tx: sqlite3.Connection, photo_id: int, path: str, root_id: int, size: int, mtime_ns: int
    ) -> None:
        tx.execute(
            "UPDATE photos SET path = ?, root_id = ?, size = ?, mtime_ns = ?, updated_at = ? "
            "WHERE id = ?",
            (path, root_id, size, mtime_ns, time.time(), photo_id),
        )

    @staticmethod
    def delete_photos(tx: sqlite3.Connection, ids: Iterable[int]) -> None:
        tx.executemany("DELETE FROM photos WHERE id = ?", [(int(i),) for i in ids])

    @staticmethod
    def drop_codes(tx: sqlite3.Connection, photo_id: int) -> None:
        """Forget every model's codes (and features) of a photo whose content changed."""
        tx.execute("DELETE FROM codes WHERE photo_id = ?", (photo_id,))
        tx.execute("DELETE FROM features WHERE photo_id = ?", (photo_id,))

    # ---------------------------------------------------------------- models and codes
    def register_model(self, model_id: str, method: str, bits: int) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO models(id, method, bits, added_at) VALUES (?,?,?,?)",
                (model_id, method, bits, time.time()),
            )

    def model_bits(self, model_id: str) -> int | None:
        rows = self._query("SELECT bits FROM models WHERE id = ?", (model_id,))
        return int(rows[0][0]) if rows else None

    @staticmethod
    def put_codes(
        tx: sqlite3.Connection, model_id: str, ids: Iterable[int], codes: np.ndarray
    ) -> None:
        tx.executemany(
            "INSERT OR REPLACE INTO codes(photo_id, model_id, code) VALUES (?, ?, ?)",
            [(int(i), model_id, bytes(c)) for i, c in zip(ids, codes, strict=True)],
        )

    def coded_ids(self, model_id: str) -> set[int]:
        rows = self._query("SELECT photo_id FROM codes WHERE model_id = ?", (model_id,))
        return {r[0] for r in rows}

    def codes_for(self, model_id: str, bits: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (n,), codes uint8 (n, bits/8)) of every photo with a code for the model."""
        stored = self.model_bits(model_id)
        if stored is not None and stored != bits:
            raise CatalogError(f"Model {model_id} has {stored}-bit codes here, not {bits}-bit.")
        rows = self._query(
            "SELECT c.photo_id, c.code FROM codes c JOIN photos p ON p.id = c.photo_id "
            "WHERE c.model_id = ? AND p.status = 'ok'",
            (model_id,),
        )
        nbytes = bits // 8
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        blob = b"".join(r[1] for r in rows)
        codes = np.frombuffer(blob, dtype=np.uint8).reshape(len(rows), nbytes)
        return ids, codes.copy()

    # ---------------------------------------------------------------- features (re-ranking)
    @staticmethod
    def put_features(
        tx: sqlite3.Connection, model_id: str, ids: Iterable[int], features: np.ndarray
    ) -> None:
        """Store (n, D) features of photos as float16, in the caller's transaction."""
        half = np.asarray(features, dtype="<f2")
        if half.ndim != 2:
            raise CatalogError(f"Features must be a 2-D array, got shape {half.shape}.")
        tx.executemany(
            "INSERT OR REPLACE INTO features(photo_id, model_id, feature) VALUES (?, ?, ?)",
            [(int(i), model_id, f.tobytes()) for i, f in zip(ids, half, strict=True)],
        )

    def featured_ids(self, model_id: str) -> set[int]:
        rows = self._query("SELECT photo_id FROM features WHERE model_id = ?", (model_id,))
        return {r[0] for r in rows}

    def features_for(self, model_id: str, ids: Iterable[int]) -> dict[int, np.ndarray]:
        """float16 (D,) feature per photo id that has one for the model (missing ids left out)."""
        ids = [int(i) for i in ids]
        out: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._query(
                f"SELECT photo_id, feature FROM features WHERE model_id = ? "
                f"AND photo_id IN ({marks})",
                [model_id, *part],
            )
            out.update({int(i): np.frombuffer(blob, dtype="<f2") for i, blob in rows})
        return out
