"""The training panel: settings, Start/Cancel/Resume, live progress and curves, the evaluation
report beside the active model's, "Use this model", and the history of runs. For a method that
can imagine (GDH), a strip shows after each epoch what its generator makes of a few fixed sketches
(``app.gui.train.imagine_strip``); it is hidden for the other methods.

Training runs in a child process (``app.training_process``), so a crash or out-of-memory in
it never takes the app down; a QTimer polls its queue of events. A child that dies is reported
with its logs, and its last checkpoint kept for Resume. The active model's comparison figures
are computed on the app's thread pool (``JobRunner``), like indexing.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.gui.library.model_control import ModelControl
from app.gui.library.panel import describe_progress
from app.gui.train.curve_plot import CurvePlot
from app.gui.train.form import ERROR_STYLE, TrainingForm
from app.gui.train.history import RunHistory
from app.gui.train.imagine_strip import ImagineStrip
from app.gui.workers import JobRunner
from app.training_process import TrainingProcess, TrainingRequest, describe_exit
from app.training_report import comparison_html, describe_training, metric_name
from engine.errors import SketchSearchError
from engine.models import get_method
from training import EvalConfig, TrainProgress, evaluate
from training.runs import RunRecord, delete_run, install_run, new_run, read_run, read_step_losses

log = logging.getLogger(__name__)

POLL_MS = 100


def can_imagine(method: str) -> bool:
    """Whether ``method``'s models have a generator whose photos can be shown (GDH)."""
    try:
        return bool(get_method(method).can_imagine)
    except SketchSearchError:  # a run of a method this version does not know
        return False


class TrainingPanel(QWidget):
    errorOccurred = Signal(str)
    progressed = Signal(object)  # TrainProgress
    runEnded = Signal(object)  # the RunRecord, once its process has exited
    reportReady = Signal()  # the comparison with the active model is complete
    previewed = Signal(object)  # a "preview" payload of the child, once shown

    def __init__(self, models: ModelControl, runner: JobRunner, parent: QWidget | None = None):
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Train a model")
        self.models = models
        self.runner = runner
        self.process: TrainingProcess | None = None
        self.record: RunRecord | None = None  # the run shown (running or last)
        self.child_info: dict[str, Any] = {}
        self._using: Path | None = None
        self._last_progress: TrainProgress | None = None
        self._timer = QTimer(self, interval=POLL_MS)
        self._timer.timeout.connect(self.poll)

        self.form = TrainingForm()
        self.form.dataChanged.connect(self._update_buttons)
        form_scroll = QScrollArea()
        form_scroll.setWidget(self.form)
        form_scroll.setWidgetResizable(True)
        form_scroll.setMinimumWidth(360)
        self.start_button = QPushButton("Start")
        self.cancel_button = QPushButton("Cancel")
        self.resume_button = QPushButton("Resume")
        self.cancel_button.setToolTip("Stop after this step; the checkpoint at that step is kept")
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(lambda: self.resume())
        self.status_label = QLabel("Choose a data set folder, then press Start.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress_label = QLabel("")
        self.progress_bar = QProgressBar()
        self.loss_plot = CurvePlot("Loss terms", "step")
        self.metric_plot = CurvePlot("Validation per epoch", "epoch")
        self.imagine_strip = ImagineStrip()
        self.imagine_strip.hide()  # until a run of a method that can imagine starts
        self.report_view = QTextBrowser()
        self.report_view.setMinimumHeight(120)
        self.use_button = QPushButton("Use this model")
        self.use_button.setToolTip("Make it the active model and encode your photos for it")
        self.use_button.clicked.connect(lambda: self.use_model())
        self.use_label = QLabel("")
        self.use_label.setWordWrap(True)
        self.history = RunHistory()
        self.history.useRequested.connect(self.use_model)
        self.history.resumeRequested.connect(self.resume)
        self.history.deleteRequested.connect(self.delete)
        self._build_layout(form_scroll)
        models.index_job.progressed.connect(self._on_index_progress)
        models.index_job.finished.connect(self._on_index_finished)
        models.modelChanged.connect(self._update_buttons)
        self.refresh_history()
        self.resize(1200, 820)

    def _build_layout(self, form_scroll: QScrollArea) -> None:
        buttons = QHBoxLayout()
        for button in (self.start_button, self.cancel_button, self.resume_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.metric_plot)
        use_row = QHBoxLayout()
        use_row.addWidget(self.use_button)
        use_row.addWidget(self.use_label, 1)
        right = QWidget()
        column = QVBoxLayout(right)
        column.addLayout(buttons)
        for widget in (self.status_label, self.progress_label, self.progress_bar):
            column.addWidget(widget)
        column.addLayout(plots, 3)
        column.addWidget(self.imagine_strip)
        column.addWidget(QLabel("<b>Evaluation</b>"))
        column.addWidget(self.report_view, 2)
        column.addLayout(use_row)
        column.addWidget(QLabel("<b>Runs</b>"))
        column.addWidget(self.history, 2)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(form_scroll)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        QVBoxLayout(self).addWidget(splitter)

    # ----------------------------------------------------------------- starting and stopping
    def is_running(self) -> bool:
        return self.process is not None

    def start(self) -> bool:
        """Start a new run with the form's settings; any problem is shown before anything runs."""
        if self.is_running():
            return False
        try:
            config = self.form.build_config()
        except SketchSearchError as exc:
            self._show_error(str(exc))
            return False
        record = new_run(
            config.method,
            self.form.dataset.root,
            config.to_dict(),
            self.form.validate_check.isChecked(),
        )
        self._launch(record, resume=False)
        return True

    def resume(self, record: RunRecord | None = None) -> bool:
        record = record or self.record
        if self.is_running() or record is None or not record.can_resume:
            return False
        self._launch(record, resume=True)
        return True

    def _launch(self, record: RunRecord, resume: bool) -> None:
        self.record = record
        self.child_info = {}
        record.status, record.message = "running", ""
        record.save()
        self.loss_plot.clear()
        self.metric_plot.clear()
        self.report_view.clear()
        self._last_progress = None
        self.imagine_strip.clear()
        self.imagine_strip.setVisible(can_imagine(record.config.get("method", "")))
        if resume:
            for step, losses in read_step_losses(record):
                for name, value in losses.items():
                    self.loss_plot.add_point(name, step, value)
            for entry in record.validation:
                self._plot_validation(entry)
        request = TrainingRequest(
            config=record.config,
            data_dir=record.data_dir,
            out=str(record.checkpoint),
            log_file=str(record.child_log),
            resume=str(record.checkpoint) if resume else None,
            record=str(record.folder),
            validate_each_epoch=record.validate,
        )
        self.process = TrainingProcess(request)
        self.process.start()
        self.status_label.setStyleSheet("")
        verb = "Resuming" if resume else "Starting"
        self.status_label.setText(f"{verb} {record.name}: the training process is starting…")
        self.progress_bar.setRange(0, 0)
        self._timer.start()
        self.refresh_history()

    def cancel(self) -> None:
        if self.process is not None:
            self.process.cancel()
            self.status_label.setText("Cancelling: the run stops after this step…")
            self.progress_label.setText(self._stopped_line("stopping after this step"))

    def _stopped_line(self, note: str) -> str:
        """Where the run is, with ``note`` instead of a rate and a time left (it is stopping
        or stopped: an ETA would be a promise nothing keeps)."""
        p = self._last_progress
        if p is None or p.phase == "prepare":
            return note
        return f"Epoch {p.epoch}/{p.epochs}  ·  step {p.global_step}/{p.total_steps}  ·  {note}"

    # ----------------------------------------------------------------- events from the child
    def poll(self) -> None:
        process = self.process
        if process is None:
            return
        for kind, payload in process.poll():
            getattr(self, f"_on_{kind}")(payload)
        if process.is_alive():
            return
        for kind, payload in process.poll():  # what it sent just before exiting
            getattr(self, f"_on_{kind}")(payload)
        if not process.finished:
            self._on_died(process.exitcode)
        self._end_process()

    def _on_started(self, info: dict[str, Any]) -> None:
        self.child_info = info
        self.status_label.setText(f"Training {self.record.name} (process {info['pid']}).")

    def _on_progress(self, values: dict[str, Any]) -> None:
        p = TrainProgress(**values)
        self._last_progress = p
        if self.process is not None and self.process.cancel_event.is_set():
            self.progress_label.setText(self._stopped_line("stopping after this step"))
        else:
            self.progress_label.setText(describe_training(p))
        if p.phase == "prepare":
            self.progress_bar.setRange(0, max(1, p.steps_per_epoch))
            self.progress_bar.setValue(p.step)
        else:
            self.progress_bar.setRange(0, max(1, p.total_steps))
            self.progress_bar.setValue(p.global_step)
        if p.phase == "step":
            for name, value in p.losses.items():
                self.loss_plot.add_point(name, p.global_step, value)
        if p.phase == "epoch":
            for name, value in p.metrics.items():
                self.metric_plot.add_point(metric_name(name), p.epoch, value)
        self.progressed.emit(p)

    def _plot_validation(self, entry: dict[str, Any]) -> None:
        for name, value in entry["metrics"].items():
            self.metric_plot.add_point(f"val {metric_name(name)}", entry["epoch"], value)

    def _reread_record(self) -> None:
        """The run's record as the training process has just written it."""
        try:
            self.record = read_run(self.record.folder)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("Could not read the record of %s: %s", self.record.name, exc)

    def _on_validation(self, entry: dict[str, Any]) -> None:
        self._reread_record()
        self._plot_validation(entry)

    def _on_preview(self, payload: dict[str, Any]) -> None:
        self.imagine_strip.show_preview(payload)
        self.previewed.emit(payload)

    def _on_trained(self, result: dict[str, Any]) -> None:
        self._reread_record()
        if result["cancelled"]:
            self.status_label.setText(self.record.message)
            self.progress_label.setText(self._stopped_line("cancelled, checkpoint saved"))
        else:
            self.status_label.setText("Training done; evaluating the new model…")

    def _on_eval_progress(self, p: dict[str, Any]) -> None:
        self.progress_label.setText(f"Evaluating: {p['stage']} {p['done']}/{p['total']}")
        self.progress_bar.setRange(0, max(1, p["total"]))
        self.progress_bar.setValue(p["done"])

    def _on_evaluated(self, report: dict[str, Any]) -> None:
        self._reread_record()
        self.status_label.setText(f"{self.record.name} is trained and evaluated.")
        proto = report.get("protocol", {})
        self.progress_label.setText(
            f"Evaluated on {proto.get('queries', '?')} sketch queries and a gallery of "
            f"{proto.get('gallery', '?')} photos (split: {proto.get('split', '?')})."
        )
        self._compare_with_active(self.record)

    def _on_failed(self, error: dict[str, Any]) -> None:
        log.error("Training failed: %s", error["traceback"])
        self._reread_record()
        if self.record.status == "running":  # it failed before its run began
            self.record.status, self.record.message = "failed", error["error"]
            self.record.save()
        self._show_error(f"Training failed: {error['error']} (log: {self.record.child_log})")

    def _on_finished(self, _payload: dict[str, Any]) -> None:
        pass  # the process exits next; poll() ends it

    def _on_died(self, exitcode: int | None) -> None:
        self._reread_record()
        record = self.record
        record.status = "interrupted"
        kept = (
            f"The last checkpoint is kept: press Resume to continue from {record.checkpoint.name}."
            if record.can_resume
            else "It had not saved a checkpoint yet."
        )
        record.message = (
            f"The training process stopped unexpectedly ({describe_exit(exitcode)}). "
            f"Its logs: {record.child_log} and {record.train_log}. {kept}"
        )
        record.save()
        self._show_error(record.message)

    def _end_process(self) -> None:
        self._timer.stop()
        self.process.close()
        self.process = None
        self._reread_record()  # the child's last word
        if self.record.status == "running":
            self.record.status = "interrupted"
            self.record.save()
        if self.record.status != "done":
            self.progress_bar.setRange(0, 1)
            if self.record.status != "cancelled":  # died or failed: no time left to promise
                self.progress_label.setText(self._stopped_line(f"stopped ({self.record.status})"))
        self.refresh_history()
        self.runEnded.emit(self.record)

    def _show_error(self, text: str) -> None:
        self.status_label.setStyleSheet(ERROR_STYLE)
        self.status_label.setText(text)
        self.errorOccurred.emit(text)
        self._update_buttons()

    # ----------------------------------------------------------------- the report
    def _compare_with_active(self, record: RunRecord) -> None:
        active = self.models.active
        name = self.models.describe_active() if active else "no active model"
        self.report_view.setHtml(comparison_html(record.report, None, name))
        if active is None:
            self.report_view.setHtml(comparison_html(record.report, {}, name))
            self.reportReady.emit()
            return
        classes = record.report["protocol"].get("classes")
        config = EvalConfig(classes=tuple(classes) if classes else None, baseline=False)
        cancel = threading.Event()
        self.runner.track_cancel(cancel)

        def done(report) -> None:
            self.report_view.setHtml(comparison_html(record.report, report.to_json(), name))
            self.reportReady.emit()

        def failed(exc: BaseException) -> None:
            self.report_view.setHtml(comparison_html(record.report, {}, name))
            self.errorOccurred.emit(f"Could not measure the active model: {exc}")

        slots = {
            "returned": done,
            "errored": failed,
            "finished": lambda: self.runner.untrack_cancel(cancel),
        }
        self.runner.run_generator(evaluate, active.model, record.data_dir, config, cancel, on=slots)

    # ----------------------------------------------------------------- using a model
    def use_model(self, record: RunRecord | None = None) -> Path | None:
        """Install the run's checkpoint, make it active; the library is encoded for it."""
        record = record or self.record
        if record is None or (self.is_running() and record is self.record):
            return None
        try:
            path = install_run(record)
        except OSError as exc:
            self._show_error(f"Could not install {record.name}: {exc}")
            return None
        self._using = path
        self.use_label.setText(f"Loading {path.name}; your photos are encoded for it next…")
        self.models.reload_choices()
        self.models.switch(str(path))
        self.refresh_history()
        return path

    def _on_index_progress(self, update) -> None:
        if self._using is not None:
            self.use_label.setText(describe_progress(update.progress))

    def _on_index_finished(self, last) -> None:
        active = self.models.active
        if self._using is not None and active is not None and active.spec == str(self._using):
            done = describe_progress(last) if last is not None else "Nothing to encode."
            self.use_label.setText(f"{self._using.name} is the active model. {done}")
            self._using = None

    # ----------------------------------------------------------------- history
    def refresh_history(self) -> None:
        self.history.refresh(self.record.folder if self.is_running() else None)
        self._update_buttons()

    def delete(self, record: RunRecord | None, confirm: bool = True) -> bool:
        if record is None or (self.is_running() and record.folder == self.record.folder):
            return False
        active = self.models.active
        if active is not None and record.installed and active.spec == record.installed:
            self._show_error(f"{record.name} is the active model; switch to another one first.")
            return False
        if confirm:
            answer = QMessageBox.question(
                self, "Delete the run", f"Delete {record.name}, its checkpoint and its logs?"
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        delete_run(record)
        if self.record is not None and self.record.folder == record.folder:
            self.record = None
        self.models.reload_choices()
        self.refresh_history()
        return True

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.start_button.setEnabled(not running and self.form.dataset is not None)
        self.cancel_button.setEnabled(running)
        current = self.record
        self.resume_button.setEnabled(not running and current is not None and current.can_resume)
        self.use_button.setEnabled(
            not running and current is not None and current.checkpoint.is_file()
        )

    # ----------------------------------------------------------------- closing
    def confirm_close(self) -> bool:
        """Ask whether to stop a running training; False keeps the app open."""
        if not self.is_running() or self.process.finished:
            return True
        answer = QMessageBox.question(
            self,
            "A model is training",
            "Stop the training and close? The checkpoint of the last step is kept, and the run "
            "can be resumed later from Train ▸ Runs.",
        )
        return answer == QMessageBox.StandardButton.Yes

    def shutdown(self, timeout_s: float = 15.0) -> None:
        """Stop a running child (it saves a checkpoint first) and wait for it."""
        self._timer.stop()
        if self.process is None:
            return
        self.process.cancel()
        self.process.stop(timeout_s)
        for kind, payload in self.process.poll():
            getattr(self, f"_on_{kind}")(payload)
        self._reread_record()
        if not self.process.finished and self.record.status == "running":
            self.record.status = "interrupted"
            self.record.save()
        self.process.close()
        self.process = None
