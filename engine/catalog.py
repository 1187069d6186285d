"""The SQLite catalog of one photo library: folders, photos, and binary codes per model.

Tables (schema version in ``PRAGMA user_version``, upgraded by ``MIGRATIONS`` in order):
- roots: the folders the user added;
- photos: path, root, size, mtime (ns), content key, status ('ok' or 'failed') and the error;
- models: the models whose codes are stored (id derived from the weights, method, bits);
- codes: one packed code per (photo, model), so switching back to a model is instant;
- features (schema 2): one float16 little-endian feature vector per (photo, model), for models
  whose method re-ranks by an exact distance (``rerank_features``) and, for a category-level
  model with fitted codes, its unbinarised output (``photo_values``, ``engine.asymmetric``);
  written in the same
  transaction as the code, so a photo has both or neither. float16 halves the storage of
  float32 (1 KiB a photo for DSSA's 512-d feature) and its rounding (relative 5e-4) is far below
  the gaps between the distances it ranks.
- skipped (schema 4): paths under a root that the indexer could not use (an unreadable folder,
  a dangling link, a link loop, a path too long), with the reason; replaced for a root each time
  it is walked, so they are listed with the unreadable photos (``failures``);
- encode_failures (schema 4): photos a model could not encode, per (photo, model), with the
  reason; the photo stays 'ok' for the other models. Also listed by ``failures``.

Paths (schema 3): ``roots.path`` and ``photos.path`` hold the file system's own bytes of the path
(``os.fsencode``) as a BLOB, so any name the file system allows is stored and found again, also
one that is not valid UTF-8 (``b"caf\xe9.jpg"`` from a Latin-1 camera or an old archive); the
declared column type stays TEXT, which SQLite does not enforce. In Python a path is the ``str``
that ``os`` functions give and take (undecodable bytes as surrogate escapes, ``os.fsdecode``);
show it with ``engine.paths.display_path``. Schema 3 converts the UTF-8 text of older catalogs
to the same bytes. Error texts are stored as printable text (``display_text``).

WAL journaling lets a searcher read while the indexer writes. Each thread gets its own
connection. Writes go through ``transaction()``, one per indexing batch, so a crash or cancel
loses at most the batch in flight. A schema upgrade reads the version again inside its
``BEGIN IMMEDIATE`` transaction, so two processes opening a new catalog at once cannot both
create its tables.

A catalog whose file or folder cannot be written (a read-only mount, a shared archive) is opened
read-only (SQLite ``mode=ro``, or ``immutable=1`` where the folder cannot hold the WAL's shared
memory file): it can be searched; writing raises ``LibraryReadOnlyError``. SQLite and OS errors
become named errors that say what to do (``storage_error``): a full disk ``DiskFullError``, a
damaged file ``CatalogError`` with the advice to move it away, never for a read-only one.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import (
    CatalogError,
    DiskFullError,
    LibraryError,
    LibraryReadOnlyError,
    SketchSearchError,
)
from engine.paths import display_path, display_text

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
    # version 3: paths as the file system's bytes (BLOB); older catalogs hold UTF-8 text
    """
    UPDATE roots SET path = CAST(path AS BLOB) WHERE typeof(path) = 'text';
    UPDATE photos SET path = CAST(path AS BLOB) WHERE typeof(path) = 'text';
    """,
    # version 4: paths the indexer skipped, and photos a model could not encode, with reasons
    """
    CREATE TABLE skipped (
        path BLOB PRIMARY KEY,
        root_id INTEGER NOT NULL REFERENCES roots(id) ON DELETE CASCADE,
        error TEXT NOT NULL
    );
    CREATE INDEX skipped_root ON skipped(root_id);
    CREATE TABLE encode_failures (
        photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        error TEXT NOT NULL,
        PRIMARY KEY (photo_id, model_id)
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
BUSY_TIMEOUT_S = 30.0
# why a read-only connection in mode=ro fails where the WAL index (-shm) cannot be made
_NO_WAL_INDEX = (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN)


def encode_path(path: str | os.PathLike) -> bytes:
    """The bytes a path is stored as: the file system's own, whatever their encoding."""
    return os.fsencode(path)


def decode_path(value: bytes | str) -> str:
    """A stored path as the ``str`` that ``os`` functions take (bytes that are not valid UTF-8
    become surrogate escapes, and ``os.fsencode`` gives them back exactly)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def storage_error(exc: OSError, doing: str, where: str | os.PathLike) -> SketchSearchError:
    """The named error for an OS error while writing the library's files."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            f"The disk that holds {display_path(where)} is full, so {doing} failed. Free some "
            "disk space and try again; everything saved before is kept."
        )
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return LibraryReadOnlyError(
            f"{display_path(where)} cannot be written ({exc.strerror}), so {doing} failed; "
            "nothing was changed. Make it writable (check its permissions, or mount its disk "
            "read-write) or use another place. A library there can still be searched."
        )
    reason = display_text(exc.strerror or str(exc))
    return LibraryError(f"{doing[:1].upper()}{doing[1:]} failed at {display_path(where)}: {reason}")


@dataclass(frozen=True)
class PhotoRow:
    """One photo as the catalog records it: its path, its root folder's id, file size, mtime and
    content key (to skip unchanged files), and ``status`` "ok" or "failed" with the ``error``."""

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
    """A file the library could not use, with the reason."""

    path: Path
    error: str


_PHOTO_COLUMNS = "id, path, root_id, size, mtime_ns, content_key, status, error"


def _cannot_write(path: Path) -> bool:
    """An existing catalog that this process may not write: the file or its folder (which
    holds the WAL files) is read-only, by permission or by a read-only mount."""
    return path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the file: on a brand-new
    database SQLite can answer SQLITE_BUSY at once, without calling the busy handler, while a
    second connection switches it too; measured under load, one of five processes opening a
    new catalog at once then failed."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = (exc.sqlite_errorcode & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


class Catalog:
    """``read_only``: None opens read-only only when the catalog cannot be written."""

    def __init__(self, path: str | Path, *, read_only: bool | None = None) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.read_only = _cannot_write(self.path) if read_only is None else read_only
        self._uri: str | None = None  # how read-only connections open (decided by the first)
        if self.read_only:
            log.info("Opening the catalog %s read-only", display_path(self.path))
            if not self.path.is_file():
                raise CatalogError(f"There is no library catalog at {display_path(self.path)}.")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise storage_error(exc, "creating the library folder", self.path.parent) from exc
        self._migrate()

    # ---------------------------------------------------------------- connections
    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = self._open_read_only() if self.read_only else self._open()
        except sqlite3.Error as exc:
            raise self._error(exc, "opening it") from exc
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            _switch_to_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """``mode=ro``; where the folder cannot hold the WAL index (no -shm file and a read-only
        folder), ``immutable=1``, which reads the main file only: after a clean close it holds
        everything."""
        base = self.path.absolute().as_uri()
        uris = [self._uri] if self._uri else [f"{base}?mode=ro", f"{base}?immutable=1"]
        for i, uri in enumerate(uris):
            conn = sqlite3.connect(
                uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute("PRAGMA user_version").fetchone()
            except sqlite3.OperationalError as exc:
                conn.close()
                if i + 1 == len(uris) or (exc.sqlite_errorcode & 0xFF) not in _NO_WAL_INDEX:
                    raise
                if Path(f"{self.path}-wal").exists():
                    log.warning(
                        "%s-wal exists but cannot be read from a read-only folder; changes not "
                        "checkpointed into the catalog are not seen",
                        display_path(self.path),
                    )
                continue
            self._uri = uri
            return conn
        raise AssertionError("unreachable")

    def _error(self, exc: sqlite3.Error, doing: str) -> SketchSearchError:
        """The named error, with what to do, for an SQLite error while ``doing`` something."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        where = display_path(self.path)
        detail = display_text(str(exc))
        if code == sqlite3.SQLITE_FULL:
            return DiskFullError(
                f"The disk that holds the library catalog {where} is full ({detail}), so "
                f"{doing} failed. Free some disk space and try again; everything saved before "
                "is kept."
            )
        if code == sqlite3.SQLITE_CANTOPEN and not (
            self.path.exists() or os.access(self.path.parent, os.W_OK)
        ):
            return LibraryReadOnlyError(
                f"The library catalog {where} cannot be created ({detail}): its folder cannot "
                "be written. Choose a library folder you can write to."
            )
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM) or (
            code == sqlite3.SQLITE_CANTOPEN and not os.access(self.path.parent, os.W_OK)
        ):
            return LibraryReadOnlyError(
                f"The library catalog {where} cannot be written ({detail}), so {doing} failed. "
                "The library can still be searched; to index it, make the catalog and its "
                "folder writable (or mount the disk read-write)."
            )
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return CatalogError(
                f"The library catalog {where} is damaged or not a SketchSearch catalog "
                f"({detail}). Move it away (keep it until the new one works) and index the "
                "folders again."
            )
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return CatalogError(
                f"The library catalog {where} was locked by another program for more than "
                f"{BUSY_TIMEOUT_S:.0f} s ({detail}), so {doing} failed. Try again when it is done."
            )
        if code in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
            return CatalogError(
                f"The library catalog {where} could not be read or written ({detail}), so "
                f"{doing} failed. Check that its disk is connected and not full, then try "
                "again; everything saved before is kept."
            )
        return CatalogError(f"The library catalog {where}: {doing} failed ({detail}).")

    def close(self) -> None:
        """Close every thread's connection; the catalog is not used afterwards."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def transaction(self, doing: str = "saving the change") -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any error; SQLite's
        errors become named ones (``doing`` says what failed, e.g. "indexing")."""
        if self.read_only:
            raise LibraryReadOnlyError(
                f"The library catalog {display_path(self.path)} is open read-only, so {doing} "
                "is not possible. The library can still be searched; to change it, make the "
                "catalog and its folder writable (or mount the disk read-write)."
            )
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite has already rolled back after e.g. a full disk
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error(exc, doing) from exc

    def _query(self, sql: str, params: Iterable = ()) -> list[tuple]:
        try:
            return self._connect().execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "reading it") from exc

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"The catalog {display_path(self.path)} has schema version {version}, newer "
                f"than this version of SketchSearch understands ({SCHEMA_VERSION}). Update "
                "SketchSearch."
            )

    def _migrate(self) -> None:
        version = int(self._query("PRAGMA user_version")[0][0])
        self._check_version(version)
        if version == SCHEMA_VERSION:
            return
        if self.read_only:
            raise LibraryReadOnlyError(
                f"The library catalog {display_path(self.path)} was written by an older "
                f"SketchSearch (schema {version}) and must be upgraded once, which needs write "
                "access. Make it and its folder writable and open it once, then it can be "
                "read-only again."
            )
        with self.transaction("upgrading the catalog") as tx:
            # read again under the write lock: another process may have upgraded it meanwhile
            version = int(tx.execute("PRAGMA user_version").fetchone()[0])
            self._check_version(version)
            new = version == 0 and not tx.execute("SELECT 1 FROM sqlite_master").fetchone()
            if new:  # every step at once: a new catalog has nothing to upgrade
                log.info("New catalog %s (schema %d)", display_path(self.path), SCHEMA_VERSION)
            for target in range(version, SCHEMA_VERSION):
                if not new:
                    log.info(
                        "Upgrading catalog %s to schema %d", display_path(self.path), target + 1
                    )
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        """The catalog file's schema version (SQLite ``user_version``)."""
        return int(self._query("PRAGMA user_version")[0][0])

    # ---------------------------------------------------------------- roots
    def roots(self) -> list[tuple[int, Path]]:
        """(id, folder) of every photo folder the catalog covers, by path."""
        rows = self._query("SELECT id, path FROM roots ORDER BY path")
        return [(rid, Path(decode_path(p))) for rid, p in rows]

    def add_root(self, path: Path) -> int:
        """Record a photo folder (once); returns its id."""
        key = encode_path(path)
        with self.transaction("adding the folder") as tx:
            tx.execute(
                "INSERT OR IGNORE INTO roots(path, added_at) VALUES (?, ?)", (key, time.time())
            )
            return int(tx.execute("SELECT id FROM roots WHERE path = ?", (key,)).fetchone()[0])

    def remove_root(self, path: Path) -> int:
        """Forget a folder and its photos (and their codes); returns the photos removed."""
        with self.transaction("removing the folder") as tx:
            row = tx.execute("SELECT id FROM roots WHERE path = ?", (encode_path(path),)).fetchone()
            if row is None:
                return 0
            count = tx.execute("SELECT COUNT(*) FROM photos WHERE root_id = ?", row).fetchone()[0]
            tx.execute("DELETE FROM roots WHERE id = ?", row)
            return int(count)

    # ---------------------------------------------------------------- photos
    def photos_under(self, root_id: int) -> dict[str, PhotoRow]:
        """Every photo recorded under the root ``root_id``, by path."""
        rows = self._query(f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE root_id = ?", (root_id,))
        photos = (PhotoRow(r[0], decode_path(r[1]), *r[2:]) for r in rows)
        return {p.path: p for p in photos}

    def root_photo_count(self, path: Path) -> int:
        """The photos recorded under the root folder ``path`` (readable or not)."""
        rows = self._query(
            "SELECT count(*) FROM photos WHERE root_id = (SELECT id FROM roots WHERE path = ?)",
            (encode_path(path),),
        )
        return int(rows[0][0])

    def photo_count(self, status: str | None = "ok") -> int:
        """Photos with ``status`` ("ok": readable, "failed"; None: all)."""
        if status is None:
            return int(self._query("SELECT COUNT(*) FROM photos")[0][0])
        return int(self._query("SELECT COUNT(*) FROM photos WHERE status = ?", (status,))[0][0])

    def failures(self) -> list[Failure]:
        """Unreadable photos, paths the indexer skipped, and photos a model could not encode,
        by path (a path once, the first reason)."""
        rows = self._query(
            "SELECT path, error, 0 FROM photos WHERE status = 'failed' "
            "UNION ALL SELECT path, error, 1 FROM skipped "
            "UNION ALL SELECT p.path, f.error, 2 FROM encode_failures f "
            "JOIN photos p ON p.id = f.photo_id WHERE p.status = 'ok' ORDER BY 1, 3"
        )
        out: dict[str, Failure] = {}
        for p, e, _ in rows:
            path = decode_path(p)
            out.setdefault(path, Failure(Path(path), e or "unknown error"))
        return list(out.values())

    def paths_for(self, ids: Iterable[int]) -> dict[int, Path]:
        """The path of each id still in the catalog (removed ids left out)."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._query(f"SELECT id, path FROM photos WHERE id IN ({marks})", ids)
        return {i: Path(decode_path(p)) for i, p in rows}

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
        key = encode_path(path)
        error = None if error is None else display_text(error)  # may quote an undecodable name
        tx.execute(
            "INSERT INTO photos(path, root_id, size, mtime_ns, content_key, status, error, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
            "root_id = excluded.root_id, size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "content_key = excluded.content_key, status = excluded.status, "
            "error = excluded.error, updated_at = excluded.updated_at",
            (key, root_id, size, mtime_ns, content_key, status, error, time.time()),
        )
        return int(tx.execute("SELECT id FROM photos WHERE path = ?", (key,)).fetchone()[0])

    @staticmethod
    def move_photo(
        tx: sqlite3.Connection, photo_id: int, path: str, root_id: int, size: int, mtime_ns: int
    ) -> None:
        """Record that a photo (same content) is now at ``path``; its codes stay."""
        tx.execute(
            "UPDATE photos SET path = ?, root_id = ?, size = ?, mtime_ns = ?, updated_at = ? "
            "WHERE id = ?",
            (encode_path(path), root_id, size, mtime_ns, time.time(), photo_id),
        )

    @staticmethod
    def delete_photos(tx: sqlite3.Connection, ids: Iterable[int]) -> None:
        """Forget photos (their codes and features go with them)."""
        tx.executemany("DELETE FROM photos WHERE id = ?", [(int(i),) for i in ids])

    @staticmethod
    def drop_codes(tx: sqlite3.Connection, photo_id: int) -> None:
        """Forget every model's codes (and features) of a photo whose content changed."""
        tx.execute("DELETE FROM codes WHERE photo_id = ?", (photo_id,))
        tx.execute("DELETE FROM features WHERE photo_id = ?", (photo_id,))
        tx.execute("DELETE FROM encode_failures WHERE photo_id = ?", (photo_id,))

    @staticmethod
    def replace_skipped(
        tx: sqlite3.Connection, root_id: int, skipped: Iterable[tuple[str, str]]
    ) -> None:
        """The (path, reason) pairs the indexer skipped under a root, replacing the last walk's."""
        tx.execute("DELETE FROM skipped WHERE root_id = ?", (root_id,))
        tx.executemany(
            "INSERT OR REPLACE INTO skipped(path, root_id, error) VALUES (?, ?, ?)",
            [(encode_path(p), root_id, display_text(e)) for p, e in skipped],
        )

    @staticmethod
    def put_encode_failures(
        tx: sqlite3.Connection, model_id: str, failures: Iterable[tuple[int, str]]
    ) -> None:
        """(photo id, reason) of photos the model could not encode."""
        tx.executemany(
            "INSERT OR REPLACE INTO encode_failures(photo_id, model_id, error) VALUES (?, ?, ?)",
            [(int(i), model_id, display_text(e)) for i, e in failures],
        )

    @staticmethod
    def clear_encode_failures(tx: sqlite3.Connection, model_id: str, ids: Iterable[int]) -> None:
        """Forget the model's failed attempts to encode these photos."""
        tx.executemany(
            "DELETE FROM encode_failures WHERE photo_id = ? AND model_id = ?",
            [(int(i), model_id) for i in ids],
        )

    # ---------------------------------------------------------------- models and codes
    def register_model(self, model_id: str, method: str, bits: int) -> None:
        """Record a model (id, method, bits) whose codes the catalog keeps."""
        with self.transaction("registering the model") as tx:
            tx.execute(
                "INSERT OR IGNORE INTO models(id, method, bits, added_at) VALUES (?,?,?,?)",
                (model_id, method, bits, time.time()),
            )

    def model_bits(self, model_id: str) -> int | None:
        """The code length of a registered model (None: not registered)."""
        rows = self._query("SELECT bits FROM models WHERE id = ?", (model_id,))
        return int(rows[0][0]) if rows else None

    @staticmethod
    def put_codes(
        tx: sqlite3.Connection, model_id: str, ids: Iterable[int], codes: np.ndarray
    ) -> None:
        """Store (or replace) the model's packed codes of photos ``ids``."""
        tx.executemany(
            "INSERT OR REPLACE INTO codes(photo_id, model_id, code) VALUES (?, ?, ?)",
            [(int(i), model_id, bytes(c)) for i, c in zip(ids, codes, strict=True)],
        )

    def uncoded_count(self, model_id: str) -> int:
        """Readable photos not indexed with the model yet (no code, and no failed attempt,
        which ``failures`` lists): a search with the model does not see them."""
        rows = self._query(
            "SELECT COUNT(*) FROM photos p WHERE p.status = 'ok' "
            "AND NOT EXISTS (SELECT 1 FROM codes c WHERE c.photo_id = p.id AND c.model_id = ?) "
            "AND NOT EXISTS (SELECT 1 FROM encode_failures f "
            "WHERE f.photo_id = p.id AND f.model_id = ?)",
            (model_id, model_id),
        )
        return int(rows[0][0])

    def coded_ids(self, model_id: str) -> set[int]:
        """Ids of the photos with a code for the model."""
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
        """Ids of the photos with a stored feature (re-ranking) for the model."""
        rows = self._query("SELECT photo_id FROM features WHERE model_id = ?", (model_id,))
        return {r[0] for r in rows}

    def all_features(self, model_id: str, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (n,), float16 (n, ``width``)) of every readable photo with a stored
        feature of that width for the model (a photo's unbinarised output, for models with
        ``photo_values``); a feature of another width is left out."""
        rows = self._query(
            "SELECT f.photo_id, f.feature FROM features f JOIN photos p ON p.id = f.photo_id "
            "WHERE f.model_id = ? AND p.status = 'ok' AND length(f.feature) = ?",
            (model_id, 2 * width),
        )
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        blob = b"".join(r[1] for r in rows)
        return ids, np.frombuffer(blob, dtype="<f2").reshape(len(rows), width).copy()

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
