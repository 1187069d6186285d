import sqlite3

import numpy as np
import pytest

from engine.catalog import SCHEMA_VERSION, Catalog
from engine.errors import CatalogError


def test_schema_created_and_reopened(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite")
    assert cat.schema_version == SCHEMA_VERSION
    rid = cat.add_root(tmp_path)
    cat.close()
    again = Catalog(tmp_path / "c.sqlite")
    assert again.roots() == [(rid, tmp_path)]


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    Catalog(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(CatalogError, match="newer"):
        Catalog(path)


def test_not_a_database_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match=r"re-index|corrupt|Move it"):
        Catalog(path)


def test_codes_per_model_and_cascade(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite")
    rid = cat.add_root(tmp_path)
    cat.register_model("a", "baseline", 64)
    cat.register_model("b", "baseline", 128)
    with cat.transaction() as tx:
        ids = [
            cat.upsert_photo(tx, str(tmp_path / f"{i}.jpg"), rid, 10, 1, f"k{i}") for i in range(3)
        ]
        cat.put_codes(tx, "a", ids, np.arange(24, dtype=np.uint8).reshape(3, 8))
        cat.put_codes(tx, "b", ids[:1], np.ones((1, 16), np.uint8))
    got_ids, got_codes = cat.codes_for("a", 64)
    assert sorted(got_ids.tolist()) == sorted(ids)
    assert got_codes[got_ids.tolist().index(ids[1])].tolist() == list(range(8, 16))
    assert cat.codes_for("b", 128)[0].tolist() == [ids[0]]
    with pytest.raises(CatalogError, match="64-bit"):
        cat.codes_for("a", 128)
    assert cat.remove_root(tmp_path) == 3
    assert cat.photo_count(None) == 0
    assert len(cat.codes_for("a", 64)[0]) == 0


def test_failed_transaction_rolls_back(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite")
    rid = cat.add_root(tmp_path)
    with pytest.raises(RuntimeError), cat.transaction() as tx:
        cat.upsert_photo(tx, "x.jpg", rid, 1, 1, None)
        raise RuntimeError("crash mid-batch")
    assert cat.photo_count(None) == 0
