"""float16 checkpoints: half the bytes, the same network on load, an id that matches the loaded
weights, and re-saving keeps what a checkpoint says about itself."""

import json
import os
import stat

import numpy as np
import pytest
import torch

from app.cli import main
from engine.errors import ConfigError
from engine.models import (
    create,
    load_checkpoint,
    model_id,
    read_checkpoint_info,
    resave_checkpoint,
    save_checkpoint,
)
from engine.sketch import load_sketch


def _model():
    torch.manual_seed(0)
    return create("baseline", image_size=96, pretrained=False).eval()


def test_float16_checkpoint_is_half_size_and_loads_the_rounded_network(tmp_path, shared_data):
    model = _model()
    full = save_checkpoint(model, tmp_path / "full.safetensors")
    half = save_checkpoint(model, tmp_path / "half.safetensors", weights_dtype="float16")
    assert half.stat().st_size < 0.55 * full.stat().st_size
    info = read_checkpoint_info(half)
    assert info.metadata["weights_dtype"] == "float16"

    loaded = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    # the recorded id is the id of the network as loaded, not of the float32 original
    assert model_id(loaded) == info.metadata["model_id"] != model_id(model)
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(loaded.state_dict()[key], value.half().float())

    sketches = load_sketch(next((shared_data / "sketchy" / "sketches").rglob("*.png")))[None]
    emb_full, emb_half = model.embed_sketches(sketches), loaded.embed_sketches(sketches)
    cos = float((emb_full * emb_half).sum() / np.linalg.norm(emb_full) / np.linalg.norm(emb_half))
    assert cos > 0.999


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_checkpoint_is_readable_by_others_like_any_saved_file(tmp_path):
    path = save_checkpoint(_model(), tmp_path / "m.safetensors")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_unknown_dtype_and_overflow_are_refused(tmp_path):
    model = _model()
    with pytest.raises(ConfigError, match="not supported"):
        save_checkpoint(model, tmp_path / "x.safetensors", weights_dtype="int8")
    with torch.no_grad():
        model.hash_head[-1].bias[0] = 1e6  # beyond float16's 65504
    with pytest.raises(ConfigError, match="does not fit in float16"):
        save_checkpoint(model, tmp_path / "x.safetensors", weights_dtype="float16")
    assert not (tmp_path / "x.safetensors").exists()


def test_resave_keeps_metadata_and_precision(tmp_path):
    src = save_checkpoint(
        _model(),
        tmp_path / "m.safetensors",
        weights_dtype="float16",
        name="mine",
        data={"classes": 3},
        metrics={"map_all": 0.25},
    )
    resave_checkpoint(src, src, metrics={"map_all": 0.5})
    info = read_checkpoint_info(src)
    assert info.name == "mine"
    assert info.metadata["data"] == {"classes": 3}
    assert info.metrics["map_all"] == 0.5
    assert info.metadata["weights_dtype"] == "float16"


def test_cli_compact_writes_a_float16_copy(tmp_path, capsys):
    src = save_checkpoint(_model(), tmp_path / "m.safetensors", name="mine")
    dst = tmp_path / "m16.safetensors"
    assert main(["compact", str(src), str(dst), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bytes_after"] == dst.stat().st_size < 0.55 * out["bytes_before"]
    info = read_checkpoint_info(dst)
    assert (info.name, info.metadata["weights_dtype"]) == ("mine", "float16")
    assert read_checkpoint_info(src).metadata["weights_dtype"] == "float32"


def test_cli_compact_can_name_the_copy(tmp_path, capsys):
    src = save_checkpoint(_model(), tmp_path / "m.safetensors", name="run-17")
    dst = tmp_path / "shipped.safetensors"
    assert main(["compact", str(src), str(dst), "--name", "shipped-64"]) == 0
    assert read_checkpoint_info(dst).name == "shipped-64"
    assert read_checkpoint_info(src).name == "run-17"
