"""ReST-EM bookkeeping: problems, the per-problem cap, outcome counts, funnel, pass@k, majority."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steps.errors import UserError
from steps.rest_em.metrics import evaluate, majority_correct, pass_at_k, report_ks
from steps.rest_em.problems import arithmetic_problems, load_problems, split_heldout
from steps.rest_em.scoring import OUTCOMES, Scored, SolutionScorer
from steps.rest_em.selection import count_outcomes, funnel_rows, keep_correct


def test_arithmetic_problems_are_deterministic_and_their_answers_check_out() -> None:
    problems = arithmetic_problems(40, seed=3)
    assert problems == arithmetic_problems(40, seed=3)
    assert problems != arithmetic_problems(40, seed=4)
    assert len({p.id for p in problems}) == 40
    for p in problems:  # recompute the answer from the numbers in the text
        numbers = [int(w) for w in p.question.replace(",", "").replace(".", "").split()
                   if w.isdigit()]
        gains = "more" in p.question
        if len(numbers) == 3:
            expected = numbers[0] + numbers[1] - numbers[2]
        else:
            expected = numbers[0] + numbers[1] if gains else numbers[0] - numbers[1]
        assert int(p.answer) == expected >= 0


def test_load_problems_reads_jsonl_and_parquet(tmp_path: Path) -> None:
    records = [{"question": "1+1?", "answer": 2},
               {"question": "Print hi.", "tests": [{"input": "", "output": "hi"}], "id": "c1"}]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([records[0]]), parquet)
    from_jsonl = load_problems(str(jsonl))
    assert [(p.kind, p.answer, p.id) for p in from_jsonl][1] == ("code", None, "c1")
    assert from_jsonl[0].answer == "2" and from_jsonl[0].kind == "math"
    assert load_problems(str(parquet))[0].question == "1+1?"


@pytest.mark.parametrize(("content", "message"), [
    ('{"question": "q"}\n', "exactly one of 'answer'"),
    ('{"question": "q", "answer": 1, "tests": "assert 1"}\n', "exactly one of 'answer'"),
    ('{"answer": 1}\n', "non-empty string 'question'"),
    ('{"question": "q", "tests": [{"input": 1}]}\n', "'tests' must be"),
    ("not json\n", "line 1: not JSON"),
])
def test_bad_problem_files_raise_one_clear_user_error(tmp_path: Path, content: str,
                                                      message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as error:
        load_problems(str(path))
    assert str(path) in str(error.value)


def test_unknown_problem_sources_are_user_errors(tmp_path: Path) -> None:
    for spec in ("generate:calculus", str(tmp_path / "missing.jsonl"), str(Path(__file__))):
        with pytest.raises(UserError, match="--problems"):
            load_problems(spec)


def test_heldout_split_is_disjoint_complete_and_stable() -> None:
    problems = arithmetic_problems(100, seed=0)
    train, heldout = split_heldout(problems, 0.2)
    assert {p.id for p in train}.isdisjoint(p.id for p in heldout)
    assert len(train) == 80 and len(heldout) == 20
    assert split_heldout(list(reversed(problems)), 0.2)[1] == list(reversed(heldout))


def _random_outcomes(rng: random.Random, n: int) -> list[Scored]:
    return [Scored(rng.choice(OUTCOMES[:-1] + ("pass", "pass")), "1") for _ in range(n)]


def test_cap_per_problem_holds_and_counts_add_up() -> None:
    rng = random.Random(0)
    scored = [_random_outcomes(rng, rng.randint(1, 40)) for _ in range(50)]
    cap = 3
    kept = [keep_correct(s, cap) for s in scored]
    for samples, indices in zip(scored, kept, strict=True):
        passed = [i for i, s in enumerate(samples) if s.outcome == "pass"]
        assert len(indices) == min(cap, len(passed)) and set(indices) <= set(passed)
    counts = count_outcomes(scored, kept)
    assert sum(counts[o] for o in OUTCOMES) == counts["samples"] == sum(map(len, scored))
    assert counts["pass"] == counts["kept"] + counts["capped"]
    assert counts["capped"] > 0  # the cap did bite in this draw
    funnel = funnel_rows("rest_em", counts)
    by_stage = {(r["stage"], r["reason"]): r["rows"] for r in funnel}
    removed = sum(r["rows"] for r in funnel if r["stage"] in ("verification", "cap"))
    assert by_stage[("input", "rows_in")] - removed == by_stage[("output", "rows_out")]
    assert by_stage[("output", "rows_out")] == counts["kept"]


def test_scorer_counts_missing_and_unparseable_outputs() -> None:
    problem = arithmetic_problems(1, seed=0)[0]
    scorer = SolutionScorer()
    assert scorer(problem, None).outcome == "no_output"
    assert scorer(problem, "I do not know.").outcome == "unparseable"


def test_pass_at_k_matches_brute_force_enumeration() -> None:
    for n, c in [(5, 0), (5, 2), (6, 3), (4, 4)]:
        outcomes = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(outcomes, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute)
    assert report_ks(32) == [1, 2, 4, 8, 16, 32] and report_ks(6) == [1, 2, 4, 6]


def test_majority_vote_uses_the_most_frequent_normalised_answer() -> None:
    assert majority_correct([Scored("fail", "5"), Scored("pass", "$7$"), Scored("pass", "7.0"),
                             Scored("unparseable")])
    assert not majority_correct([Scored("fail", "5"), Scored("fail", "5"), Scored("pass", "7")])
    assert not majority_correct([Scored("unparseable"), Scored("no_output")])


def test_evaluate_reports_greedy_pass_at_k_and_majority() -> None:
    problems = arithmetic_problems(2, seed=0)
    sampled = {problems[0].id: [Scored("pass", "1"), Scored("fail", "2")],
               problems[1].id: [Scored("fail", "3"), Scored("fail", "3")]}
    greedy = {problems[0].id: Scored("pass", "1"), problems[1].id: Scored("fail", "3")}
    metrics = evaluate(problems, sampled, greedy)
    assert metrics["greedy_pass@1"] == 0.5
    assert metrics["pass@1"] == pytest.approx(0.25) and metrics["pass@2"] == pytest.approx(0.5)
    assert metrics["majority_vote"] == 0.5  # problem 0: a 1-1 tie goes to the first answer
    assert metrics["sampled_outcomes"] == {"pass": 1, "fail": 3}
