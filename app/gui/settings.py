"""The app's settings file (window layout, last folders, chosen model, toolbar values).

By default Qt's per-user settings for organisation and application "SketchSearch": on Linux
``~/.config/SketchSearch/SketchSearch.conf``, on macOS ``~/Library/Preferences/
com.sketchsearch.SketchSearch.plist``, on Windows the registry key
``HKEY_CURRENT_USER\\Software\\SketchSearch\\SketchSearch``. ``SKETCH_SEARCH_SETTINGS`` names an
INI file to use instead (tests, benchmarks, a portable installation), so they never read or
write the user's own.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QSettings

SETTINGS_ENV = "SKETCH_SEARCH_SETTINGS"
ORGANISATION = APPLICATION = "SketchSearch"


def app_settings() -> QSettings:
    """The settings to read and write: ``SKETCH_SEARCH_SETTINGS``'s file, else the user's."""
    override = os.environ.get(SETTINGS_ENV)
    if override:
        return QSettings(override, QSettings.Format.IniFormat)
    return QSettings(ORGANISATION, APPLICATION)


def settings_location() -> str:
    """Where ``app_settings()`` keeps them (a file path, or the registry key on Windows)."""
    return app_settings().fileName()
