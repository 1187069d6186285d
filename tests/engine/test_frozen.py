"""The frozen photo side (engine.frozen) gives the model's own photo codes, with and without
edge maps; the indexer uses it for long runs and its library then holds the model's codes; the
model's threads sit beside the decoding threads while indexing and come back after."""

import os
import shutil
import sys

import numpy as np
import pytest
import torch

import engine.frozen as frozen
from engine.devices import cpu_threads_beside
from engine.frozen import PhotoEncoder
from engine.indexer import index_library
from engine.library import Library
from engine.models import load_checkpoint, model_id
from engine.store import SHIPPED_DIR, create_fresh
from training.arrays import read_photo


@pytest.fixture(scope="module")
def photo_files(shared_data):
    return sorted((shared_data / "sketchy" / "photos").rglob("*.jpg"))[::61][:9]


def _codes_agree(got: np.ndarray, model, photos: np.ndarray) -> None:
    """Packed codes equal the model's, but for bits whose output is within rounding of 0."""
    want = model.embed_photos(photos)
    scale = np.abs(want).max()
    bits_got = np.unpackbits(got, axis=1)[:, : want.shape[1]].astype(bool)
    firm = np.abs(want) > 1e-4 * scale
    assert (bits_got == (want > 0))[firm].all()
    assert firm.mean() > 0.99


@pytest.mark.parametrize("runtime", frozen.RUNTIMES)
@pytest.mark.parametrize("which", ["default", "dsh-64", "untrained semi3 (edge maps)"])
def test_the_frozen_photo_side_gives_the_models_codes(which, runtime, photo_files):
    if which == "untrained semi3 (edge maps)":
        model = create_fresh("semi3", bits=64, image_size=96).eval()
    else:
        name = "default" if which == "default" else which
        model = load_checkpoint(SHIPPED_DIR / f"{name}.safetensors").eval()
    photos = np.stack([read_photo(p, model.photo_size) for p in photo_files])
    encoder = PhotoEncoder(model, runtimes=(runtime,))
    assert encoder.frozen and encoder.runtime == runtime, encoder.why_not
    for batch in (photos[:1], photos[1:6], photos):  # any batch size, as the indexer's last one
        _codes_agree(encoder.encode(batch), model, batch)


def test_onnx_runtime_comes_first_and_torchscript_answers_without_it(photo_files, monkeypatch):
    """Where ONNX Runtime is installed (a dependency) it runs the photo side, on the torch
    thread count of the indexing run, its idle threads not spinning; a machine without it gets
    the TorchScript graph, with the same codes."""
    model = load_checkpoint(SHIPPED_DIR / "default.safetensors").eval()
    photos = np.stack([read_photo(p, model.photo_size) for p in photo_files[:4]])
    with cpu_threads_beside(1, torch.device("cpu")):
        first = PhotoEncoder(model)
        threads = torch.get_num_threads()
    assert first.runtime == "onnxruntime"
    options = first._graph.session.get_session_options()
    assert options.intra_op_num_threads == threads
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # a machine without it: import fails
    without = PhotoEncoder(model)
    assert without.runtime == "torchscript", without.why_not
    np.testing.assert_array_equal(without.encode(photos), first.encode(photos))
    _codes_agree(without.encode(photos), model, photos)
    with pytest.raises(ImportError):
        frozen.freeze_side(model, "photo", runtimes=("onnxruntime",))


def test_short_runs_and_reranking_models_keep_the_models_own_path():
    model = create_fresh("baseline", bits=64, image_size=96).eval()
    assert PhotoEncoder.for_run(model, frozen.FROZEN_PHOTOS_MIN - 1) == model.embed_photos
    assert PhotoEncoder.for_run(model, frozen.FROZEN_PHOTOS_MIN) != model.embed_photos
    dssa = load_checkpoint(SHIPPED_DIR / "dssa-shoes-64.safetensors").eval()
    assert PhotoEncoder.for_run(dssa, 10**6) == dssa.embed_photos  # features come with codes
    model.train()
    training = PhotoEncoder(model)
    assert not training.frozen and "training" in training.why_not
    photos = np.zeros((2, 96, 96, 3), np.uint8)
    model.eval()
    np.testing.assert_array_equal(training.encode(photos), model.encode_photos(photos))


def test_a_long_indexing_run_stores_the_models_codes(photo_files, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photo_files:
        shutil.copy(p, folder / p.name)
    model = load_checkpoint(SHIPPED_DIR / "default.safetensors").eval()
    monkeypatch.setattr(frozen, "FROZEN_PHOTOS_MIN", 4)  # these 9 photos make a long run
    library = Library(tmp_path / "library")
    library.add_root(folder)
    threads = torch.get_num_threads()
    events = list(index_library(library, model, batch_size=4, workers=2))
    assert events[-1].encoded == len(photo_files)
    assert torch.get_num_threads() == threads  # given back after the run
    ids, codes = library.catalog.codes_for(model_id(model), model.bits)
    paths = library.catalog.paths_for(ids.tolist())
    photos = np.stack([read_photo(paths[i], model.photo_size) for i in ids.tolist()])
    _codes_agree(codes, model, photos)
    library.close()


def test_model_threads_leave_the_decoding_threads_their_cores():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cores = os.cpu_count() or 1
        with cpu_threads_beside(1, torch.device("cpu")):
            assert torch.get_num_threads() == max(1, min(2, cores - 1))
        assert torch.get_num_threads() == 2
        with cpu_threads_beside(64, torch.device("cpu")):
            assert torch.get_num_threads() == 1  # never fewer than one
        with cpu_threads_beside(64, torch.device("cuda")):
            assert torch.get_num_threads() == 2  # a GPU model leaves the CPU threads alone
    finally:
        torch.set_num_threads(before)
