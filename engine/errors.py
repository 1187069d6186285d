"""Named errors of the engine. Every message says what went wrong and what to do about it."""


class SketchSearchError(Exception):
    """Base of every error the engine raises on purpose; the app shows its message as it is."""


class ImageLoadError(SketchSearchError):
    """A photo or sketch image could not be decoded (corrupt, truncated, too large, no image)."""


class SketchError(SketchSearchError):
    """A sketch or stroke file is empty, malformed or unreadable."""


class EmptySketchError(SketchError):
    """A sketch without ink: nothing drawn, or everything drawn erased (nothing to search)."""


class CheckpointError(SketchSearchError):
    """A checkpoint is missing, malformed, untrusted, or of another method/format/bit count."""


class CodesNotFittedError(SketchSearchError):
    """A model that makes fitted codes (``codes="fitted"``) has not had them fitted yet."""


class UnknownMethodError(SketchSearchError):
    """A method name that is not in the registry."""


class ConfigError(SketchSearchError):
    """A configuration value is out of range or inconsistent."""


class CatalogError(SketchSearchError):
    """The SQLite catalog cannot be opened, is of a newer schema, or is corrupt."""


class IndexMismatchError(SketchSearchError):
    """An index built by another model, with another bit count, or out of step with the catalog."""


class LibraryError(SketchSearchError):
    """A photo folder cannot be added or read (missing, not a folder, no permission)."""


class LibraryReadOnlyError(LibraryError):
    """The library (its catalog, folder or disk) cannot be written; it can still be searched."""


class LibraryBusyError(LibraryError):
    """Another process is writing to the library (indexing it); ``holder`` says which."""

    def __init__(self, message: str, holder=None) -> None:
        super().__init__(message)
        self.holder = holder  # engine.writer_lock.LockHolder, when it could be read


class DiskFullError(SketchSearchError):
    """The disk that holds the library is full; what was saved before is kept."""


class DeviceError(SketchSearchError):
    """The requested compute device (cuda, mps) is not available."""


class DatasetError(SketchSearchError):
    """A training or evaluation data set folder does not fit a known layout."""


class Cancelled(SketchSearchError):
    """Long work was cancelled by the user."""


class DistributedError(SketchSearchError):
    """The processes of a distributed (torchrun) training run disagree, or cannot work together."""
