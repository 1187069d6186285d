"""The main window's actions: the menu bar (every action, with its shortcut) and two toolbars,
Sketch (open, paste, pen, eraser, width, undo, redo, clear) and Search (the model, Train, the
number of results, Re-rank, Expand, and Imagine for models that can). "As photo" shows above
the canvas while a picture is open (and in the Edit menu).

Saving a PNG or the strokes lives in the File menu only: the toolbars hold what is used while
drawing and searching, so both fit in one row at 1024 pixels and nothing hides in an overflow.
"""

from __future__ import annotations

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QSpinBox, QToolBar

from engine.defaults import DEFAULT_EXPAND

RERANK_TIP = "Re-order the top 100 by the model's exact distance"
EXPAND_TIP = (
    "Query expansion: move your sketch towards its N nearest photos and rank again "
    "(off: search with the sketch alone)"
)


class WindowActions:
    """Mixin of ``MainWindow``: builds its actions, menus and toolbars (``_build_actions``)."""

    def _action(self: QMainWindow, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if isinstance(shortcut, QKeySequence.StandardKey):
            action.setShortcuts(shortcut)  # every binding the platform has
        elif shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        action.setToolTip(f"{tip or text} ({keys})" if keys else tip or text)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self._build_sketch_actions()
        self._build_search_actions()
        self._build_menus()
        self._build_toolbars()

    def _build_sketch_actions(self) -> None:
        stack = self.canvas.undo_stack
        self.undo_action = self._action("Undo", stack.undo, QKeySequence.StandardKey.Undo)
        self.redo_action = self._action("Redo", stack.redo)
        stack.canUndoChanged.connect(self.undo_action.setEnabled)
        stack.canRedoChanged.connect(self.redo_action.setEnabled)
        self.undo_action.setEnabled(False)
        self.redo_action.setEnabled(False)
        redo_keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Redo)
        for extra in ("Ctrl+Shift+Z", "Ctrl+Y"):  # both, whatever the platform's standard is
            if QKeySequence(extra) not in redo_keys:
                redo_keys.append(QKeySequence(extra))
        self.redo_action.setShortcuts(redo_keys)
        self.redo_action.setToolTip(f"Redo ({redo_keys[0].toString()})")
        self.open_action = self._action(
            "Open…",
            self._choose_sketch,
            QKeySequence.StandardKey.Open,
            "Open a sketch, a strokes file or a photo to search with",
        )
        self.save_png_action = self._action("Save PNG…", self._choose_png, "Ctrl+S")
        self.save_strokes_action = self._action(
            "Save strokes…", self._choose_strokes, "Ctrl+Shift+S"
        )
        self.paste_action = self._action(
            "Paste",
            self.paste,
            QKeySequence.StandardKey.Paste,
            "Search with the clipboard's image: a sketch, or a photo to find more like it",
        )
        self.clear_action = self._action("Clear", self.canvas.clear, "Ctrl+Backspace")
        self.pen_action = self._action("Pen", lambda: self._set_eraser(False), "P")
        self.eraser_action = self._action("Eraser", lambda: self._set_eraser(True), "E")
        tools = QActionGroup(self)
        for action in (self.pen_action, self.eraser_action):
            action.setCheckable(True)
            tools.addAction(action)
        self.pen_action.setChecked(True)
        self.photo_action = self._action(
            "As photo",
            self.canvas.set_photo_query,
            tip="Search with the opened picture as a photo: photos that look like it "
            "(off: search with it as a sketch)",
        )
        self.photo_action.setCheckable(True)
        self.photo_action.setEnabled(False)  # only while a picture is open
        self.width_spin = QSpinBox(minimum=1, maximum=40, value=3, suffix=" px")
        self.width_spin.setToolTip("Pen width")
        self.width_spin.valueChanged.connect(lambda v: setattr(self.canvas, "pen_width", float(v)))

    def _build_search_actions(self) -> None:
        self.count_spin = QSpinBox(minimum=1, maximum=1000, value=50, singleStep=10)
        self.count_spin.setToolTip("How many results to show")
        self.count_spin.valueChanged.connect(self.search.set_count)
        self.rerank_action = self._action("Re-rank", self.search.set_rerank, tip=RERANK_TIP)
        self.rerank_action.setCheckable(True)
        self.rerank_action.setEnabled(False)  # until a model that can re-rank is active
        self.expand_spin = QSpinBox(minimum=0, maximum=50, value=DEFAULT_EXPAND)
        self.expand_spin.setSpecialValueText("off")
        self.expand_spin.setToolTip(EXPAND_TIP)
        self.expand_spin.valueChanged.connect(self.search.set_expand)
        self.model_combo = self.models.combo
        self.train_action = self._action(
            "Train…", self.show_training_panel, "Ctrl+T", "Train a model on a data set folder"
        )
        self.imagine_action = self._action(
            "Imagine", self.show_imagine_view, "Ctrl+I", "Show the photo the model imagines (GDH)"
        )
        self.quit_action = self._action("Quit", self.close, QKeySequence.StandardKey.Quit)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        menus = {
            "&File": (
                self.open_action,
                self.paste_action,
                None,
                self.save_png_action,
                self.save_strokes_action,
                None,
                self.quit_action,
            ),
            "&Edit": (
                self.undo_action,
                self.redo_action,
                self.clear_action,
                None,
                self.pen_action,
                self.eraser_action,
                self.photo_action,
            ),
            "&Search": (self.rerank_action, None, self.train_action),
            "&View": (self.library_action, self.imagine_action),
        }
        for title, actions in menus.items():
            menu = bar.addMenu(title)
            for action in actions:
                if action is None:
                    menu.addSeparator()
                else:
                    menu.addAction(action)

    def _build_toolbars(self) -> None:
        sketch = QToolBar("Sketch", self)
        sketch.setObjectName("sketchToolbar")
        search = QToolBar("Search", self)
        search.setObjectName("searchToolbar")
        self.sketch_toolbar, self.search_toolbar = sketch, search
        self._fill(
            sketch,
            self.open_action,
            self.paste_action,
            None,
            self.pen_action,
            self.eraser_action,
            self.width_spin,
            None,
            self.undo_action,
            self.redo_action,
            self.clear_action,
        )
        self._fill(
            search,
            "Model",
            self.model_combo,
            self.train_action,
            None,
            "Results",
            self.count_spin,
            self.rerank_action,
            "Expand",
            self.expand_spin,
        )
        imagine = QAction(self.imagine_action.text(), self)  # the same action, hidden alone
        imagine.setToolTip(self.imagine_action.toolTip())
        imagine.triggered.connect(self.imagine_action.trigger)
        search.insertAction(search.actions()[3], imagine)  # after Train
        imagine.setVisible(False)  # until a model that can imagine is active
        self._imagine_button = imagine
        self.addToolBar(sketch)
        self.addToolBar(search)

    @staticmethod
    def _fill(bar: QToolBar, *items) -> None:
        for item in items:
            if item is None:
                bar.addSeparator()
            elif isinstance(item, str):
                bar.addWidget(QLabel(f" {item} "))
            elif isinstance(item, QAction):
                bar.addAction(item)
            else:
                bar.addWidget(item)
