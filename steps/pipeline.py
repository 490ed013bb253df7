"""distilabel's Pipeline as our pipelines use it.

Quiet logs (progress bars speak instead) and steps wired in a line, the way the papers draw their
flows.

Modules that define distilabel steps do not use `from __future__ import annotations`: distilabel
1.5.3 reads the `StepInput` hint of `process` at run time and does not resolve string
annotations (tests/test_distilabel_steps.py checks every step class).
"""

import os

import datasets
from distilabel.pipeline import Pipeline
from distilabel.steps.base import _Step

__all__ = ["Pipeline", "chain"]

os.environ.setdefault("DISTILABEL_LOG_LEVEL", "WARNING")
# distilabel reads its leaf outputs back with `datasets`, whose "Generating train split" bars
# would interleave with ours and say nothing to the user.
datasets.disable_progress_bars()


def chain(*steps: _Step) -> None:
    """Connect each step to the next: `chain(a, b, c)` is `a >> b >> c`."""
    for upstream, downstream in zip(steps, steps[1:], strict=False):
        upstream >> downstream
