"""Fine-tuning (``TrainConfig.init_from``): a run starts from a real saved checkpoint's weights
and architecture, conflicting architecture settings and another method's or an unreadable
checkpoint are refused before any decoding, a resumed fine-tune continues bit for bit without
reading its starting checkpoint again, and DSH starts its codes from the trained model."""

import json
import threading

import pytest
import torch
from safetensors.torch import save_file

from engine.errors import CheckpointError, ConfigError
from engine.models import create, load_checkpoint, model_id, read_checkpoint_info, save_checkpoint
from tests.training.conftest import FEW_CLASSES
from training import TrainConfig, run_files, train
from training.finetune import checked_model_config
from training.progress import drain

ARCH = {"bits": 32, "image_size": 96, "pretrained": False, "hidden": 16}
DEFAULTS = {"backbone": "efficientnet_lite0", "codes": "sign", "code_fit": "photos"}  # not in ARCH


def log_events(out) -> list[dict]:
    return [json.loads(line) for line in run_files(out)[2].read_text().splitlines()]


@pytest.fixture
def start_ckpt(tmp_path):
    """A real baseline checkpoint whose weights no fresh model of the runs below has."""
    torch.manual_seed(123)
    model = create("baseline", **ARCH)
    with torch.no_grad():  # move the head away from any initialisation, as training would
        for p in model.hash_head.parameters():
            p.add_(0.5)
    return save_checkpoint(model, tmp_path / "start" / "start.safetensors", name="start")


def finetune_config(init_from, **changes) -> TrainConfig:
    base = TrainConfig(
        init_from=str(init_from),
        epochs=1,
        batch_size=4,
        per_class=2,
        max_steps_per_epoch=1,
        classes=FEW_CLASSES[:2],
        lr=1e-8,
        schedule="constant",
        seed=7,
        workers=1,
    )
    return base.replace(**changes)


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_config_round_trips_init_from(tmp_path):
    config = TrainConfig(init_from=tmp_path / "m.safetensors")  # a Path is kept as a string
    assert config.init_from == str(tmp_path / "m.safetensors")
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig().to_dict()["init_from"] is None
    with pytest.raises(ConfigError, match="init_from"):
        TrainConfig(init_from="")


def test_finetune_starts_from_the_checkpoint_weights_and_architecture(
    sketchy, start_ckpt, tmp_path
):
    torch.set_num_threads(1)
    start = load_checkpoint(start_ckpt)
    # the model asks for nothing (bits and pretrained repeat or do not count): the checkpoint's
    config = finetune_config(start_ckpt, model={"bits": 32, "pretrained": True})
    out = tmp_path / "ft" / "m.safetensors"
    result = drain(train(config, sketchy, out))
    assert result.global_step == 1 and not result.cancelled

    tuned = load_checkpoint(result.checkpoint)
    torch.manual_seed(config.seed)  # what the trainer would have built without init_from
    fresh = create("baseline", **ARCH)
    a, b, f = params(start), params(tuned), params(fresh)
    assert a.keys() == b.keys()
    # one step at lr 1e-8 moves no weight by more than ~1e-8 from the checkpoint's ...
    moved = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved < 1e-6
    # ... while a fresh model is far from them (its head alone differs by the 0.5 shift)
    from_fresh = max(float((f[k] - b[k]).abs().max()) for k in f)
    assert from_fresh > 0.4
    # and the step did run: the BatchNorm statistics moved, so the weights' id changed
    assert result.model_id != model_id(start)

    first = log_events(out)[0]
    assert first["event"] == "config"
    assert first["config"]["model"] == start.config.to_dict()  # the true architecture
    assert first["config"]["model"]["pretrained"] is False  # the checkpoint's, not the request
    assert first["config"]["init_from"] == str(start_ckpt.resolve())
    assert first["init_from"] == {"path": str(start_ckpt.resolve()), "model_id": model_id(start)}
    saved = read_checkpoint_info(result.checkpoint).metadata["training"]["config"]
    assert saved["init_from"] == str(start_ckpt.resolve()) and saved["model"] == ARCH | DEFAULTS


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ({"bits": 64}, "bits"),
        ({"image_size": 128, "bits": 32}, "image_size"),
        ({"hidden": 32}, "hidden"),
    ],
)
def test_a_conflicting_architecture_is_refused(sketchy, start_ckpt, tmp_path, model, key):
    config = finetune_config(start_ckpt, model=model)
    with pytest.raises(ConfigError, match="Fine-tuning keeps the architecture") as info:
        drain(train(config, sketchy, tmp_path / "m.safetensors"))
    assert key in str(info.value) and "start.safetensors" in str(info.value)
    assert not (tmp_path / "m.safetensors").exists()


def test_checked_model_config_normalises_and_names_unknown_keys():
    stored = {"bits": 32, "image_size": 96, "pretrained": True, "hidden": 16}
    full = checked_model_config("baseline", {"bits": 32.0, "pretrained": False}, stored, "x")
    assert full == stored | DEFAULTS
    with pytest.raises(ConfigError, match="holef"):
        checked_model_config("baseline", {"holef": True}, stored, "x")


def test_another_methods_checkpoint_is_refused_naming_both(sketchy, tmp_path):
    torch.manual_seed(0)
    other = save_checkpoint(
        create("dssa", image_size=96, pretrained=False, bits=32), tmp_path / "dssa.safetensors"
    )
    config = finetune_config(other)  # a baseline run
    with pytest.raises(CheckpointError, match=r"'dssa' checkpoint.*'baseline' run"):
        drain(train(config, sketchy, tmp_path / "m.safetensors"))


def test_unreadable_checkpoints_are_refused_cleanly(sketchy, start_ckpt, tmp_path):
    data = start_ckpt.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    pickled = tmp_path / "pickled.safetensors"
    torch.save({"w": torch.zeros(2)}, pickled)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)  # safetensors, but not saved by sketch-search
    cases = {
        tmp_path / "missing.safetensors": "No checkpoint at",
        truncated: "not a readable safetensors checkpoint",
        pickled: "never unpickles",
        foreign: "without SketchSearch metadata",
    }
    for path, message in cases.items():
        with pytest.raises(CheckpointError, match=message):
            drain(train(finetune_config(path), sketchy, tmp_path / "m.safetensors"))
    # and writing the run over the checkpoint it starts from
    with pytest.raises(ConfigError, match=r"write over start\.safetensors"):
        drain(train(finetune_config(start_ckpt), sketchy, start_ckpt))
    assert start_ckpt.read_bytes() == data


def test_resumed_finetune_is_bit_for_bit_without_its_start(sketchy, start_ckpt, tmp_path):
    torch.set_num_threads(1)
    config = finetune_config(start_ckpt, epochs=2, max_steps_per_epoch=2, lr=1e-3)
    straight = drain(train(config, sketchy, tmp_path / "a" / "m.safetensors"))
    assert straight.global_step == 4

    cancel = threading.Event()

    def stop_after_3(event):
        if event.phase == "step" and event.global_step == 3:
            cancel.set()

    out = tmp_path / "b" / "m.safetensors"
    cut = drain(train(config, sketchy, out, cancel=cancel), stop_after_3)
    assert cut.cancelled and cut.global_step == 3
    start_ckpt.unlink()  # a resume continues from its own state: it never reads the start again
    resumed = drain(train(config, sketchy, out, resume=out))
    assert resumed.global_step == 4 and not resumed.cancelled
    a = load_checkpoint(straight.checkpoint).state_dict()
    b = load_checkpoint(resumed.checkpoint).state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.model_id == resumed.model_id
    events = log_events(out)
    assert [e["event"] for e in events if e["event"] in ("config", "resume")] == [
        "config",
        "resume",
    ]
    assert events[0]["init_from"]["path"] == str(start_ckpt.resolve())


DSH_ARCH = {"image_size": 64, "bits": 32, "pretrained": False, "fc1": 32, "fc2": 16}


def test_dsh_finetune_starts_its_codes_from_the_model(sketchy, tmp_path):
    """A fine-tune's codes start from the network's signs (one step at lr 1e-8, then the
    epoch-end update changes hardly any and they agree with the signs well above chance);
    asking for random class codes still gets them (agreement near chance)."""
    torch.set_num_threads(1)
    torch.manual_seed(5)
    start = save_checkpoint(create("dsh", **DSH_ARCH), tmp_path / "dsh.safetensors")
    figures = {}
    for init in ("default", "class"):
        options = {"augment": False} | ({"init_codes": "class"} if init == "class" else {})
        config = finetune_config(start, method="dsh", options=options, batch_size=8, per_class=4)
        metrics = []
        drain(
            train(config, sketchy, tmp_path / f"{init}.safetensors"),
            lambda e, m=metrics: m.append(e.metrics) if e.phase == "epoch" else None,
        )
        figures[init] = metrics[-1]
    assert figures["default"]["codes_flipped"] < 0.05
    assert figures["default"]["sign_agreement"] > figures["class"]["sign_agreement"] + 0.1
    assert abs(figures["class"]["sign_agreement"] - 0.5) < 0.1
