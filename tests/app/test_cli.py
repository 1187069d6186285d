"""The sketch-search command end to end on a copy of real Sketchy photos, queried with a human
sketch of one of them."""

import json
import shutil
from pathlib import Path

import pytest

from app.cli import EXIT_ERROR, main
from engine.sketch import read_quickdraw, save_strokes
from engine.store import default_checkpoint

CLASSES = ("airplane", "apple", "bicycle", "cup", "guitar", "hat")
PER_CLASS = 6


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, shared_data):
    """A library of 36 real photos indexed through the CLI with the default model."""
    root = tmp_path_factory.mktemp("cli")
    photos = root / "photos"
    for cls in CLASSES:
        (photos / cls).mkdir(parents=True)
        for p in sorted((shared_data / "sketchy" / "photos" / cls).glob("*.jpg"))[:PER_CLASS]:
            shutil.copy(p, photos / cls / p.name)
    (photos / "broken.jpg").write_bytes(b"not a jpeg at all")
    library = root / "library"
    return photos, library


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_index_then_query_with_a_human_sketch(indexed, shared_data, capsys):
    photos, library = indexed
    model = [] if default_checkpoint() else ["--model", "baseline"]
    assert main(["index", str(photos), "--library", str(library), "--json", *model]) == 0
    summary = _json(capsys)
    assert summary["encoded"] == len(CLASSES) * PER_CLASS
    assert [f["path"] for f in summary["failures"]] == [str(photos / "broken.jpg")]

    hits = 0
    for cls in CLASSES:
        photo = sorted((photos / cls).glob("*.jpg"))[0]
        sketch = shared_data / "sketchy" / "sketches" / cls / f"{photo.stem}-1.png"
        assert main(["query", str(sketch), "--top", "5", "--library", str(library), "--json"]) == 0
        out = _json(capsys)
        assert set(out["timings_ms"]) >= {"normalize", "encode", "search", "total"}
        results = out["results"]
        assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
        assert [r["distance"] for r in results] == sorted(r["distance"] for r in results)
        assert all(photos in Path(r["path"]).parents for r in results)
        hits += sum(f"/{cls}/" in r["path"] for r in results)
    if default_checkpoint() is not None:
        # a trained model puts more same-class photos in the top 5 than chance (5/6 per query)
        chance = 5 * len(CLASSES) / len(CLASSES)
        assert hits > 2 * chance, f"{hits} same-class results in top 5, chance {chance}"


def test_query_with_a_strokes_file(indexed, shared_data, tmp_path, capsys):
    _photos, library = indexed
    if not (library / "catalog.sqlite").exists():
        pytest.skip("runs after the indexing test")
    drawing = next(read_quickdraw(shared_data / "quickdraw" / "cup.ndjson.gz", limit=1))
    path = save_strokes(tmp_path / "cup.json", drawing.strokes)
    assert main(["query", str(path), "--top", "3", "--library", str(library), "--json"]) == 0
    assert len(_json(capsys)["results"]) == 3


def test_errors_are_one_clear_line(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("L", (64, 64), 255).save(blank)
    code = main(["query", str(blank), "--library", str(tmp_path / "lib"), "--model", "baseline"])
    assert code == EXIT_ERROR
    assert "No photos are indexed" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "missing"), "--library", str(tmp_path / "lib")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_models_lists_methods(capsys):
    assert main(["models", "--json"]) == 0
    out = _json(capsys)
    assert "baseline" in out["methods"]
    assert all({"name", "method", "bits", "path"} <= set(c) for c in out["checkpoints"])
