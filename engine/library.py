"""A photo library: a folder of its own (catalog, saved indexes) and the photo folders it covers."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from engine.catalog import Catalog, Failure
from engine.errors import LibraryError
from engine.paths import libraries_dir

log = logging.getLogger(__name__)

CATALOG_NAME = "catalog.sqlite"
SETTINGS_NAME = "settings.json"


@dataclass(frozen=True)
class LibraryStats:
    photos: int  # readable photos in the catalog
    failed: int  # files recorded as unreadable
    coded: int  # photos with a code for the model asked about (0 when none was named)


class Library:
    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else libraries_dir() / "default"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LibraryError(f"Cannot create the library folder {self.path}: {exc}") from exc
        self.catalog = Catalog(self.path / CATALOG_NAME)

    def roots(self) -> list[Path]:
        return [p for _, p in self.catalog.roots()]

    def add_root(self, folder: str | os.PathLike) -> Path:
        """Add a photo folder; it must exist and be readable. Returns its absolute path."""
        path = Path(folder).expanduser()
        if not path.exists():
            raise LibraryError(f"The folder {path} does not exist.")
        if not path.is_dir():
            raise LibraryError(f"{path} is a file, not a folder; add the folder that holds it.")
        if not os.access(path, os.R_OK | os.X_OK):
            raise LibraryError(f"The folder {path} cannot be read (permission denied).")
        path = path.resolve()
        for existing in self.roots():
            if path == existing or existing in path.parents:
                log.info("%s is already covered by %s", path, existing)
                return existing
        self.catalog.add_root(path)
        return path

    def remove_root(self, folder: str | os.PathLike) -> int:
        """Forget a folder and everything indexed under it; the files themselves are untouched."""
        path = Path(folder).expanduser()
        path = path.resolve() if path.exists() else path.absolute()
        return self.catalog.remove_root(path)

    def failures(self) -> list[Failure]:
        return self.catalog.failures()

    def stats(self, model_id: str | None = None) -> LibraryStats:
        coded = len(self.catalog.coded_ids(model_id)) if model_id else 0
        return LibraryStats(
            photos=self.catalog.photo_count("ok"),
            failed=self.catalog.photo_count("failed"),
            coded=coded,
        )

    # ---------------------------------------------------------------- settings
    def _settings(self) -> dict:
        try:
            return json.loads((self.path / SETTINGS_NAME).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("Ignoring unreadable library settings: %s", exc)
            return {}

    def get_setting(self, key: str, default=None):
        return self._settings().get(key, default)

    def set_setting(self, key: str, value) -> None:
        """Store a JSON value (e.g. the active model) atomically beside the catalog."""
        settings = self._settings()
        settings[key] = value
        tmp = self.path / (SETTINGS_NAME + ".tmp")
        tmp.write_text(json.dumps(settings, indent=1))
        os.replace(tmp, self.path / SETTINGS_NAME)

    def close(self) -> None:
        self.catalog.close()
