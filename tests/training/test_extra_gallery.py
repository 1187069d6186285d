"""``evaluate`` with ``extra_gallery``: another data set's photos (QMUL-Chair beside QMUL-Shoe,
real data) join the gallery as distractors; the figures are a naive loop's over that gallery,
can only fall, and are stored under their own key."""

import json

import numpy as np
import pytest
import torch

from engine.codes import hamming_reference, pack_codes
from engine.errors import ConfigError
from engine.models import read_checkpoint_info, save_checkpoint
from engine.store import create_fresh
from training import EvalConfig, evaluate, store_metrics
from training.arrays import prepare_arrays, read_photo
from training.data import load_dataset
from training.evaluate import distractor_folder
from training.progress import drain

N_SHOES = 20


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return create_fresh("dssa", bits=64, image_size=96, pretrained=False)


@pytest.fixture
def data(shared_data):
    shoes, chairs = shared_data / "shoes_v1", shared_data / "chairs_v1"
    for root in (shoes, chairs):
        if not (root / "photos").is_dir():
            pytest.skip(f"{root} is missing")
    ids = sorted(json.loads((shoes / "split.json").read_text())["test"], key=int)[:N_SHOES]
    return shoes, chairs, tuple(ids)


def naive_accuracy(model, shoes, chairs, ids, k):
    """Expected acc@k over tie orders, one query at a time: the true photo is among the top k
    with chance clamp((k - closer) / (as close, itself included), 0, 1)."""
    view = load_dataset(shoes).restrict_classes(ids).subset("test")
    arrays = drain(prepare_arrays(view, model.photo_size, model.sketch_size))
    extra = [read_photo(p, model.photo_size) for p in sorted((chairs / "photos").glob("*.jpg"))]
    photos = np.concatenate([arrays.photos, np.stack(extra)])
    gallery = pack_codes(model.embed_photos(photos))
    queries = pack_codes(model.embed_sketches(arrays.sketches))
    values = []
    for q, own in zip(queries, arrays.sketch_photo, strict=True):
        dist = hamming_reference(q[None], gallery)[0]
        closer, tied = int((dist < dist[own]).sum()), int((dist == dist[own]).sum())
        values.append(min(max((k - closer) / tied, 0.0), 1.0))
    return float(np.mean(values)), len(np.unique(gallery, axis=0))


def test_distractors_join_the_gallery_and_the_figures_match_a_naive_loop(model, data, tmp_path):
    shoes, chairs, ids = data
    base = EvalConfig(classes=ids, baseline=False, real_valued=False, expand=0)
    plain = drain(evaluate(model, shoes, base))
    config = EvalConfig(
        classes=ids, baseline=False, real_valued=False, expand=0, extra_gallery=chairs
    )
    report = drain(evaluate(model, shoes, config))
    n_chairs = len(list((chairs / "photos").glob("*.jpg")))
    proto = report.protocol
    assert proto["distractors"] == n_chairs and proto["distractors_skipped"] == 0
    assert proto["gallery"] == N_SHOES + n_chairs and proto["queries"] == N_SHOES
    # a data set folder gives its photos only, not its sketches and edge maps
    assert proto["distractors_from"] == str(chairs / "photos")
    assert distractor_folder(chairs / "photos") == chairs / "photos"
    for k in (1, 10):
        expected, distinct = naive_accuracy(model, shoes, chairs, ids, k)
        assert report.metrics[f"acc_{k}"] == pytest.approx(expected, abs=1e-12)
        # more photos to rank can only push the true one down
        assert report.metrics[f"acc_{k}"] <= plain.metrics[f"acc_{k}"] + 1e-12
    assert report.codes["distinct"] == distinct and report.codes["gallery"] == proto["gallery"]
    assert report.random["acc_10"] == pytest.approx(10 / proto["gallery"])

    # stored beside the main figures, never over them
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    store_metrics(ckpt, plain)
    store_metrics(ckpt, report)
    info = read_checkpoint_info(ckpt)
    assert report.key == "extra_gallery" and info.metrics == plain.metrics
    stored = info.metadata["metrics"]["protocols"]["extra_gallery"]
    assert stored["metrics"] == report.metrics and stored["codes"] == report.codes


def test_extra_gallery_that_is_not_a_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a folder of photos"):
        distractor_folder(tmp_path / "missing")
