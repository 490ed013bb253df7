"""Connect to Argilla with a URL and key from flags or the environment.

Every failure becomes one `UserError` line. The key is only handed to the SDK: never printed,
logged or written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import argilla as rg
import httpx
from argilla._exceptions import (  # the SDK exports its exceptions only from here
    ArgillaAPIError,
    ArgillaCredentialsError,
    ForbiddenError,
)

from steps.errors import UserError
from steps.publish.scrub import scrub_text

URL_HELP = "--api-url / ARGILLA_API_URL"
KEY_HELP = "--api-key / ARGILLA_API_KEY"


def connect(api_url: str | None = None, api_key: str | None = None) -> rg.Argilla:
    """A client for the server at `api_url` (else ARGILLA_API_URL) with `api_key` (else ARGILLA_API_KEY).

    The SDK checks both at once by asking the server who the key belongs to.
    """
    url = (api_url or os.environ.get("ARGILLA_API_URL") or "").rstrip("/")
    key = api_key or os.environ.get("ARGILLA_API_KEY")
    if not url:
        raise UserError(f"no Argilla server given; pass {URL_HELP} (e.g. http://localhost:6900)")
    if not key:
        raise UserError(f"no Argilla API key given; pass {KEY_HELP} (the key of an owner or admin)")
    with argilla_errors(url):
        try:
            return rg.Argilla(api_url=url, api_key=key, retries=2)
        except json.JSONDecodeError:
            raise UserError(f"{scrub_text(url)} does not answer like an Argilla 2.x server "
                            f"({URL_HELP}); give the server's base URL") from None


@contextmanager
def argilla_errors(url: str) -> Iterator[None]:
    """Translate transport and API errors raised inside the block into one line naming the fix."""
    shown = scrub_text(url)
    try:
        yield
    except ArgillaCredentialsError:
        raise UserError(f"Argilla at {shown} rejected the API key ({KEY_HELP})") from None
    except ForbiddenError:
        raise UserError(f"Argilla at {shown}: the API key's user may not do this; use the key of "
                        f"an owner or admin of the workspace ({KEY_HELP})") from None
    except httpx.TransportError as error:
        raise UserError(f"cannot reach Argilla at {shown} ({URL_HELP}): {_first_line(error)}") from None
    except ArgillaAPIError as error:
        raise UserError(f"Argilla at {shown} refused the request: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return scrub_text(text.splitlines()[0]) if text else type(error).__name__
