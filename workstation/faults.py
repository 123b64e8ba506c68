"""The error boundary: a storage or file-system fault becomes one line a person can act on.

Why one place: the same fault (a read-only store, a full disk, a damaged page, a file
where a folder should be) can surface from any command or any GUI action, and each time
the person needs the same three things: what failed, on which path, and what to do. The
Python traceback helps only whoever fixes the program, so it goes to the log file
(:func:`log_file`), never to the terminal or a dialog.

Used by the CLI's ``main`` (exit code 2 for a fault) and by the GUI's exception hook and
startup (a dialog; the window stays open). No Qt here; what an SQLite error means is
said by ``store.errors``, the package that speaks SQL.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
from pathlib import Path

from workstation.core.errors import UserError
from workstation.paths import user_data_dir
from workstation.store.errors import describe_store_error

LOG_MAX_BYTES = 2 * 1024**2
LOG_BACKUPS = 2
FAULT_EXIT_CODE = 2
BUG_EXIT_CODE = 1
_HANDLER_NAME = "iad-workstation-log-file"

log = logging.getLogger("workstation.faults")


def log_file() -> Path:
    return user_data_dir() / "logs" / "iad-workstation.log"


def start_log_file() -> Path | None:
    """Send the ``workstation`` loggers' warnings and errors to :func:`log_file` (once).

    Returns None when the log cannot be written (read-only home, full disk): a broken log
    must never be the reason the application cannot start or report an error.
    """
    root = logging.getLogger("workstation")
    path = log_file()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            if Path(getattr(handler, "baseFilename", "")) == path.absolute():
                return path
            root.removeHandler(handler)  # the data folder changed (tests, --db elsewhere)
            handler.close()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8", delay=True
        )
        with open(path, "a", encoding="utf-8"):
            pass  # fail here, not on the first error, when the file cannot be written
    except OSError:
        return None
    handler.set_name(_HANDLER_NAME)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    return path


def describe(exc: BaseException, *, store: Path | None = None) -> str | None:
    """One line for a storage or file-system fault, or None when ``exc`` is not one.

    ``store`` is the store file in use: SQLite's errors do not say which file failed.
    """
    line = describe_store_error(exc, store)
    if line is not None:
        return line
    if isinstance(exc, OSError):
        return _describe_os(exc)
    return None


def _first_file_on_the_way(path: Path) -> Path:
    """The existing non-folder that blocks ``path`` (ENOTDIR names the deeper path)."""
    for candidate in (path, *path.parents):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return path


def _describe_os(exc: OSError) -> str:
    path = exc.filename
    target = f" {path}" if path else ""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full (writing{target}); free some space and retry"
    if exc.errno == errno.EROFS:
        return f"{path or 'the target'} is on a read-only file system; choose a writable place"
    if isinstance(exc, NotADirectoryError):
        blocker = _first_file_on_the_way(Path(path)) if path else "a path component"
        return f"{blocker} is a file where a folder is needed; choose another path"
    if isinstance(exc, PermissionError):
        return (
            f"permission denied on{target} ({reason}); make it writable for this user, "
            "or choose another path"
        )
    if isinstance(exc, IsADirectoryError):
        return f"{path} is a folder where a file is needed; choose a file path"
    if isinstance(exc, FileNotFoundError):
        return f"{path or 'a file'} does not exist"
    return f"cannot use{target}: {reason}"


def user_message(
    exc: BaseException, *, store: Path | None = None, logged: bool = False
) -> tuple[str, int]:
    """The line to show for any exception and the CLI exit code; logs the trace unless
    the caller did (``logged``: the GUI's worker lanes log what they catch).

    Faults (:func:`describe`) get exit code 2 like a :class:`UserError`; anything else is
    a bug in this program, said as such, with the log file that holds the trace.
    """
    if isinstance(exc, UserError):
        return str(exc), FAULT_EXIT_CODE
    where = start_log_file()
    if not logged:
        log.error("%s: %s", type(exc).__name__, exc, exc_info=exc)
    line = describe(exc, store=store)
    if line is not None:
        return line, FAULT_EXIT_CODE
    trace = f"the full trace is in {where}" if where else "no log file could be written"
    return (
        f"unexpected {type(exc).__name__}: {exc} (a bug in iad-workstation; {trace}; "
        "please report it)",
        BUG_EXIT_CODE,
    )
