"""Keep at most N correct solutions per problem, and count where every other sample went.

The cap (the paper's 10) stops easy problems, solved by most samples, from dominating the
fine-tuning set. Samples are i.i.d., so the first N correct ones are a uniform random choice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from steps.rest_em.scoring import OUTCOMES, Scored

NO_OUTPUT = "no_output"  # a sample the engine did not return


def keep_correct(scored: Sequence[Scored], max_per_problem: int) -> list[int]:
    """Indices of the samples kept: the first `max_per_problem` that passed."""
    return [index for index, sample in enumerate(scored) if sample.outcome == "pass"][
        :max_per_problem]


def count_outcomes(scored_per_problem: Sequence[Sequence[Scored]],
                   kept_per_problem: Sequence[Sequence[int]]) -> dict[str, int]:
    """Samples per outcome, plus `capped`, `kept`, `samples` and `no_output:REASON`.

    `capped`: passed but over the cap; `no_output:REASON`: missing samples per engine reason.

    Invariants (tested): the outcomes sum to the samples drawn, and pass = kept + capped.
    """
    counts = Counter({outcome: 0 for outcome in OUTCOMES})
    for scored in scored_per_problem:
        counts.update(sample.outcome for sample in scored)
        # Why a sample is missing (the engine's reason, e.g. context_overflow): `no_output:R`.
        counts.update(f"{NO_OUTPUT}:{sample.detail or NO_OUTPUT}" for sample in scored
                      if sample.outcome == NO_OUTPUT)
    counts["kept"] = sum(len(kept) for kept in kept_per_problem)
    counts["capped"] = counts["pass"] - counts["kept"]
    counts["samples"] = sum(len(scored) for scored in scored_per_problem)
    return dict(counts)


def funnel_rows(config: str, counts: dict[str, int]) -> list[dict[str, object]]:
    """FUNNEL_SCHEMA rows: missing samples by reason at "generation", then the verification.

    rows_in - removals == rows_out.
    """
    removals = [("verification", outcome) for outcome in OUTCOMES
                if outcome not in ("pass", "no_output")] + [("cap", "capped")]
    missing = {key.partition(":")[2]: n for key, n in counts.items()
               if key.startswith(f"{NO_OUTPUT}:")} or {NO_OUTPUT: counts[NO_OUTPUT]}
    rows: list[dict[str, object]] = [
        {"config": config, "stage": "generation", "reason": reason, "rows": n}
        for reason, n in sorted(missing.items())]
    rows += [
        {"config": config, "stage": "input", "reason": "rows_in",
         "rows": counts["samples"] - counts["no_output"]},
    ]
    rows += [{"config": config, "stage": stage, "reason": reason, "rows": counts[reason]}
             for stage, reason in removals]
    rows.append({"config": config, "stage": "output", "reason": "rows_out",
                 "rows": counts["kept"]})
    return rows
