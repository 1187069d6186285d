"""The settings of a training run: method, backbone, code length, data set folder (validated as
soon as it is chosen), hyperparameters pre-filled from the method's defaults, and the device.

``TrainingForm.build_request()`` turns the fields into a ``training.TrainConfig`` (which
validates them) and the validated data set; every problem is a ``SketchSearchError`` whose
message the panel shows before anything starts.

Defaults: the common fields come from ``TrainConfig``; a method's procedure may hold better ones
for a data layout in ``train_defaults`` (``{"category": {...}, "fine_grained": {...}}`` or one
flat dict); the method options (loss weights, ...) are the procedure's ``default_options``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.codes import SUPPORTED_BITS
from engine.errors import ConfigError, DatasetError
from engine.models import get_method, list_methods, make_config
from engine.models.base import BACKBONES
from training import SketchDataset, TrainConfig, get_procedure, list_procedures, load_dataset

log = logging.getLogger(__name__)

ERROR_STYLE = "color: #611a15;"


def trainable_methods() -> list[str]:
    return [m for m in list_procedures() if m in list_methods()]


def devices() -> list[str]:
    found = ["auto", "cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def train_defaults(method: str, layout: str | None) -> dict[str, Any]:
    """TrainConfig's defaults with the method's own for this layout laid over them."""
    values = TrainConfig(method=method).to_dict()
    extra = getattr(get_procedure(method), "train_defaults", {}) or {}
    if layout in extra and isinstance(extra[layout], dict):
        extra = extra[layout]
    values.update({k: v for k, v in extra.items() if k in values and not isinstance(v, dict)})
    return values


def describe_dataset(dataset: SketchDataset) -> str:
    """What the folder holds, in plain words."""
    with_sketch = {s.photo_key for s in dataset.sketches}
    lonely = len(dataset.photos) - len(with_sketch)
    if dataset.layout == "category":
        kind = f"Category-level data set: {len(dataset.classes):,} classes, "
    else:
        kind = "Fine-grained data set (every photo its own class): "
    text = (
        f"{kind}{len(dataset.photos):,} photos, {len(dataset.sketches):,} sketches, "
        f"{len(dataset.sketches):,} sketch-photo pairs."
    )
    if dataset.splits:
        parts = ", ".join(f"{n} {len(keys):,}" for n, keys in sorted(dataset.splits.items()))
        text += f" Split (photos): {parts}."
    else:
        text += " No split.json: the whole folder is trained on and evaluated."
    if dataset.triplets:
        text += f" {sum(len(t) for t in dataset.triplets.values()):,} human triplets."
    if dataset.edges:
        text += f" Released edge maps for {len(dataset.edges):,} photos."
    if lonely:
        text += f" {lonely:,} photos have no sketch (they still serve as gallery)."
    return text


class TrainingForm(QWidget):
    dataChanged = Signal()  # a folder was chosen (valid or not)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.dataset: SketchDataset | None = None
        self.data_error = ""
        self.method_combo = QComboBox()
        self.method_combo.addItems(trainable_methods())
        self.backbone_combo = QComboBox()
        self.backbone_combo.addItems(BACKBONES)
        self.bits_combo = QComboBox()
        for bits in SUPPORTED_BITS:
            self.bits_combo.addItem(f"{bits} bits", bits)
        self.image_size_spin = QSpinBox(minimum=32, maximum=512, singleStep=32)
        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText("A folder with photos/ and sketches/")
        self.data_edit.editingFinished.connect(lambda: self.set_data_folder(self.data_edit.text()))
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose_folder)
        self.data_summary = QLabel("Choose a data set folder.")
        self.data_summary.setWordWrap(True)
        self.epochs_spin = QSpinBox(minimum=1, maximum=1000)
        self.batch_spin = QSpinBox(minimum=2, maximum=1024)
        self.per_class_spin = QSpinBox(minimum=1, maximum=1024)
        self.lr_edit = QLineEdit()
        self.schedule_combo = QComboBox()
        self.schedule_combo.addItems(["constant", "step", "cosine"])
        self.freeze_spin = QSpinBox(minimum=0, maximum=10)
        self.max_steps_spin = QSpinBox(minimum=0, maximum=1_000_000, specialValueText="all")
        self.classes_edit = QLineEdit()
        self.classes_edit.setPlaceholderText("all classes (or: airplane, apple, …)")
        self.seed_spin = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.device_combo = QComboBox()
        self.device_combo.addItems(devices())
        self.validate_check = QCheckBox("Validate after every epoch")
        self.validate_check.setChecked(True)
        self.option_widgets: dict[str, QWidget] = {}
        self.options_box = QGroupBox("Method options")
        self.options_layout = QFormLayout(self.options_box)

        model_box = QGroupBox("Model")
        model_form = QFormLayout(model_box)
        model_form.addRow("Method", self.method_combo)
        model_form.addRow("Backbone", self.backbone_combo)
        model_form.addRow("Code length", self.bits_combo)
        model_form.addRow("Image size", self.image_size_spin)
        data_box = QGroupBox("Data set")
        data_layout = QVBoxLayout(data_box)
        row = QHBoxLayout()
        row.addWidget(self.data_edit, 1)
        row.addWidget(browse)
        data_layout.addLayout(row)
        data_layout.addWidget(self.data_summary)
        hyper_box = QGroupBox("Training")
        hyper = QFormLayout(hyper_box)
        for label, widget in (
            ("Epochs", self.epochs_spin),
            ("Batch size", self.batch_spin),
            ("Per class in a batch", self.per_class_spin),
            ("Learning rate", self.lr_edit),
            ("Schedule", self.schedule_combo),
            ("Frozen backbone stages", self.freeze_spin),
            ("Steps per epoch (at most)", self.max_steps_spin),
            ("Classes", self.classes_edit),
            ("Seed", self.seed_spin),
            ("Device", self.device_combo),
        ):
            hyper.addRow(label, widget)
        hyper.addRow(self.validate_check)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for box in (model_box, data_box, hyper_box, self.options_box):
            layout.addWidget(box)
        layout.addStretch(1)
        self.method_combo.currentTextChanged.connect(lambda _m: self.fill_defaults())
        self.fill_defaults()

    # ----------------------------------------------------------------- defaults
    def method(self) -> str:
        return self.method_combo.currentText()

    def fill_defaults(self) -> None:
        """Fill every field with the chosen method's defaults for the chosen data's layout."""
        method = self.method()
        if not method:
            return
        config_class = get_method(method).config_class
        model_defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
        self.backbone_combo.setCurrentText(str(model_defaults.get("backbone", BACKBONES[-1])))
        self.bits_combo.setCurrentIndex(max(0, self.bits_combo.findData(model_defaults["bits"])))
        has_size = "image_size" in model_defaults
        self.image_size_spin.setEnabled(has_size)
        self.image_size_spin.setValue(int(model_defaults.get("image_size", 224)))
        values = train_defaults(method, self.dataset.layout if self.dataset else None)
        self.epochs_spin.setValue(values["epochs"])
        self.batch_spin.setValue(values["batch_size"])
        self.per_class_spin.setValue(values["per_class"])
        self.lr_edit.setText(f"{values['lr']:g}")
        self.schedule_combo.setCurrentText(values["schedule"])
        self.freeze_spin.setValue(values["freeze_blocks"])
        self.max_steps_spin.setValue(values["max_steps_per_epoch"] or 0)
        self.seed_spin.setValue(values["seed"])
        self._fill_options(dict(get_procedure(method).default_options))

    def _fill_options(self, defaults: dict[str, Any]) -> None:
        while self.options_layout.rowCount():
            self.options_layout.removeRow(0)
        self.option_widgets = {}
        self.option_defaults = defaults
        for name, value in defaults.items():
            if isinstance(value, bool):
                widget = QCheckBox()
                widget.setChecked(value)
            else:
                widget = QLineEdit(f"{value:g}" if isinstance(value, float) else str(value))
            self.option_widgets[name] = widget
            self.options_layout.addRow(name, widget)
        self.options_box.setVisible(bool(defaults))

    # ----------------------------------------------------------------- data set
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a training data set folder")
        if folder:
            self.set_data_folder(folder)

    def set_data_folder(self, folder: str | Path) -> SketchDataset | None:
        """Validate the folder now; show what it holds or what is wrong with it."""
        folder = str(folder).strip()
        self.data_edit.setText(folder)
        layout_before = self.dataset.layout if self.dataset else None
        try:
            self.dataset = load_dataset(folder) if folder else None
            self.data_error = "" if folder else "Choose a data set folder."
        except DatasetError as exc:
            self.dataset, self.data_error = None, str(exc)
        if self.dataset is not None:
            self.data_summary.setStyleSheet("")
            self.data_summary.setText(describe_dataset(self.dataset))
            if self.dataset.layout != layout_before:
                self.fill_defaults()
        else:
            self.data_summary.setStyleSheet(ERROR_STYLE)
            self.data_summary.setText(self.data_error)
        self.dataChanged.emit()
        return self.dataset

    # ----------------------------------------------------------------- the config
    def _options(self) -> dict[str, Any]:
        options = {}
        for name, widget in self.option_widgets.items():
            default = self.option_defaults[name]
            if isinstance(widget, QCheckBox):
                value: Any = widget.isChecked()
            else:
                text = widget.text().strip()
                try:
                    if default is None:  # an optional number (GDH's lam): blank or None keeps it
                        value = None if text in ("", "None") else float(text)
                    else:
                        value = type(default)(text) if isinstance(default, int | float) else text
                except ValueError:
                    message = f"Method option {name} must be a number, not '{text}'."
                    raise ConfigError(message) from None
            if value != default:
                options[name] = value
        return options

    def classes(self) -> tuple[str, ...] | None:
        names = [c.strip() for c in self.classes_edit.text().split(",") if c.strip()]
        return tuple(names) or None

    def build_config(self) -> TrainConfig:
        """The TrainConfig of these fields and the data set; raises SketchSearchError."""
        if self.dataset is None:
            raise DatasetError(self.data_error or "Choose a data set folder first.")
        model: dict[str, Any] = {
            "bits": self.bits_combo.currentData(),
            "backbone": self.backbone_combo.currentText(),
        }
        if self.image_size_spin.isEnabled():
            model["image_size"] = self.image_size_spin.value()
        make_config(self.method(), **model)  # ConfigError now, not in the training process
        try:
            lr = float(self.lr_edit.text())
        except ValueError:
            text = self.lr_edit.text()
            raise ConfigError(f"The learning rate must be a number, not '{text}'.") from None
        classes = self.classes()
        if classes:
            self.dataset.restrict_classes(classes)  # DatasetError naming unknown classes
        return TrainConfig(
            method=self.method(),
            model=model,
            options=self._options(),
            epochs=self.epochs_spin.value(),
            batch_size=self.batch_spin.value(),
            per_class=self.per_class_spin.value(),
            lr=lr,
            schedule=self.schedule_combo.currentText(),
            freeze_blocks=self.freeze_spin.value(),
            device=self.device_combo.currentText(),
            seed=self.seed_spin.value(),
            split="train" if "train" in self.dataset.splits else None,
            classes=classes,
            max_steps_per_epoch=self.max_steps_spin.value() or None,
        )
