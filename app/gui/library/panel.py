"""The library panel: photo folders, indexing progress with Cancel, and files that failed.

Add folder opens in the folder chosen last, else the user's Pictures folder, else home (never
the working directory). A folder inside one of the library's folders is already covered, and
says so. Remove asks first, naming how many photos it forgets.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, QStandardPaths, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.progress import format_eta
from engine.errors import SketchSearchError
from engine.library import Library
from engine.paths import display_path

if TYPE_CHECKING:
    from engine.indexer import IndexProgress

log = logging.getLogger(__name__)


def describe_progress(p: IndexProgress, unreadable: int | None = None) -> str:
    """One line for the progress label: count, rate and ETA. ``unreadable``: the files the
    library lists as unreadable after a finished run (files that failed before and did not
    change are not read again, so the run's own count can be smaller than that list)."""
    if p.phase == "scanning":
        return f"Looking for photos… {p.found:,} found"
    if p.phase == "encoding":
        parts = [f"Indexing {p.encoded:,} of {p.to_encode:,}"]
        if p.rate:
            parts.append(f"{p.rate:.1f} photos/s")
        if eta := format_eta(p.eta_s):
            parts.append(eta)
        return "  ·  ".join(parts)
    unread = p.failed + p.skipped
    failed = f", {unread:,} could not be read" if unread else ""
    if p.phase == "cancelled":
        return (
            f"Cancelled after {p.encoded:,} of {p.to_encode:,}{failed}. "
            "Press Index to continue where it stopped."
        )
    if unreadable is not None:
        failed = f", {unreadable:,} could not be read (listed below)" if unreadable else ""
    away = ""
    if p.unavailable_roots:
        folders = (
            "1 folder is" if p.unavailable_roots == 1 else f"{p.unavailable_roots} folders are"
        )
        away = f" {folders} not available (a drive not mounted?): their photos are kept."
    return f"Up to date: {p.found:,} photos checked, {p.encoded:,} newly indexed{failed}.{away}"


def describe_failure(path: str | Path, reason: str) -> str:
    """The file's name and why it could not be read (engine reasons often start with the name)."""
    name = Path(path).name
    return reason if reason.startswith(name) else f"{name}: {reason}"


LAST_FOLDER_KEY = "photo_dir"


def start_folder(settings: QSettings | None) -> str:
    """Where the folder dialog opens: where the last folder was added, else the user's Pictures
    folder, else home."""
    last = settings.value(LAST_FOLDER_KEY, "", str) if settings is not None else ""
    if last and Path(last).is_dir():
        return last
    pictures = QStandardPaths.standardLocations(QStandardPaths.StandardLocation.PicturesLocation)
    for folder in pictures:
        if Path(folder).is_dir():
            return folder
    return str(Path.home())


class LibraryPanel(QWidget):
    """Folders are added and removed here directly; indexing is asked for by signal."""

    indexRequested = Signal()
    cancelRequested = Signal()
    foldersChanged = Signal()
    errorOccurred = Signal(str)
    infoOccurred = Signal(str)

    def __init__(
        self,
        library: Library,
        parent: QWidget | None = None,
        settings: QSettings | None = None,
    ) -> None:
        super().__init__(parent)
        self.library = library
        self.settings = settings
        self.folder_dialog: QFileDialog | None = None  # while Add folder's dialog is open
        self.confirm_box: QMessageBox | None = None  # while Remove asks
        self.folders = QListWidget()
        self.folders.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.folders.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.folders.setToolTip("Folders whose photos are searched")
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip("Add a folder of photos: it is indexed right away")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip(
            "Forget the selected folder and its photos' codes (the files stay where they are)"
        )
        self.index_button = QPushButton("Index")
        self.index_button.setToolTip("Index new and changed photos in these folders")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress_label = QLabel("Add a folder of photos to search it.")
        self.progress_label.setWordWrap(True)
        self.failures_label = QLabel()
        self.failures = QListWidget()
        self.failures.setWordWrap(True)  # reasons are sentences; the panel is narrow
        self.failures.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.failures.setAlternatingRowColors(True)

        self.add_button.clicked.connect(self._choose_folder)
        self.remove_button.clicked.connect(self.remove_selected)
        self.index_button.clicked.connect(self.indexRequested)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.folders.currentRowChanged.connect(lambda _row: self._update_buttons())

        folder_buttons = QHBoxLayout()
        folder_buttons.addWidget(self.add_button)
        folder_buttons.addWidget(self.remove_button)
        index_buttons = QHBoxLayout()
        index_buttons.addWidget(self.index_button)
        index_buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Photo folders</b>"))
        layout.addWidget(self.folders, 1)
        layout.addLayout(folder_buttons)
        layout.addLayout(index_buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.failures_label)
        layout.addWidget(self.failures, 3)
        self._running = False
        self._unavailable: dict[str, str] = {}  # root folder -> why, from the last run
        self.reload()

    # ----------------------------------------------------------------- folders
    def reload(self) -> None:
        """Re-read folders and failures from the library."""
        self.folders.clear()
        for root in self.library.roots():
            shown = display_path(root)  # a name that is not valid UTF-8 shows escapes
            item = QListWidgetItem(shown)
            item.setData(Qt.ItemDataRole.UserRole, root)  # the exact Path (a Qt string is not)
            item.setToolTip(shown if root.is_dir() else f"{shown}\n(not available right now)")
            self.folders.addItem(item)
        self._mark_unavailable()
        self.refresh_failures()
        self._update_buttons()

    def _mark_unavailable(self) -> None:
        """Grey out the folders the last run found unavailable, with why in the tooltip."""
        for row in range(self.folders.count()):
            item = self.folders.item(row)
            why = self._unavailable.get(str(item.data(Qt.ItemDataRole.UserRole)))
            if why is None:
                if item.data(Qt.ItemDataRole.ForegroundRole) is not None:  # available again
                    item.setData(Qt.ItemDataRole.ForegroundRole, None)
                    item.setToolTip(item.text())
                continue
            item.setToolTip(
                f"{item.text()}\nNot available: {why}. Its photos are kept; Remove forgets them."
            )
            item.setForeground(self.palette().placeholderText())

    def add_folder(self, folder: str | Path) -> Path | None:
        """Add a folder (None if it cannot be); one inside a library folder is covered already
        and is not added again: the panel says so."""
        try:
            covering = self.library.covering(folder) if Path(folder).is_dir() else None
            added = self.library.add_root(folder)
        except SketchSearchError as exc:
            self.errorOccurred.emit(str(exc))
            return None
        if self.settings is not None:
            self.settings.setValue(LAST_FOLDER_KEY, str(Path(folder).expanduser().parent))
        if covering is not None:
            shown, holder = (
                display_path(Path(folder).expanduser().resolve()),
                display_path(covering),
            )
            self.infoOccurred.emit(
                f"{shown} is already in the library."
                if shown == holder
                else f"{shown} is already covered: it is inside {holder}, whose photos (those in "
                "its subfolders too) are indexed."
            )
            return added
        self.reload()
        self.foldersChanged.emit()
        return added

    def remove_selected(self) -> QMessageBox | None:
        """Ask whether to forget the selected folder, naming how many photos go; it is removed
        when the person says so (the box does not block: ``confirm_box`` while it asks)."""
        item = self.folders.currentItem()
        if item is None or self._running:
            return None
        root = item.data(Qt.ItemDataRole.UserRole)
        try:
            count = self.library.catalog.root_photo_count(root)
        except SketchSearchError as exc:
            self.errorOccurred.emit(str(exc))
            return None
        photos = "1 photo" if count == 1 else f"{count:,} photos"
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Remove the folder",
            f"Remove {item.text()} from the library?\n\nSketchSearch forgets its {photos} and "
            "their codes; searches will not find them until it is added and indexed again. "
            "The files themselves stay where they are.",
            QMessageBox.StandardButton.Cancel,
            self,
        )
        remove = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.finished.connect(lambda _r: self._confirmed(box, box.clickedButton() is remove, root))
        self.confirm_box = box
        box.open()
        return box

    def _confirmed(self, box: QMessageBox, remove: bool, root: Path) -> None:
        self.confirm_box = None
        box.deleteLater()
        if not remove or self._running:
            return
        try:
            removed = self.library.remove_root(root)
        except SketchSearchError as exc:
            self.errorOccurred.emit(str(exc))
            return
        log.info("Removed %s (%d photos forgotten)", display_path(root), removed)
        self.reload()
        self.foldersChanged.emit()

    def _choose_folder(self) -> QFileDialog:
        """Open the folder dialog (not blocking: ``folder_dialog`` while it is open)."""
        dialog = QFileDialog(self, "Add a folder of photos", start_folder(self.settings))
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.fileSelected.connect(self.add_folder)
        dialog.finished.connect(lambda _r: self._dialog_closed(dialog))
        self.folder_dialog = dialog
        dialog.open()
        return dialog

    def _dialog_closed(self, dialog: QFileDialog) -> None:
        self.folder_dialog = None
        dialog.deleteLater()

    # ----------------------------------------------------------------- indexing
    def set_running(self, running: bool) -> None:
        self._running = running
        if running:
            self.progress.setRange(0, 0)  # busy until the first count arrives
        elif self.progress.maximum() == 0:  # ended before any count: never leave it busy
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("")
        self._update_buttons()

    def set_failed(self, message: str) -> None:
        """Indexing stopped with an error: the bar stops, and the label says why."""
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("stopped")
        self.progress_label.setText(f"Indexing stopped: {message} Press Index to try again.")

    def set_progress(self, p: IndexProgress) -> None:
        unreadable = len(self.library.failures()) if p.phase == "done" else None
        self.progress_label.setText(describe_progress(p, unreadable))
        if p.phase == "encoding" and p.to_encode:
            self.progress.setRange(0, p.to_encode)
            self.progress.setValue(p.encoded)
            self.progress.setFormat("%v / %m")
        elif p.phase in ("done", "cancelled"):
            total = max(p.to_encode, 1)
            self.progress.setRange(0, total)
            self.progress.setValue(total if p.phase == "done" else p.encoded)
            self.progress.setFormat("%v / %m" if p.to_encode else "up to date")
            if p.phase == "done":
                self._unavailable = dict(p.unavailable)
                self._mark_unavailable()

    def refresh_failures(self) -> None:
        self.failures.clear()
        failures = self.library.failures()
        for failure in failures:
            shown = display_path(failure.path)
            item = QListWidgetItem(describe_failure(shown, failure.error))
            item.setData(Qt.ItemDataRole.UserRole, shown)
            item.setToolTip(f"{shown}\n{failure.error}")
            self.failures.addItem(item)
        self.failures_label.setText(
            f"<b>Could not be read</b> ({len(failures)})" if failures else "No unreadable files."
        )
        self.failures.setVisible(bool(failures))

    def _update_buttons(self) -> None:
        has_folders = self.folders.count() > 0
        self.index_button.setEnabled(has_folders and not self._running)
        self.cancel_button.setEnabled(self._running)
        self.remove_button.setEnabled(self.folders.currentItem() is not None and not self._running)
        self.add_button.setEnabled(True)
        if not has_folders and not self._running:
            self.progress_label.setText("Add a folder of photos to search it.")
