"""The list of training runs (run name, date, method, status, data, metrics) with Use, Resume
and Delete for the selected one; the training panel decides what each button does.

The run's name comes first and is never cut (its column fits it); the data folder shows its
last part (the whole path in the tooltip) and the metrics take what is left."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.training_report import metric_name
from training.runs import RunRecord, list_runs

log = logging.getLogger(__name__)

COLUMNS = ("Run", "Date", "Method", "Status", "Data", "Metrics")


class RunHistory(QWidget):
    useRequested = Signal(object)  # RunRecord
    resumeRequested = Signal(object)
    deleteRequested = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runs: list[RunRecord] = []
        self.running: Path | None = None  # the folder of the run in progress
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        for column in range(len(COLUMNS) - 1):  # every column fits its text...
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)  # but this
        self.table.setWordWrap(False)
        self.table.itemSelectionChanged.connect(self.update_buttons)
        self.use_button = QPushButton("Use")
        self.resume_button = QPushButton("Resume")
        self.delete_button = QPushButton("Delete")
        self.use_button.setToolTip("Make this run's model the active one")
        self.delete_button.setToolTip("Delete the run's folder and its installed model")
        for button, signal in (
            (self.use_button, self.useRequested),
            (self.resume_button, self.resumeRequested),
            (self.delete_button, self.deleteRequested),
        ):
            button.clicked.connect(lambda _c=False, s=signal: self._emit_selected(s))
        buttons = QHBoxLayout()
        for button in (self.use_button, self.resume_button, self.delete_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

    def refresh(self, running: Path | None) -> None:
        """Re-read every run; ``running`` is the folder of the run in progress, if any."""
        self.running = running
        self.runs = list_runs(running)
        self.table.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            metrics = ", ".join(
                f"{metric_name(k)} {v:.3f}" for k, v in list(run.metrics.items())[:2]
            )
            data = Path(run.data_dir).name or run.data_dir
            cells = (run.name, run.date_text(), run.method, run.status, data, metrics)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                tip = run.data_dir if COLUMNS[column] == "Data" else str(run.checkpoint)
                item.setToolTip(f"{tip}\n{run.message}" if run.message else tip)
                self.table.setItem(row, column, item)
        self.update_buttons()

    def row_count(self) -> int:
        return self.table.rowCount()

    def status_of(self, row: int) -> str:
        return self.table.item(row, COLUMNS.index("Status")).text()

    def selected_run(self) -> RunRecord | None:
        rows = self.table.selectionModel().selectedRows()
        return self.runs[rows[0].row()] if rows else None

    def _emit_selected(self, signal) -> None:
        if (record := self.selected_run()) is not None:
            signal.emit(record)

    def update_buttons(self) -> None:
        selected = self.selected_run()
        busy = selected is not None and selected.folder == self.running
        self.use_button.setEnabled(selected is not None and not busy)
        self.delete_button.setEnabled(selected is not None and not busy)
        self.resume_button.setEnabled(
            selected is not None and self.running is None and selected.can_resume
        )
