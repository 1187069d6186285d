"""The results grid: a list model of search results, thumbnails that arrive lazily, and the
actions on a result (open, reveal in the file manager, more like this photo, copy path, larger
preview).

Each tile shows the thumbnail, the file name (elided in the middle; the full path in the
tooltip) and its rank and Hamming distance; the tile under the pointer shows buttons for Open,
Folder (reveal in the file manager) and Similar (search for photos like it). The view tells
when the pointer enters and leaves it (``hovered``, ``pointerLeft``), so the window can hold
back new results while a person is looking at the grid.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QProcess,
    QRect,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QAction,
    QColor,
    QDesktopServices,
    QGuiApplication,
    QIcon,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPixmap,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QLabel,
    QListView,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from app.gui.search.thumbnails import ThumbnailLoader
from engine.paths import display_path

if TYPE_CHECKING:
    from engine.searcher import SearchResponse, SearchResult

log = logging.getLogger(__name__)

THUMB_SIZE = 160
PREVIEW_SIZE = 480
HOVER_PREVIEW_MS = 800
PathRole = Qt.ItemDataRole.UserRole + 1  # the path as text to show (escapes for non-UTF-8 bytes)
ResultRole = Qt.ItemDataRole.UserRole + 2  # the SearchResult: its exact path for the actions
MetaRole = Qt.ItemDataRole.UserRole + 3  # "#3 · d 25/64": rank and Hamming distance
TILE_PADDING = 6
TILE_ACTIONS = (  # (name, button text, tooltip) of the buttons on the tile under the pointer
    ("open", "Open", "Open the photo"),
    ("reveal", "Folder", "Show it in its folder"),
    ("similar", "Similar", "More like this photo: search with it as the query"),
)


def _exact_path(index: QModelIndex) -> Path | None:
    """The result's path as the file system has it: a Python object passes through Qt
    unchanged, a str would lose the bytes of a name that is not valid UTF-8."""
    result = index.data(ResultRole)
    return result.path if result is not None else None


def file_url(path: Path) -> QUrl:
    """A file URL of the path's bytes, percent-encoded: exact also for a name that is not valid
    UTF-8, which ``QUrl.fromLocalFile`` would change."""
    return QUrl.fromEncoded(Path(path).absolute().as_uri().encode("ascii"))


class ResultsModel(QAbstractListModel):
    """Rows are SearchResults; the decoration is the thumbnail once the loader has it."""

    def __init__(self, thumbnails: ThumbnailLoader, parent=None) -> None:
        super().__init__(parent)
        self._thumbnails = thumbnails
        self._results: tuple[SearchResult, ...] = ()
        self._row_of: dict[str, int] = {}
        self.bits = 0
        self.asymmetric = False  # ranked by the asymmetric distance (result.score)
        self._placeholder = QPixmap(THUMB_SIZE, THUMB_SIZE)
        self._placeholder.fill(QColor(235, 235, 235))
        self._pixmaps: dict[str, QPixmap] = {}
        thumbnails.ready.connect(self._on_thumbnail)
        thumbnails.failed.connect(lambda path, size, message: self._on_thumbnail(path, size))

    def set_response(self, response: SearchResponse | None) -> None:
        self.beginResetModel()
        self._thumbnails.cancel_pending()
        self._results = response.results if response else ()
        self.bits = response.bits if response else 0
        self.asymmetric = bool(response and response.asymmetric)
        self._row_of = {str(r.path): i for i, r in enumerate(self._results)}
        self._pixmaps = {k: v for k, v in self._pixmaps.items() if k in self._row_of}
        self.endResetModel()

    def results(self) -> tuple[SearchResult, ...]:
        return self._results

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._results)

    def data(self, index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self._results):
            return None
        result = self._results[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return display_path(result.path.name)
        if role == MetaRole:
            if self.asymmetric and result.score is not None:
                return f"#{result.rank}  ·  d {result.score:.1f}/{self.bits}"
            return f"#{result.rank}  ·  d {result.distance}/{self.bits}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self._pixmap(str(result.path))
        if role == Qt.ItemDataRole.ToolTipRole:
            error = self._thumbnails.error(result.path, THUMB_SIZE)
            note = f"\nCannot show a preview: {error}" if error else ""
            ranked = (
                f", {result.score:.2f} from the sketch itself (asymmetric distance)"
                if self.asymmetric and result.score is not None
                else ""
            )
            return (
                f"{display_path(result.path)}\nRank {result.rank}, Hamming distance "
                f"{result.distance} of {self.bits} bits{ranked}{note}\n"
                "Double-click or Enter: open · Space: larger preview · right-click: more"
            )
        if role == PathRole:
            return display_path(result.path)
        if role == ResultRole:
            return result
        return None

    def _pixmap(self, path: str) -> QPixmap:
        pixmap = self._pixmaps.get(path)
        if pixmap is None:
            image = self._thumbnails.get(path, THUMB_SIZE)
            if image is None:
                return self._placeholder
            pixmap = self._pixmaps[path] = QPixmap.fromImage(image)
        return pixmap

    def _on_thumbnail(self, path: str, size: int) -> None:
        row = self._row_of.get(path)
        if row is not None and size == THUMB_SIZE:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


def tile_height(view: QWidget) -> int:
    line = view.fontMetrics().height()
    return TILE_PADDING + THUMB_SIZE + 4 + 2 * line + TILE_PADDING


def action_rects(tile: QRect, view: QWidget) -> dict[str, QRect]:
    """Where the buttons of a tile are: a row along the bottom of its thumbnail."""
    metrics = view.fontMetrics()
    height = metrics.height() + 6
    widths = [metrics.horizontalAdvance(text) + 12 for _, text, _ in TILE_ACTIONS]
    x = tile.center().x() - (sum(widths) + 4 * (len(widths) - 1)) // 2
    y = tile.top() + TILE_PADDING + THUMB_SIZE - height - 4
    rects = {}
    for (name, _, _), width in zip(TILE_ACTIONS, widths, strict=True):
        rects[name] = QRect(x, y, width, height)
        x += width + 4
    return rects


class ResultDelegate(QStyledItemDelegate):
    """Paints a tile (thumbnail, elided file name, rank and distance, and the action buttons
    under the pointer) and turns clicks on its buttons into ``actionTriggered``."""

    actionTriggered = Signal(str, QModelIndex)  # the TILE_ACTIONS name, the tile's index

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        view = option.widget
        style = view.style() if view is not None else QApplication.style()
        background = QStyleOptionViewItem(option)
        self.initStyleOption(background, index)
        background.text, background.icon = "", QIcon()  # painted below, in their places
        style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, background, painter, view)
        rect = option.rect
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            x = rect.center().x() - pixmap.width() // 2
            y = rect.top() + TILE_PADDING + (THUMB_SIZE - pixmap.height()) // 2
            painter.drawPixmap(x, y, pixmap)
        metrics = option.fontMetrics
        text_rect = QRect(
            rect.left() + TILE_PADDING,
            rect.top() + TILE_PADDING + THUMB_SIZE + 4,
            rect.width() - 2 * TILE_PADDING,
            metrics.height(),
        )
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        role = (
            option.palette.ColorRole.HighlightedText if selected else option.palette.ColorRole.Text
        )
        painter.save()
        painter.setPen(option.palette.color(role))
        name = metrics.elidedText(
            str(index.data(Qt.ItemDataRole.DisplayRole) or ""),
            Qt.TextElideMode.ElideMiddle,
            text_rect.width(),
        )
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter, name)
        if not selected:
            painter.setPen(option.palette.color(option.palette.ColorRole.PlaceholderText))
        painter.drawText(
            text_rect.translated(0, metrics.height()),
            Qt.AlignmentFlag.AlignHCenter,
            str(index.data(MetaRole) or ""),
        )
        if option.state & QStyle.StateFlag.State_MouseOver and view is not None:
            self._paint_buttons(painter, rect, view)
        painter.restore()

    def _paint_buttons(self, painter: QPainter, rect: QRect, view: QWidget) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        texts = {name: text for name, text, _ in TILE_ACTIONS}
        for name, button in action_rects(rect, view).items():
            painter.setPen(QColor(255, 255, 255, 230))
            painter.setBrush(QColor(30, 30, 30, 190))
            painter.drawRoundedRect(button, 4, 4)
            painter.drawText(button, Qt.AlignmentFlag.AlignCenter, texts[name])

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        view = option.widget
        return QSize(THUMB_SIZE + 2 * TILE_PADDING, tile_height(view) if view else THUMB_SIZE + 40)

    def editorEvent(self, event, model, option: QStyleOptionViewItem, index: QModelIndex) -> bool:
        kind = event.type()
        if kind not in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease):
            return super().editorEvent(event, model, option, index)
        if not isinstance(event, QMouseEvent) or event.button() != Qt.MouseButton.LeftButton:
            return super().editorEvent(event, model, option, index)
        if option.widget is None:
            return False
        pos = event.position().toPoint()
        for name, button in action_rects(option.rect, option.widget).items():
            if button.contains(pos):
                if kind == QEvent.Type.MouseButtonRelease:
                    self.actionTriggered.emit(name, QModelIndex(index))
                return True  # a click on a button neither selects nor opens the tile
        return super().editorEvent(event, model, option, index)


class PreviewPopup(QLabel):
    """A larger image of one result, shown beside the grid (Space or hovering)."""

    def __init__(self, thumbnails: ThumbnailLoader, parent: QWidget) -> None:
        super().__init__(parent, Qt.WindowType.ToolTip)
        self._thumbnails = thumbnails
        self._path: str | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setStyleSheet("background: #222; color: #eee; padding: 6px; border: 1px solid #555;")
        thumbnails.ready.connect(self._on_ready)

    def show_for(self, path: str, anchor: QPoint) -> None:
        self._path = path
        image = self._thumbnails.get(path, PREVIEW_SIZE)
        if image is not None:
            self.setPixmap(QPixmap.fromImage(image))
        else:
            self.setText(f"Loading {Path(path).name}…")
        self.adjustSize()
        self.move(anchor)
        self.show()

    def current_path(self) -> str | None:
        return self._path if self.isVisible() else None

    def _on_ready(self, path: str, size: int) -> None:
        if path == self._path and size == PREVIEW_SIZE and self.isVisible():
            self.setPixmap(QPixmap.fromImage(self._thumbnails.get(path, PREVIEW_SIZE)))
            self.adjustSize()


class ResultsView(QListView):
    """Grid of results; Enter/double-click opens, Space previews, the tile's buttons and the
    context menu do the rest.

    When there is nothing to show, ``empty_text`` tells the user what to do.
    """

    errorOccurred = Signal(str)
    moreLikeRequested = Signal(object)  # the exact Path of a result to search by
    pointerLeft = Signal()  # the pointer left the grid (and no menu or preview holds it)

    def __init__(self, thumbnails: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.delegate = ResultDelegate(self)
        self.delegate.actionTriggered.connect(self._on_tile_action)
        self.setItemDelegate(self.delegate)
        self.setGridSize(QSize(THUMB_SIZE + 16, tile_height(self) + 4))
        self.setSpacing(4)
        self.setMouseTracking(True)
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_Hover, True)
        self.hovered = False  # the pointer is over the grid
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.activated.connect(self.open_index)
        self.empty_text = ""
        self.preview = PreviewPopup(thumbnails, self)
        self._hovered = QPersistentModelIndex()
        self._hover_timer = QTimer(self, singleShot=True, interval=HOVER_PREVIEW_MS)
        self._hover_timer.timeout.connect(self._preview_hovered)
        self.entered.connect(self._on_entered)

    def resizeEvent(self, event) -> None:
        """Spread the columns over the whole width instead of leaving a gap on the right."""
        super().resizeEvent(event)
        cell = THUMB_SIZE + 16
        width = self.viewport().width() - 2 * self.spacing()
        columns = max(1, width // cell)
        self.setGridSize(QSize(max(cell, width // columns), tile_height(self) + 4))

    def set_empty_text(self, text: str) -> None:
        self.empty_text = text
        self.viewport().update()

    # ----------------------------------------------------------------- actions
    def open_index(self, index: QModelIndex) -> None:
        path = _exact_path(index)
        if path and not QDesktopServices.openUrl(file_url(path)):
            self.errorOccurred.emit(f"No application could open {display_path(path)}.")

    def reveal_index(self, index: QModelIndex) -> None:
        path = _exact_path(index)
        if not path:
            return
        if sys.platform == "darwin":
            ok = QProcess.startDetached("open", ["-R", str(path)])
        elif sys.platform == "win32":
            ok = QProcess.startDetached("explorer", [f"/select,{Path(path)}"])
        else:  # no portable "select this file"; open its folder
            ok = QDesktopServices.openUrl(file_url(Path(path).parent))
        if not ok:
            self.errorOccurred.emit(f"Could not open the folder of {display_path(path)}.")

    def more_like(self, index: QModelIndex) -> None:
        path = _exact_path(index)
        if path:
            self.moreLikeRequested.emit(path)

    def _on_tile_action(self, name: str, index: QModelIndex) -> None:
        {"open": self.open_index, "reveal": self.reveal_index, "similar": self.more_like}[name](
            index
        )

    def copy_path(self, index: QModelIndex) -> None:
        path = index.data(PathRole)
        if path:
            QGuiApplication.clipboard().setText(path)

    def toggle_preview(self) -> None:
        if self.preview.isVisible():
            self.preview.hide()
            return
        index = self.currentIndex()
        if index.isValid():
            self._show_preview(index)

    # ----------------------------------------------------------------- events
    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self.open_index(self.currentIndex())
        elif key == Qt.Key.Key_Space:
            self.toggle_preview()
        elif key == Qt.Key.Key_Escape and self.preview.isVisible():
            self.preview.hide()
        else:
            super().keyPressEvent(event)
            if self.preview.isVisible() and self.currentIndex().isValid():
                self._show_preview(self.currentIndex())  # the preview follows the arrow keys

    def enterEvent(self, event) -> None:
        self.hovered = True
        super().enterEvent(event)

    def leaveEvent(self, event) -> None:
        self._hover_timer.stop()
        if self.preview.isVisible() and not self.hasFocus():
            self.preview.hide()
        super().leaveEvent(event)
        self.hovered = False
        self.pointerLeft.emit()

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        if self.model() is not None and self.model().rowCount() == 0 and self.empty_text:
            painter = QPainter(self.viewport())
            painter.setPen(QColor(110, 110, 110))
            rect = self.viewport().rect().adjusted(24, 24, -24, -24)
            painter.drawText(
                rect, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.empty_text
            )
            painter.end()

    def _on_entered(self, index: QModelIndex) -> None:
        self._hovered = QPersistentModelIndex(index)
        self._hover_timer.start()

    def _preview_hovered(self) -> None:
        if self._hovered.isValid() and self.underMouse():
            self._show_preview(QModelIndex(self._hovered))

    def _show_preview(self, index: QModelIndex) -> None:
        rect = self.visualRect(index)
        anchor = self.viewport().mapToGlobal(rect.topRight() + QPoint(8, 0))
        self.preview.show_for(str(_exact_path(index)), anchor)

    def _context_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if not index.isValid():
            return
        menu = QMenu(self)
        for text, slot in (
            ("Open", self.open_index),
            ("Show in folder", self.reveal_index),
            ("More like this photo", self.more_like),
            ("Copy path", self.copy_path),
        ):
            action = QAction(text, menu)
            action.triggered.connect(lambda checked=False, s=slot: s(index))
            menu.addAction(action)
        menu.addAction("Preview (Space)", lambda: self._show_preview(index))
        menu.exec(self.viewport().mapToGlobal(pos))
