"""``sketch-search query --rerank``: a DSSA checkpoint re-ranks the Hamming shortlist by HOLEF
on the features the indexer stored; a method without an exact distance says so and keeps the
Hamming order."""

import json
import shutil

import pytest
import torch

from app.cli import main
from engine.models import save_checkpoint
from engine.store import create_fresh


@pytest.fixture
def shoes_library(tmp_path, shared_data):
    root = shared_data / "shoes_v1"
    if not (root / "photos").is_dir():
        pytest.skip(f"{root} is missing")
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((root / "photos").glob("*.jpg"))[:12]:
        shutil.copy(p, photos / p.name)
    sketch = root / "sketches" / f"{sorted(photos.glob('*.jpg'))[0].stem}.png"
    return photos, tmp_path / "library", sketch


def test_query_rerank_orders_by_holef_and_reports_it(shoes_library, tmp_path, capsys):
    torch.set_num_threads(1)
    photos, library, sketch = shoes_library
    model = tmp_path / "dssa.safetensors"
    save_checkpoint(create_fresh("dssa", bits=32, image_size=96), model)
    args = ["--library", str(library), "--model", str(model)]
    assert main(["index", str(photos), *args]) == 0
    capsys.readouterr()
    assert main(["query", str(sketch), "--top", "12", "--rerank", "--json", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reranked"] is True and len(out["results"]) == 12
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores)
    assert main(["query", str(sketch), "--top", "12", "--json", *args]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["reranked"] is False and "score" not in plain["results"][0]
    assert {r["path"] for r in plain["results"]} == {r["path"] for r in out["results"]}


def test_query_rerank_with_a_method_without_features_keeps_hamming(shoes_library, tmp_path, capsys):
    photos, library, sketch = shoes_library
    model = tmp_path / "baseline.safetensors"
    save_checkpoint(create_fresh("baseline", bits=32, image_size=96), model)
    args = ["--library", str(library), "--model", str(model)]
    assert main(["index", str(photos), *args]) == 0
    capsys.readouterr()
    assert main(["query", str(sketch), "--top", "5", "--rerank", "--json", *args]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["reranked"] is False
    assert "Not re-ranked" in captured.err and "no exact distance" in captured.err
