"""Errors a user can fix. CLIs print them as one line (no traceback) and exit with status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any


class UserError(Exception):
    """Bad input or configuration: the message names the file or option and what to do next."""


def cli_main(main: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a CLI entry point so that a `UserError` becomes one clear line on stderr."""

    @wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
