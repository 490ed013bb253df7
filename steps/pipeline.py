"""distilabel's Pipeline as our pipelines use it.

Quiet logs (progress bars speak instead) and steps wired in a line, the way the papers draw their flows.
"""

import os

from distilabel.pipeline import Pipeline
from distilabel.steps.base import _Step

__all__ = ["Pipeline", "chain"]

os.environ.setdefault("DISTILABEL_LOG_LEVEL", "WARNING")


def chain(*steps: _Step) -> None:
    """Connect each step to the next: chain(a, b, c) is a >> b >> c."""
    for upstream, downstream in zip(steps, steps[1:], strict=False):
        upstream >> downstream
