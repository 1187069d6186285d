"""What a GDH model imagines while it trains: the training child sends, after every epoch, a few
fixed real Sketchy sketches and the photos that epoch's generator makes of them; the panel's strip
shows them. Real tiny trainings (2 classes, 64 px, 2 steps an epoch) run the child's own function
in this process, so each epoch's checkpoint can be kept and checked against the preview."""

from __future__ import annotations

import queue
import shutil
import threading

import numpy as np
import pytest
import torch
from PySide6.QtGui import QImage

from app.gui.train.imagine_strip import PLACEHOLDERS, TILE, WAITING_TEXT, ImagineStrip, to_tile
from app.training_process import TrainingRequest, _train_and_evaluate
from engine.models import load_checkpoint
from engine.models.gdh import GDHModel
from training import TrainConfig, load_dataset
from training.arrays import read_sketch
from training.run import PREVIEW_SKETCHES, preview_sketches

from .conftest import shared_or_skip

CLASSES = ("airplane", "apple")
TINY_GDH = {"bits": 32, "image_size": 64, "pretrained": False, "gen_channels": 4}
TINY_GDH |= {"gi_blocks": 1, "gs_blocks": 1}


class KeepingEpochs(queue.Queue):
    """The child's event queue; it also copies the checkpoint as each epoch ends (the child has
    just written it, and overwrites it at the next epoch)."""

    def __init__(self, out) -> None:
        super().__init__()
        self.out = out
        self.kept = {}

    def put(self, item, block=True, timeout=None):
        kind, payload = item
        if kind == "progress" and payload["phase"] == "epoch":
            kept = self.out.with_name(f"epoch{payload['epoch']}.safetensors")
            shutil.copy(self.out, kept)
            self.kept[payload["epoch"]] = kept
        super().put(item, block, timeout)

    def messages(self) -> list[tuple[str, dict]]:
        found = []
        while not self.empty():
            found.append(self.get_nowait())
        return found


def run_child(folder, method: str, model: dict, epochs: int = 2, **request_values):
    """Run the training child's own function in this process; its events and the queue."""
    options = {"disc_channels": 8, "init_codes": "random"} if method == "gdh" else {}
    config = TrainConfig(
        method=method,
        model=model,
        options=options,
        epochs=epochs,
        batch_size=4,
        per_class=2,
        lr=1e-3,
        schedule="constant",
        device="cpu",
        classes=CLASSES,
        max_steps_per_epoch=2,
    )
    out = folder / f"{method}.safetensors"
    values = {"validate_each_epoch": False, "evaluate_at_end": False} | request_values
    request = TrainingRequest(
        config.to_dict(),
        str(shared_or_skip("sketchy")),
        str(out),
        str(folder / "child.log"),
        **values,
    )
    events = KeepingEpochs(out)
    _train_and_evaluate(request, events, threading.Event())
    return events.messages(), events, out


def of_kind(messages, kind: str) -> list[dict]:
    return [payload for k, payload in messages if k == kind]


@pytest.fixture(scope="module")
def gdh_run(tmp_path_factory):
    return run_child(tmp_path_factory.mktemp("gdh"), "gdh", TINY_GDH)


# ---------------------------------------------------------------------- the child
def test_a_gdh_run_previews_every_epoch_with_that_epochs_generator(gdh_run):
    messages, events, out = gdh_run
    previews = of_kind(messages, "preview")
    assert [p["epoch"] for p in previews] == [1, 2] and all(p["epochs"] == 2 for p in previews)
    assert of_kind(messages, "trained")[0]["epochs_done"] == 2
    kinds = [k for k, _ in messages]
    first_epoch_end = next(
        i for i, (k, p) in enumerate(messages) if k == "progress" and p["phase"] == "epoch"
    )
    assert kinds[first_epoch_end + 1] == "preview"  # shown as soon as the epoch ends

    chosen = preview_sketches(load_dataset(shared_or_skip("sketchy")), CLASSES)
    for p in previews:
        assert p["names"] == [item.key for item in chosen]  # the same sketches every epoch
        expected = np.stack([read_sketch(item.path, 64) for item in chosen])
        np.testing.assert_array_equal(p["sketches"], expected)
        assert p["images"].dtype == np.uint8 and p["images"].shape == (PREVIEW_SKETCHES, 64, 64, 3)
        model = load_checkpoint(events.kept[p["epoch"]])
        np.testing.assert_array_equal(p["images"], model.imagine(p["sketches"]))
    assert not np.array_equal(previews[0]["images"], previews[1]["images"])  # G_I has learnt
    np.testing.assert_array_equal(previews[1]["images"], load_checkpoint(out).imagine(expected))


def test_previews_leave_the_trained_weights_bit_identical(gdh_run, tmp_path):
    _, _, with_previews = gdh_run
    messages, _, without = run_child(tmp_path, "gdh", TINY_GDH, preview_each_epoch=False)
    assert not of_kind(messages, "preview")
    a = load_checkpoint(with_previews).state_dict()
    b = load_checkpoint(without).state_dict()
    assert a.keys() == b.keys()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert not changed, f"weights differ with previews on: {changed[:5]}"


def test_imagine_on_a_training_model_leaves_batchnorm_statistics_alone(gdh_run):
    _, events, _ = gdh_run
    model = load_checkpoint(events.kept[1]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sketches = of_kind(gdh_run[0], "preview")[0]["sketches"]
    model.imagine(sketches)
    assert model.training and model.g_i.training  # back in training mode
    after = model.state_dict()
    stats = [k for k in before if "running_" in k or "num_batches" in k]
    assert stats and all(torch.equal(before[k], after[k]) for k in before)


def test_a_baseline_run_sends_no_preview(tmp_path):
    baseline = {"bits": 32, "image_size": 96, "pretrained": False}
    messages, _, _ = run_child(tmp_path, "baseline", baseline, epochs=1)
    assert of_kind(messages, "trained") and not of_kind(messages, "preview")


def test_a_failing_preview_is_reported_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    def broken(self, sketches):
        raise RuntimeError("the generator broke")

    monkeypatch.setattr(GDHModel, "imagine", broken)  # a fault injected into the real run
    messages, _, _ = run_child(tmp_path, "gdh", TINY_GDH, epochs=1, validate_each_epoch=True)
    (preview,) = of_kind(messages, "preview")
    assert preview == {"epoch": 1, "epochs": 1, "error": "RuntimeError: the generator broke"}
    assert of_kind(messages, "trained")[0]["epochs_done"] == 1
    assert [v["epoch"] for v in of_kind(messages, "validation")] == [1]
    logged = [r for r in caplog.records if r.name == "training.run"]
    assert any("preview of epoch 1" in r.getMessage() and r.exc_info for r in logged)


def test_preview_sketches_are_fixed_spread_over_classes_and_from_the_test_split():
    dataset = load_dataset(shared_or_skip("sketchy"))
    chosen = preview_sketches(dataset, CLASSES)
    assert len(chosen) == PREVIEW_SKETCHES
    assert [c.key.split("/")[0] for c in chosen] == ["airplane", "apple", "airplane", "apple"]
    test_photos = dataset.splits["test"]
    assert all(c.photo_key in test_photos for c in chosen)
    assert preview_sketches(dataset, CLASSES) == chosen
    spread = preview_sketches(dataset, tuple(dataset.classes[:8]))
    assert len({c.label for c in spread}) == PREVIEW_SKETCHES  # one each of 4 classes of 8


# ---------------------------------------------------------------------- the strip
def pixels(label) -> np.ndarray:
    """What a QLabel's pixmap shows, as uint8 (h, w, 3) RGB."""
    image = label.pixmap().toImage().convertToFormat(QImage.Format.Format_RGB888)
    h, w = image.height(), image.width()
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())
    return rows[:, : 3 * w].reshape(h, w, 3).copy()


def placeholders(strip) -> bool:
    """The strip shows PLACEHOLDERS empty tiles and nothing else."""
    shown = [label for label in strip.image_labels + strip.sketch_labels if not label.isHidden()]
    return len(shown) == 2 * PLACEHOLDERS and all(label.pixmap().isNull() for label in shown)


def enlarged(image: np.ndarray, factor: int) -> np.ndarray:
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    return rgb.repeat(factor, axis=0).repeat(factor, axis=1)


def test_the_strip_shows_the_newest_epochs_sketches_and_photos_pixel_for_pixel(qtbot, gdh_run):
    first, second = of_kind(gdh_run[0], "preview")
    strip = ImagineStrip()
    qtbot.addWidget(strip)
    assert strip.title.text() == WAITING_TEXT and strip.images is None
    assert placeholders(strip)  # empty tiles keep the strip's place until the first epoch
    strip.show_preview(first)
    strip.show_preview(second)
    assert strip.epoch == 2 and "epoch 2 of 2" in strip.title.text()
    factor = TILE // 64  # 64-px images: whole-factor nearest enlargement, no smoothing
    for i in range(PREVIEW_SKETCHES):
        assert not strip.image_labels[i].isHidden()
        shown = pixels(strip.image_labels[i])
        np.testing.assert_array_equal(shown, enlarged(second["images"][i], factor))
        assert not np.array_equal(shown, enlarged(first["images"][i], factor))
        sketch = pixels(strip.sketch_labels[i])
        np.testing.assert_array_equal(sketch, enlarged(second["sketches"][i], factor))
    captions = [label.text() for label in strip.caption_labels]
    assert captions == ["airplane", "apple", "airplane", "apple"]

    strip.show_preview({"epoch": 3, "epochs": 3, "error": "RuntimeError: out of memory"})
    assert "epoch 3" in strip.title.text() and "out of memory" in strip.title.text()
    assert strip.images is None and placeholders(strip)
    strip.show_preview(second)
    strip.clear()
    assert strip.epoch is None and strip.images is None and strip.title.text() == WAITING_TEXT
    assert placeholders(strip)


def test_large_photos_are_reduced_to_a_tile():
    big = np.zeros((256, 256, 3), np.uint8)
    assert to_tile(big).width() == to_tile(big).height() == TILE
    assert to_tile(np.zeros((48, 48), np.uint8)).width() == 48 * (TILE // 48)
