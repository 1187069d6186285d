"""The shipped models' recipes (training.shipped): which runs a selection needs, the commands a
validation run and a shipped run get, and the validation figures stored in a checkpoint."""

import json
from pathlib import Path

import pytest

from engine.models import read_checkpoint_info
from engine.models.checkpoint import save_checkpoint
from engine.store import SHIPPED_DIR, create_fresh
from training import shipped


def test_a_selection_brings_the_runs_it_starts_from_in_order():
    assert [r.name for r in shipped.selected(["dsh-64"])] == ["anchor-64", "dsh-64"]
    assert [r.name for r in shipped.selected(None)] == [r.name for r in shipped.RECIPES]
    with pytest.raises(SystemExit, match="Unknown model"):
        shipped.selected(["dsh-32"])
    # every shipped checkpoint has its recipe, under its shipped file name
    files = {p.name for p in SHIPPED_DIR.glob("*.safetensors")} - {"baseline-64.safetensors"}
    assert {r.file for r in shipped.RECIPES} == files


def test_validation_runs_hold_out_unseen20_and_start_from_their_own_anchor(tmp_path):
    plan = shipped.Plan(tmp_path / "data", tmp_path / "out", "cuda", smoke=False)
    plan.runs.mkdir(parents=True)
    steps = {label: cmd for label, cmd, _ in plan.steps(shipped.selected(["dsh-64"]))}
    val, full = steps["dsh-64: validation run"], steps["dsh-64: training"]
    assert "--hold-out" in val and "unseen20" in val and "--hold-out" not in full
    assert val[val.index("--device") + 1] == "cuda"
    configs = [json.loads(Path(c[c.index("--config") + 1]).read_text()) for c in (val, full)]
    trunks = [c["options"]["sketch_trunk_from"] for c in configs]
    assert trunks == [
        str(plan.runs / "anchor-64-val.safetensors"),  # trained without unseen20 as well
        str(plan.models / "default.safetensors"),  # the shipped default this run makes
    ]
    # the zero-shot evaluations of the validation run, the shipped model's stored figures
    assert "--protocol" in steps["dsh-64: validation u20"]
    assert "--store" in steps["dsh-64: figures test"]
    assert "--doodles" in steps["dsh-64: figures doodles"]
    anchor = steps["anchor-64: training"]
    assert anchor[anchor.index("--data") + 1] == str(tmp_path / "data" / "sketchy")
    assert anchor[anchor.index("--extra-data") + 1] == str(tmp_path / "data" / "pacs")


def test_smoke_runs_are_short_and_on_few_classes(tmp_path):
    plan = shipped.Plan(tmp_path / "data", tmp_path / "out", None, smoke=True)
    plan.runs.mkdir(parents=True)
    steps = {label: cmd for label, cmd, _ in plan.steps(shipped.selected(["dssa-shoes-64"]))}
    train = steps["dssa-shoes-64: training"]
    assert train[-4:] == ["--epochs", "1", "--max-steps-per-epoch", "2"]  # the last ones win
    assert "--classes" not in train  # a fine-grained set keeps its pairs
    assert "--from-features" in steps["dssa-shoes-64: codes"]
    assert "--hog-weight" in steps["dssa-shoes-64: codes"]
    config = json.loads(Path(train[train.index("--config") + 1]).read_text())
    assert config["options"]["trunk_from"] == str(plan.models / "default.safetensors")
    assert config["model"]["edge_threshold"] == 0.2
    assert config["options"]["edges"] == "both"  # the engine's and the released edge maps
    assert "--device" not in train
    cat = {label: cmd for label, cmd, _ in plan.steps(shipped.selected(["gdh-128"]))}
    assert "--classes" in cat["gdh-128: training"] and "--classes" in cat["gdh-128: figures test"]


def test_validation_figures_are_stored_beside_the_checkpoints_own(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(create_fresh("baseline", bits=64, image_size=96), path)
    figures = {
        "u20": {"metrics": {"map_all": 0.3}, "protocol": {"model_id": "val-id"}},
        "u20d": {"metrics": {"map_all": 0.2}, "protocol": {"model_id": "val-id"}},
    }
    shipped.store_validation(path, figures)
    stored = read_checkpoint_info(path).metadata["metrics"]["protocols"]
    assert stored["unseen20_recipe_validation"]["metrics"]["map_all"] == 0.3
    assert stored["unseen20_doodles_recipe_validation"]["metrics"]["map_all"] == 0.2
    assert stored["unseen20_recipe_validation"]["measured_on"]["model_id"] == "val-id"
    report = {"metrics": {"acc@1": 0.3, "acc@10": 0.6}, "random": {"acc@1": 0.01}}
    head = shipped.summary({"evaluations": {"m": {"test": report}}, "seconds": {"a": 1.0}})
    assert head == {
        "seconds": {"a": 1.0},
        "figures": {"m test": {"metrics acc@1": 0.3, "metrics acc@10": 0.6, "random acc@1": 0.01}},
    }


def test_a_smoke_run_trains_measures_and_stores_a_shipped_model(tmp_path, shared_data):
    """The real commands, on three classes for two steps: the recipe's steps all run, the new
    checkpoint lands under its shipped name with its figures stored, assets untouched."""
    before = (SHIPPED_DIR / "gdh-128.safetensors").stat().st_mtime_ns
    out = tmp_path / "shipped"
    args = ["--smoke", "--only", "gdh-128", "--data", str(shared_data), "--out", str(out)]
    assert shipped.main(args) == 0
    made = out / "models" / "gdh-128.safetensors"
    info = read_checkpoint_info(made)
    assert info.name == "gdh-128" and info.bits == 128
    metrics = info.metadata["metrics"]
    assert metrics["protocol"]["class_count"] == len(shipped.SMOKE_CLASSES)  # a smoke run
    assert "doodles" in metrics["protocols"]
    summary = json.loads((out / "figures.json").read_text())
    assert set(summary["figures"]) == {"gdh-128 test", "gdh-128 doodles"}
    assert summary["figures"]["gdh-128 test"]["random map_all"] > 0
    assert set(summary["seconds"]) == {
        "gdh-128: training",
        "gdh-128: float16",
        "gdh-128: figures test",
        "gdh-128: figures doodles",
    }
    assert (SHIPPED_DIR / "gdh-128.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize("name", ["dssa-shoes-64", "dssa-chairs-64"])
def test_the_shipped_dssa_models_draw_their_photos_as_their_recipe_trained_them(name):
    """The app computes a photo's edge map with the checkpoint's own threshold: a checkpoint
    made by an older recipe would index photos with edges its network never saw."""
    recipe = shipped.BY_NAME[name]
    info = read_checkpoint_info(SHIPPED_DIR / recipe.file)
    assert info.method == "dssa"
    assert info.config["edge_threshold"] == recipe.config["model"]["edge_threshold"]
    trained = info.metadata["training"]["config"]["options"]
    assert trained["edges"] == recipe.config["options"]["edges"]  # the kinds it trained on
