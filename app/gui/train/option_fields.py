"""A group of named option fields built from a dict of defaults: a check box for a bool, a line
edit for a number or a string. The Train panel's form uses one for the method's training options
(loss weights, ...) and one for the model's options (the papers' ablation switches, generator
sizes, ...).

``values()`` returns only the options whose value differs from its default, parsed to the
default's type, so a run's config records what the person changed; a field that does not parse
is a ConfigError naming the group and the option. ``show(values)`` displays other values (a
checkpoint's, while the fields are disabled) and ``restore()`` gives back what was there before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QLabel, QLineEdit, QWidget

from engine.errors import ConfigError


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class OptionFields(QGroupBox):
    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.layout_ = QFormLayout(self)
        self.widgets: dict[str, QWidget] = {}
        self.defaults: dict[str, Any] = {}
        self._saved: dict[str, Any] | None = None  # the person's values while show() is on

    def fill(self, defaults: dict[str, Any], help_text: Callable[[str], str] | None = None) -> None:
        """One field per option, set to its default; the group is hidden when there are none.
        ``help_text(name)``: the option's tooltip (on its label and its field)."""
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self.widgets, self.defaults, self._saved = {}, dict(defaults), None
        for name, value in defaults.items():
            if isinstance(value, bool):
                widget: QWidget = QCheckBox()
            else:
                widget = QLineEdit()
            self.widgets[name] = widget
            self._set(name, value)
            label = QLabel(name)
            tip = help_text(name) if help_text else ""
            if tip:
                shown = f"{tip} Default: {_text(value)}."
                label.setToolTip(shown)
                widget.setToolTip(shown)
            self.layout_.addRow(label, widget)
        self.setVisible(bool(defaults))

    def _set(self, name: str, value: Any) -> None:
        widget = self.widgets[name]
        if isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        else:
            widget.setText(_text(value))

    def _value(self, name: str) -> Any:
        widget, default = self.widgets[name], self.defaults[name]
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        text = widget.text().strip()
        try:
            if default is None:  # an optional number (GDH's lam): blank or None keeps it unset
                return None if text in ("", "None") else float(text)
            if isinstance(default, int | float):
                return type(default)(text)
        except ValueError:
            message = f"{self.title()}: {name} must be a number, not '{text}'."
            raise ConfigError(message) from None
        return text

    def values(self) -> dict[str, Any]:
        """The options set to something other than their default."""
        current = {name: self._value(name) for name in self.widgets}
        return {k: v for k, v in current.items() if v != self.defaults[k]}

    def show_values(self, values: dict[str, Any]) -> None:
        """Display ``values`` (unknown names ignored), keeping the person's own for restore()."""
        if self._saved is None:
            self._saved = {name: self._value_or_text(name) for name in self.widgets}
        for name, value in values.items():
            if name in self.widgets:
                self._set(name, value)

    def restore(self) -> None:
        """Put back what the fields held before show_values()."""
        if self._saved is not None:
            for name, value in self._saved.items():
                self._set(name, value)
            self._saved = None

    def _value_or_text(self, name: str) -> Any:
        widget = self.widgets[name]
        return widget.isChecked() if isinstance(widget, QCheckBox) else widget.text()
