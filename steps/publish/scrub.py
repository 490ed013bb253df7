"""Secret scrubbing for anything a run writes down (config dumps, commands, the card).

Secrets are recognised three ways, because a config can hide them in any of them: by key name
(`hf_token`, `api_key`…), by shape (`hf_…`, `sk-…`, credentials inside a URL, a secret-named CLI
flag's value) and by value (whatever the secret environment variables hold right now).
"""

from __future__ import annotations

import os
import re
from typing import Any

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
    r"(--[\w-]*(?:token|api[_-]?key|secret|password))(=|\s+)(?!--)('[^']*'|\"[^\"]*\"|\S+)",
    re.IGNORECASE,
)


def secret_values() -> list[str]:
    """The secrets this process could leak: the values of the secret environment variables."""
    return [value for name in SECRET_ENV_VARS if len(value := os.environ.get(name, "")) >= 8]


def scrub_text(text: str, extra_secrets: list[str] | None = None) -> str:
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
