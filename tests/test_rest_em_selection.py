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
from steps.rest_em.metrics import (
    bootstrap_interval,
    evaluate,
    majority_correct,
    pass_at_k,
    per_problem,
    report_ks,
)
from steps.rest_em.problems import arithmetic_problems, load_problems, split_heldout
from steps.rest_em.scoring import OUTCOMES, Scored, SolutionScorer
from steps.rest_em.selection import count_outcomes, funnel_rows, keep_correct
from steps.rest_em.verifiers.final_answer import FinalAnswerVerifier


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


def test_multistep_arithmetic_problems_have_two_to_four_steps_and_right_answers() -> None:
    problems = load_problems("generate:arithmetic:2-4", count=60, seed=1)
    assert problems == arithmetic_problems(60, seed=1, steps=(2, 4))
    steps_seen = set()
    for p in problems:
        operations = [s for s in p.question.split(". ")[1:] if not s.startswith("How many")]
        steps_seen.add(len(operations))
        amount = int(p.question.split()[2])
        for operation in operations:
            numbers = [int(w) for w in operation.replace(".", "").split() if w.isdigit()]
            if "packs of" in operation:
                amount += numbers[0] * numbers[1]
            elif "gives away" in operation:
                amount -= numbers[0]
            else:
                amount += numbers[0]
        assert int(p.answer) == amount >= 0
    assert steps_seen == {2, 3, 4}
    assert {p.id for p in problems}.isdisjoint(p.id for p in arithmetic_problems(60, seed=1))


def test_gsm8k_format_answers_are_read_after_the_marks(tmp_path: Path) -> None:
    records = [
        {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as "
                     "many clips in May. How many clips did Natalia sell altogether?",
         "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
                   "Natalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72"},
        {"question": "How much is a thousand and 234?", "answer": "1000 + 234 = 1,234\n#### 1,234"},
        {"question": "Costs?", "answer": "Step one.\n#### $12,000.50"},
        {"question": "Plain?", "answer": "-7"},
    ]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    problems = load_problems(str(path))
    assert [p.answer for p in problems] == ["72", "1234", "$12000.50", "-7"]
    assert all(p.kind == "math" for p in problems)
    scorer = SolutionScorer()
    try:
        assert scorer(problems[1], "Step by step.\nAnswer: 1,234").outcome == "pass"
        assert scorer(problems[1], "Answer: 1.234").outcome == "fail"
        assert scorer(problems[2], "Answer: \\$12,000.50").outcome == "pass"
    finally:
        scorer.close()
    path.write_text(json.dumps({"question": "q", "answer": "work shown\n####  "}) + "\n")
    with pytest.raises(UserError, match="after '####'") as error:
        load_problems(str(path))
    assert str(path) in str(error.value) and "\n" not in str(error.value)


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
    ('{"question": "q", "answer": "SELECT 1", "kind": "sql"}\n',
     "unknown problem kind 'sql'; known kinds: "),
    ('{"question": "q", "answer": "1", "kind": "code"}\n', "kind 'code' needs 'tests'"),
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


def test_majority_vote_uses_the_most_frequent_answer_under_the_vote_key() -> None:
    key = FinalAnswerVerifier.vote_key
    assert majority_correct([Scored("fail", "5"), Scored("pass", "$7$"), Scored("pass", "7.0"),
                             Scored("unparseable")], key)
    assert majority_correct([Scored("fail", "5"), Scored("fail", "5"), Scored("pass", "1,234"),
                             Scored("pass", "\\$1234"), Scored("pass", "1234.0")], key)
    assert not majority_correct([Scored("fail", "5"), Scored("fail", "5"), Scored("pass", "7")], key)
    assert not majority_correct([Scored("unparseable"), Scored("no_output")], key)
    assert not majority_correct([Scored("fail", "0,1"), Scored("fail", "0,1"), Scored("pass", "0.1")],
                                key)  # a pair and a decimal do not vote together


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
    assert per_problem(problems, sampled, greedy)["greedy_pass@1"] == [1, 0]


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_problems() -> None:
    rng = random.Random(0)
    small = [float(rng.random() < 0.3) for _ in range(40)]
    large = [float(rng.random() < 0.3) for _ in range(1600)]
    for values in (small, large):
        low, high = bootstrap_interval(values)
        assert low < sum(values) / len(values) < high
    assert (bootstrap_interval(large)[1] - bootstrap_interval(large)[0]
            < (bootstrap_interval(small)[1] - bootstrap_interval(small)[0]) / 3)
    assert bootstrap_interval(small, seed=1) == bootstrap_interval(small, seed=1)
    assert bootstrap_interval([0.0] * 10) == (0.0, 0.0)
