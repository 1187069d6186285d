"""The settings of a training run: method, backbone, code length, data set folder (validated as
soon as it is chosen), hyperparameters pre-filled from the method's defaults, and the device.

``TrainingForm.build_request()`` turns the fields into a ``training.TrainConfig`` (which
validates them) and the validated data set; every problem is a ``SketchSearchError`` whose
message the panel shows before anything starts.

"Start from" picks a new model (the method's pretrained backbone) or a checkpoint to fine-tune:
the installed checkpoints of the selected method (``engine.store.installed_checkpoints``, the
list the toolbar's model picker shows) or any file ("Choose file…"; a checkpoint of another
method switches the method). While a checkpoint is chosen, backbone, code length and image size
show its values and are disabled (a fine-tune keeps its architecture; ``training.finetune``);
back on "New model" they are editable again with the values they had before.

Defaults: the common fields come from ``TrainConfig``; a method's procedure may hold better ones
for a data layout in ``train_defaults`` (``{"category": {...}, "fine_grained": {...}}`` or one
flat dict); the method options (loss weights, ...) are the procedure's ``default_options``.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
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

from app.gui.train.option_fields import OptionFields
from app.gui.train.option_help import option_help
from engine.codes import SUPPORTED_BITS
from engine.errors import CheckpointError, ConfigError, DatasetError
from engine.models import (
    CheckpointInfo,
    get_method,
    list_methods,
    make_config,
    read_checkpoint_info,
)
from engine.models.base import BACKBONES
from engine.store import installed_checkpoints
from training import SketchDataset, TrainConfig, get_procedure, list_procedures, load_dataset
from training.methods import method_model_defaults, method_train_defaults

log = logging.getLogger(__name__)

ERROR_STYLE = "color: #611a15;"
NEW_MODEL = "New model (pretrained backbone)"
# model config fields with their own controls (or none): the rest are "Model options"
ARCHITECTURE_FIELDS = ("bits", "backbone", "image_size", "pretrained")
CHOOSE_FILE = "Choose file…"
_CHOOSE = "@choose-file"  # item data of the "Choose file…" entry


def trainable_methods() -> list[str]:
    return [m for m in list_procedures() if m in list_methods()]


def devices() -> list[str]:
    from engine.devices import available_devices  # torch: imported when the form is built

    return available_devices()


def train_defaults(method: str, layout: str | None) -> dict[str, Any]:
    """TrainConfig's defaults with the method's own for this layout laid over them."""
    values = TrainConfig(method=method).to_dict()
    values.update({k: v for k, v in method_train_defaults(method, layout).items() if k in values})
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
        self.start_combo = QComboBox()
        self.start_combo.setToolTip("Train a new model, or fine-tune a checkpoint")
        self.start_note = QLabel()
        self.start_note.setWordWrap(True)
        self._chosen_files: dict[str, CheckpointInfo] = {}  # by path, from "Choose file…"
        self._start_infos: dict[str, CheckpointInfo] = {}  # by path, of the listed entries
        self._own_architecture: tuple[str, int, int] | None = None  # fields before a checkpoint
        self._start_index = 0
        self._has_size = True
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
        self.options_box = OptionFields("Method options")
        self.model_options = OptionFields("Model options")
        self.model_options.setToolTip(
            "The method's network settings beyond the architecture above: the paper's ablation "
            "switches, layer sizes, ... (a checkpoint's are shown when fine-tuning)"
        )

        model_box = QGroupBox("Model")
        model_form = QFormLayout(model_box)
        model_form.addRow("Method", self.method_combo)
        model_form.addRow("Start from", self.start_combo)
        model_form.addRow(self.start_note)
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
        for box in (model_box, self.model_options, data_box, hyper_box, self.options_box):
            layout.addWidget(box)
        layout.addStretch(1)
        self.method_combo.currentTextChanged.connect(lambda _m: self.fill_defaults())
        self.start_combo.currentIndexChanged.connect(self._on_start_changed)
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
        layout = self.dataset.layout if self.dataset else None
        model_defaults.update(method_model_defaults(method, layout))
        self._has_size = "image_size" in model_defaults
        self._own_architecture = None  # the defaults below replace what the user had
        self._set_architecture(
            str(model_defaults.get("backbone", BACKBONES[-1])),
            int(model_defaults["bits"]),
            int(model_defaults.get("image_size", 224)),
        )
        self.model_options.fill(
            {k: v for k, v in model_defaults.items() if k not in ARCHITECTURE_FIELDS},
            partial(option_help, method),
        )
        self._reload_start_choices()
        values = train_defaults(method, layout)
        self.epochs_spin.setValue(values["epochs"])
        self.batch_spin.setValue(values["batch_size"])
        self.per_class_spin.setValue(values["per_class"])
        self.lr_edit.setText(f"{values['lr']:g}")
        self.schedule_combo.setCurrentText(values["schedule"])
        self.freeze_spin.setValue(values["freeze_blocks"])
        self.max_steps_spin.setValue(values["max_steps_per_epoch"] or 0)
        self.seed_spin.setValue(values["seed"])
        self.options_box.fill(
            dict(get_procedure(method).default_options), partial(option_help, method)
        )

    # ----------------------------------------------------------------- start from
    def start_checkpoint(self) -> CheckpointInfo | None:
        """The checkpoint to fine-tune, or None for a new model."""
        return self._start_infos.get(self.start_combo.currentData())

    def _architecture(self) -> tuple[str, int, int]:
        return (
            self.backbone_combo.currentText(),
            int(self.bits_combo.currentData()),
            self.image_size_spin.value(),
        )

    def _set_architecture(self, backbone: str, bits: int, image_size: int) -> None:
        self.backbone_combo.setCurrentText(backbone)
        self.bits_combo.setCurrentIndex(max(0, self.bits_combo.findData(bits)))
        self.image_size_spin.setValue(image_size)

    def _reload_start_choices(self) -> None:
        """List "New model", this method's installed and chosen checkpoints, "Choose file…";
        keep the current checkpoint if it is of this method."""
        keep = self.start_combo.currentData()
        method = self.method()
        infos = [i for i in installed_checkpoints() if i.method == method]
        infos += [i for i in self._chosen_files.values() if i.method == method]
        combo = self.start_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(NEW_MODEL, None)
        self._start_infos = {}
        for info in infos:
            path = str(info.path)
            if path in self._start_infos:
                continue
            self._start_infos[path] = info
            combo.addItem(f"{info.name} ({info.method}, {info.bits}-bit)", path)
            combo.setItemData(combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        combo.addItem(CHOOSE_FILE, _CHOOSE)
        combo.setCurrentIndex(max(0, combo.findData(keep)) if keep in self._start_infos else 0)
        combo.blockSignals(False)
        self._apply_start()

    def _on_start_changed(self, index: int) -> None:
        if self.start_combo.itemData(index) != _CHOOSE:
            self._apply_start()
            return
        path, _filter = QFileDialog.getOpenFileName(
            self, "Choose a checkpoint to fine-tune", "", "Checkpoints (*.safetensors)"
        )
        if path:
            self.choose_checkpoint_file(path)
        else:
            self._select_start(self._start_index)

    def _select_start(self, index: int) -> None:
        self.start_combo.blockSignals(True)
        self.start_combo.setCurrentIndex(index)
        self.start_combo.blockSignals(False)
        self._apply_start()

    def choose_checkpoint_file(self, path: str | Path) -> CheckpointInfo | None:
        """Fine-tune the checkpoint at ``path`` (switching to its method); None, with the reason
        shown under "Start from", if it cannot be read or its method cannot be trained here."""
        try:
            info = read_checkpoint_info(Path(path).expanduser().resolve())
            if info.method not in trainable_methods():
                raise CheckpointError(f"{info.path.name}: '{info.method}' cannot be trained here.")
        except CheckpointError as exc:
            if self.start_combo.currentData() == _CHOOSE:
                self._select_start(self._start_index)
            self.start_note.setStyleSheet(ERROR_STYLE)
            self.start_note.setText(str(exc))
            self.start_note.setVisible(True)
            return None
        self._chosen_files[str(info.path)] = info
        if info.method != self.method():
            self.method_combo.setCurrentText(info.method)  # fills defaults, reloads the list
        self._reload_start_choices()
        self._select_start(self.start_combo.findData(str(info.path)))
        return info

    def _apply_start(self) -> None:
        """Show the chosen checkpoint's architecture (fields disabled), or give the fields back."""
        info = self.start_checkpoint()
        self._start_index = self.start_combo.currentIndex()
        self.start_note.setStyleSheet("")
        if info is not None:
            if self._own_architecture is None:
                self._own_architecture = self._architecture()
            size = int(info.config.get("image_size", self.image_size_spin.value()))
            self._set_architecture(info.backbone, info.bits, size)
            self.model_options.show_values(dict(info.config))
            self.start_note.setText(
                f"Fine-tunes {info.path.name}: its weights and architecture, a fresh optimiser."
            )
            self.start_note.setToolTip(str(info.path))
        else:
            if self._own_architecture is not None:
                self._set_architecture(*self._own_architecture)
                self._own_architecture = None
            self.model_options.restore()
            self.start_note.setText("")
        self.start_note.setVisible(info is not None)
        self.backbone_combo.setEnabled(info is None)
        self.bits_combo.setEnabled(info is None)
        self.image_size_spin.setEnabled(info is None and self._has_size)
        self.model_options.setEnabled(info is None)

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
    def classes(self) -> tuple[str, ...] | None:
        names = [c.strip() for c in self.classes_edit.text().split(",") if c.strip()]
        return tuple(names) or None

    def build_config(self) -> TrainConfig:
        """The TrainConfig of these fields and the data set; raises SketchSearchError."""
        if self.dataset is None:
            raise DatasetError(self.data_error or "Choose a data set folder first.")
        start = self.start_checkpoint()
        if start is not None:  # its whole model config: the trainer checks it against the file
            model: dict[str, Any] = dict(start.config)
        else:
            model = {
                "bits": self.bits_combo.currentData(),
                "backbone": self.backbone_combo.currentText(),
            }
            if self.image_size_spin.isEnabled():
                model["image_size"] = self.image_size_spin.value()
            layout = self.dataset.layout
            recipe = method_model_defaults(self.method(), layout)
            model.update({k: v for k, v in recipe.items() if k not in ARCHITECTURE_FIELDS})
            model.update(self.model_options.values())
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
            options=self.options_box.values(),
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
            init_from=str(start.path) if start is not None else None,
        )
