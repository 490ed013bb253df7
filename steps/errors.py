"""How a command fails: one line on stderr, never a traceback, never a local variable or secret.

A `UserError` (bad input the user can fix) prints `error: <message>` and exits with status 2. Any
other exception prints `error: <type>: <message>; details in <log>` and exits with status 1; the
log holds the traceback without local variables, scrubbed of secrets like every line printed.

distilabel 1.5.3 installs rich's traceback hook with `show_locals=True` on import
(`distilabel/__init__.py`), which printed tokens and API keys held in local variables. This module
neutralises it: rich's `install` is made a no-op, and `sys.excepthook` is set to the one-line
report here at import, when `cli_main` decorates an entry point and when it runs.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from types import TracebackType
from typing import Any

from steps import REPO_ROOT

LOG_DIR = REPO_ROOT / "outputs" / "logs"  # outputs/ is ignored by git and never pushed
MAX_MESSAGE_CHARS = 300


class UserError(Exception):
    """Bad input or configuration: the message names the file or option and what to do next."""


def _local_paths(text: str) -> str:
    """Paths shown relative to the working directory, and the home folder as `~`.

    A printed error names the file without the user's name or folder layout.
    """
    cwd, home = os.getcwd(), os.path.expanduser("~")
    if cwd not in ("/", home):
        text = text.replace(cwd + os.sep, "")
    return text.replace(home + os.sep, "~" + os.sep) if home not in ("", "/") else text


def _shown(path: Path) -> str:
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else _local_paths(str(path))


def write_error_log(error: BaseException) -> Path:
    """Write the traceback of `error` to a new log under `LOG_DIR`, secrets scrubbed.

    Chained causes are included, local variables never; the system temp folder is used if
    `LOG_DIR` is not writable.

    Returns:
        The path of the log.
    """
    from steps.publish.scrub import scrub_text  # here: steps.publish imports this module

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    program = Path(sys.argv[0]).stem or "genteach"
    text = "".join([
        f"command: {scrub_text(' '.join(['python', *map(_local_paths, sys.argv)]))}\n",
        f"time (UTC): {stamp}\npython: {sys.version.split()[0]}\n\n",
        *traceback.format_exception(type(error), error, error.__traceback__),
    ])
    text = _local_paths(scrub_text(text))
    for folder in (LOG_DIR, Path(os.environ.get("TMPDIR", "/tmp")) / "genteach-logs"):
        path = folder / f"{program}-{stamp}-{os.getpid()}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    raise OSError("no writable folder for the error log")


def error_line(error: BaseException) -> str:
    """The one line printed for `error`.

    Its message's first line, scrubbed of secrets and local paths (relative to the working
    folder where they are inside it, else portable), prefixed with its type unless it is a
    `UserError`. Only a message we did not write is cut to `MAX_MESSAGE_CHARS`: a `UserError`
    ends with what to do next.
    """
    from steps.publish.scrub import scrub_paths, scrub_text  # (steps.publish imports this module)

    lines = str(error).strip().splitlines()
    # (paths the user typed are theirs to see; any other absolute path is a local detail)
    message = scrub_paths(_local_paths(scrub_text(lines[0] if lines else "")), keep=sys.argv[1:])
    if isinstance(error, UserError):
        return f"error: {message}"
    message = message[:MAX_MESSAGE_CHARS]
    return f"error: {type(error).__name__}: {message}" if message else f"error: {type(error).__name__}"


def report(error: BaseException) -> int:
    """Print the one line for `error` on stderr and return the exit status.

    Returns:
        2 for a `UserError`; else 1, and the line names the log holding the traceback.
    """
    if isinstance(error, UserError):
        print(error_line(error), file=sys.stderr)
        return 2
    try:
        where = f"; details in {_shown(write_error_log(error))}"
    except OSError:
        where = "; no log written (no writable folder)"
    print(error_line(error) + where, file=sys.stderr)
    return 1


def _excepthook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return
    report(error)


def neutralise_rich_tracebacks() -> None:
    """Undo distilabel's `rich.traceback.install(show_locals=True)` and keep it from coming back.

    A later `import distilabel` calls `install` again.
    """
    sys.excepthook = _excepthook
    try:
        import rich.traceback
    except ImportError:  # pragma: no cover - rich comes with distilabel
        return
    rich.traceback.install = lambda *args, **kwargs: sys.excepthook


def cli_main(main: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a CLI entry point.

    A `UserError` becomes one line and exit status 2, any other exception one line naming a scrubbed log
    and exit status 1 (`report`).
    """
    neutralise_rich_tracebacks()

    @wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        neutralise_rich_tracebacks()
        try:
            return main(*args, **kwargs)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as error:
            raise SystemExit(report(error)) from None

    return wrapper


neutralise_rich_tracebacks()
