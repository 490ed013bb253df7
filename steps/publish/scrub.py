"""Secret and local-detail scrubbing for anything a run writes down (run.json, commands, the card).

Secrets are recognised three ways, because a config can hide them in any of them: by key name
(`hf_token`, `api_key`…), by shape (`hf_…`, `sk-…`, credentials inside a URL, a secret-named CLI
flag's value) and by value (whatever the secret environment variables hold right now).

Local details are made portable (`portable`): a path inside the repository is written relative
to it, a relative path as given, any other absolute path as its last component, a URL's host as
`<host>`, and this machine's user and host names are replaced.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from steps import REPO_ROOT

REDACTED = "<redacted>"
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "ARGILLA_API_KEY")

# Key names that hold secrets; `tokens`, `max_new_tokens` and `tokenizer` are counts/names, not.
_SECRET_NAME = re.compile(
    r"token$|api[_-]?key|secret|password|passwd|authorization|credential", re.IGNORECASE
)
_SECRET_SHAPES = [
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),  # Hugging Face user access tokens
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),  # OpenAI-style keys
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password@ in a URL
    re.compile(r"(?i)(?<=bearer )[A-Za-z0-9._\-]{8,}"),
]
# `--hf-token VALUE` / `--api-key=VALUE` in a command line.
_SECRET_FLAG = re.compile(
    r"(--[\w-]*(?:token|api[_-]?key|secret|password))(=|\s+)(?!--)(?=\S*\w)"
    r"('[^']*'|\"[^\"]*\"|\S+)",  # (a value has a letter or digit: `--api-key / ENV` is prose)
    re.IGNORECASE,
)


def secret_values() -> list[str]:
    """The secrets this process could leak: the values of the secret environment variables."""
    return [value for name in SECRET_ENV_VARS if len(value := os.environ.get(name, "")) >= 8]


def scrub_text(text: str, extra_secrets: list[str] | None = None) -> str:
    """`text` with known secret values, secret-flag values and secret shapes redacted."""
    for value in [*secret_values(), *(extra_secrets or [])]:
        text = text.replace(value, REDACTED)
    text = _SECRET_FLAG.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    for shape in _SECRET_SHAPES:
        text = shape.sub(REDACTED, text)
    return text


def scrub_secrets(value: Any, extra_secrets: list[str] | None = None) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings…) with every secret replaced.

    Values under a secret-named key are redacted whole (unless empty/None, which shows that no
    secret was set); strings anywhere are scrubbed by shape and by known secret values.
    """
    if isinstance(value, dict):
        return {
            key: REDACTED if _SECRET_NAME.search(str(key)) and item not in (None, "")
            else scrub_secrets(item, extra_secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub_secrets(item, extra_secrets) for item in value]
    if isinstance(value, str):
        return scrub_text(value, extra_secrets)
    return value


HOST = "<host>"
_URL_HOST = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<host>[^/\s'\"]+)", re.IGNORECASE)
# An absolute path ("/…" or "~/…") at the start of a value, after a space, "=", "@", "," or "(",
# or after a spec's "kind:" (llamacpp:/models/x.gguf) but not a URL's "://".
_ABSOLUTE = re.compile(r"(?:^|(?<=[\s=@,(])|(?<=[A-Za-z]:)(?!//))(?P<path>~?/[^\s'\",)]*)")


def portable_path(path: str | Path) -> str:
    """A path as it may be published (an absolute path names users and machines).

    Relative to the repository when inside it (not in an installed package), as given when
    relative, else its last component.
    """
    text = str(path)
    expanded = Path(os.path.expanduser(text))
    if not expanded.is_absolute():
        return text
    try:
        relative = expanded.resolve().relative_to(REPO_ROOT.resolve())
    except ValueError:
        return expanded.name or "."
    # an installed package's file (a venv inside the checkout): its name says what it is
    return expanded.name if "site-packages" in relative.parts else relative.as_posix() or "."


def portable(value: Any) -> Any:
    """A copy of a JSON-like value with nothing local left in it.

    Absolute paths are made portable, URL hosts become `<host>`, and this machine's user and host
    names are removed from strings.
    """
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [portable(item) for item in value]
    if isinstance(value, Path):
        return portable_path(value)
    if isinstance(value, str):
        return scrub_local(value)
    return value


def scrub_paths(text: str, keep: Iterable[str] = ()) -> str:
    """`text` with every absolute path of two or more parts portable (`portable_path`).

    Paths in `keep` (e.g. what the user typed on the command line) stay as they are; a lone `/`
    or `/word` (an option separator, an URL path) is not a local detail.
    """
    kept = set(keep)

    def shown(match: re.Match[str]) -> str:
        path = match["path"]
        if path in kept or path.rstrip("/").count("/") < 2:
            return path
        return portable_path(path)

    return _ABSOLUTE.sub(shown, text)


def scrub_local(text: str) -> str:
    """`text` with absolute paths portable, URL hosts as `<host>`, user and host names replaced."""
    text = scrub_paths(_URL_HOST.sub(lambda m: f"{m['scheme']}{HOST}", text))
    for name, stand_in in _local_names():
        text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", stand_in, text)
    return text


def _local_names() -> list[tuple[str, str]]:
    """This machine's host and user names, where long enough not to be ordinary words."""
    names = []
    host = socket.gethostname()
    if len(host) >= 6:
        names += [(host, HOST), (host.split(".")[0], HOST)]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    if len(user) >= 6:
        names.append((user, "<user>"))
    return names
