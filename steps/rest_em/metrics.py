"""pass@k, majority-vote accuracy and greedy accuracy over a split.

pass@k uses the unbiased estimator of Chen et al. (2021): with n samples of which c are correct,
pass@k = 1 - C(n-c, k) / C(n, k), averaged over problems. Majority vote (self-consistency)
takes the most frequent normalised final answer of a problem's samples; ties go to the answer
seen first. It is defined for math problems only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from math import comb
from typing import Any

from steps.rest_em.answers import normalise_answer
from steps.rest_em.problems import Problem
from steps.rest_em.scoring import Scored


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c correct) is correct."""
    if not 0 < k <= n:
        raise ValueError(f"pass@{k} needs 0 < k <= n = {n}")
    return 1.0 if n - c < k else 1.0 - comb(n - c, k) / comb(n, k)


def majority_correct(scored: Sequence[Scored]) -> bool:
    """Is the most frequent final answer among the samples a correct one?"""
    votes: Counter[str] = Counter()
    correct: dict[str, bool] = {}
    for sample in scored:
        if sample.extracted is None:
            continue
        key = normalise_answer(sample.extracted)
        votes[key] += 1
        correct[key] = correct.get(key, False) or sample.outcome == "pass"
    if not votes:
        return False
    return correct[votes.most_common(1)[0][0]]  # Counter keeps first-seen order among ties


def report_ks(n: int) -> list[int]:
    """1, 2, 4, … up to n, and n itself."""
    ks = [k for k in (2**i for i in range(n.bit_length())) if k <= n]
    return ks if ks[-1] == n else [*ks, n]


def evaluate(problems: Sequence[Problem], sampled: Mapping[str, Sequence[Scored]],
             greedy: Mapping[str, Scored]) -> dict[str, Any]:
    """Greedy pass@1, sampled pass@k for report_ks(n), majority vote, sampled outcome counts."""
    n = min(len(sampled[p.id]) for p in problems)
    metrics: dict[str, Any] = {
        "problems": len(problems),
        "samples_per_problem": n,
        "greedy_pass@1": sum(greedy[p.id].reward for p in problems) / len(problems),
    }
    for k in report_ks(n):
        metrics[f"pass@{k}"] = sum(
            pass_at_k(n, sum(s.reward for s in sampled[p.id][:n]), k) for p in problems
        ) / len(problems)
    metrics["sampled_outcomes"] = dict(Counter(s.outcome for p in problems for s in sampled[p.id]))
    math = [p for p in problems if p.kind == "math"]
    metrics["majority_vote"] = (sum(majority_correct(sampled[p.id]) for p in math) / len(math)
                                if math else None)
    return metrics
