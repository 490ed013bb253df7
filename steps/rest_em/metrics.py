"""pass@k, majority-vote accuracy and greedy accuracy over a split, with bootstrap intervals.

pass@k uses the unbiased estimator of Chen et al. (2021): with n samples of which c are correct,
pass@k = 1 - C(n-c, k) / C(n, k), averaged over problems. Majority vote (self-consistency, Wang
et al. 2023) takes the most frequent final answer of a problem's samples under its verifier's
vote key; ties go to the answer seen first. It is defined for kinds whose verifier votes (math).
Intervals are percentile bootstraps over problems (Efron & Tibshirani 1993), via scipy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from math import comb
from typing import Any

import numpy as np

from steps.rest_em.problems import Problem
from steps.rest_em.scoring import Scored
from steps.rest_em.verifiers.registry import verifier_for


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c correct) is correct.

    Raises:
        ValueError: k is not in 1..n.
    """
    if not 0 < k <= n:
        raise ValueError(f"pass@{k} needs 0 < k <= n = {n}")
    return 1.0 if n - c < k else 1.0 - comb(n - c, k) / comb(n, k)


def majority_correct(scored: Sequence[Scored], vote_key: Callable[[str], str]) -> bool:
    """Is the most frequent final answer among the samples (equal under `vote_key`) correct?"""
    votes: Counter[str] = Counter()
    correct: dict[str, bool] = {}
    for sample in scored:
        if sample.extracted is None:
            continue
        key = vote_key(sample.extracted)
        votes[key] += 1
        correct[key] = correct.get(key, False) or sample.outcome == "pass"
    if not votes:
        return False
    return correct[votes.most_common(1)[0][0]]  # Counter keeps first-seen order among ties


def report_ks(n: int) -> list[int]:
    """1, 2, 4, … up to n, and n itself."""
    ks = [k for k in (2**i for i in range(n.bit_length())) if k <= n]
    return ks if ks[-1] == n else [*ks, n]


def per_problem(problems: Sequence[Problem], sampled: Mapping[str, Sequence[Scored]],
                greedy: Mapping[str, Scored]) -> dict[str, list[float]]:
    """Each metric's value per problem, in the order of `problems` (the means are the metrics).

    Keys: `greedy_pass@1`, `pass@k` for k in report_ks(n) (n = fewest samples of a problem), and
    `majority_vote` (only the problems whose verifier votes).
    """
    n = min(len(sampled[p.id]) for p in problems)
    values: dict[str, list[float]] = {"greedy_pass@1": [greedy[p.id].reward for p in problems]}
    for k in report_ks(n):
        values[f"pass@{k}"] = [pass_at_k(n, sum(s.reward for s in sampled[p.id][:n]), k)
                               for p in problems]
    values["majority_vote"] = [
        float(majority_correct(sampled[p.id], verifier_for(p.kind).vote_key))
        for p in problems if verifier_for(p.kind).majority_vote]
    return values


def evaluate(problems: Sequence[Problem], sampled: Mapping[str, Sequence[Scored]],
             greedy: Mapping[str, Scored]) -> dict[str, Any]:
    """Greedy pass@1, sampled pass@k for report_ks(n), majority vote, sampled outcome counts."""
    values = per_problem(problems, sampled, greedy)
    metrics: dict[str, Any] = {
        "problems": len(problems),
        "samples_per_problem": min(len(sampled[p.id]) for p in problems),
    }
    metrics.update({name: (sum(v) / len(v) if v else None) for name, v in values.items()})
    metrics["sampled_outcomes"] = dict(Counter(s.outcome for p in problems for s in sampled[p.id]))
    return metrics


def bootstrap_interval(values: Sequence[float], *, confidence: float = 0.95, resamples: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high) of the mean of `values` (scipy.stats.bootstrap).

    `values` are per-problem scores, or per-problem differences between two models on the same
    problems for a paired interval.
    """
    from scipy.stats import bootstrap

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    if np.all(data == data[0]):  # no spread: every resample has the same mean
        return (float(data[0]), float(data[0]))
    result = bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=resamples,
                       method="percentile", rng=np.random.default_rng(seed))
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))
