"""The pre-run estimate (steps/estimate.py): requests per stage from the plan, tokens as the engine
counts them, the observed output ratio and throughput, cost, and the budget caps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steps import REPO_ROOT
from steps.agentinstruct.plan import parse_mix, plan_items
from steps.errors import UserError
from steps.estimate import (
    DEFAULT_RATIOS,
    Ratios,
    StageEstimate,
    TokenBudget,
    estimate_magpie,
    estimate_orca3_mix,
    estimate_rest_em,
    observed,
    orca3_mix_estimate,
    prompt_counter,
    render,
    summarise,
    token_cost,
)
from steps.magpie.config import MagpieConfig
from steps.rest_em.problems import arithmetic_problems
from steps.seeds import load_seeds
from steps.taxonomy import load_taxonomy


def quickstart_items(rows: int = 68, rounds: int = 1, tasks: int = 2) -> list[dict]:
    skills = load_taxonomy().resolve(None)
    seeds = load_seeds(str(REPO_ROOT / "seeds" / "sample"), None)
    return plan_items(skills, seeds, rows, parse_mix(None, skills), 42,
                      tasks_per_item=tasks, refinement_rounds=rounds)


def orca(items: list[dict], ratios: Ratios = DEFAULT_RATIOS, **kw) -> dict[str, StageEstimate]:
    counter = prompt_counter("embedded")
    options = {"tasks_per_item": 2, "refinement_rounds": 1, "agent_max_tokens": 512,
               "teacher_max_tokens": 256, **kw}
    stages = estimate_orca3_mix(items, agent=counter, teacher=counter, ratios=ratios, **options)
    return {s.stage: s for s in stages}


def test_requests_per_stage_follow_the_plan() -> None:
    items = quickstart_items()
    taxonomy = load_taxonomy()
    stages = orca(items)
    identity = sum(taxonomy.skill(i["skill"]).transformation_agent(i["transformation_agent"]).identity
                   for i in items)
    extra_turns = sum(taxonomy.skill(i["skill"]).turns - 1 for i in items)
    assert len(items) == 17 and 0 < identity < 17
    assert stages["content_transformation"].requests == 17 - identity  # identity agents: no call
    assert stages["seed_instruction_generation"].requests == 17
    assert stages["suggester"].requests == stages["editor"].requests == 17 * 2  # 2 tasks, 1 round
    units = 17 * 2 * 2  # each task and its refined version
    assert stages["follow_up"].requests == units // 17 * extra_turns
    assert stages["response_generation"].requests == units + stages["follow_up"].requests
    no_rounds = orca(items, refinement_rounds=0)
    assert "suggester" not in no_rounds
    assert no_rounds["response_generation"].requests < stages["response_generation"].requests


def test_tokens_grow_with_the_expected_output_and_retries() -> None:
    items = quickstart_items()
    none, some = orca(items, Ratios(0.0, 0.0)), orca(items, Ratios(0.5, 0.5))
    assert all(s.output_tokens == 0 for s in none.values())
    # prompts hold the upstream text: the teacher's input grows with the agents' output
    assert some["response_generation"].input_tokens > none["response_generation"].input_tokens
    # the transformation prompt holds only the seed, known up front
    assert some["content_transformation"].input_tokens == none["content_transformation"].input_tokens
    assert some["editor"].output_tokens == 34 * round(0.5 * 512)
    retried = orca(items, Ratios(0.5, 0.5), retry_rate={"editor": 0.5})
    assert retried["editor"].requests == 51 and retried["suggester"] == some["suggester"]


def test_chat_tokens_are_what_llama_cpp_counts() -> None:
    counter = prompt_counter("embedded")
    messages = [{"role": "user", "content": "Hello there"}]
    # SmolLM2's template adds its default system turn: 32 tokens, as create_chat_completion's usage
    # reported for this chat with the embedded model (llama-cpp-python 0.3.36)
    assert counter.chat(messages) == 32
    assert counter.raw("Hello there") == 2
    assert "SmolLM2" in counter.description


def test_served_model_without_a_local_tokenizer_is_counted_approximately() -> None:
    counter = prompt_counter("openai:some-model@http://127.0.0.1:1/v1")
    assert "approximate" in counter.description and counter.chat([{"role": "user", "content": "x"}])


def test_observed_ratio_throughput_and_retries_from_run_json(tmp_path: Path) -> None:
    assert observed(tmp_path).output_scale is None
    (tmp_path / "run.json").write_text(json.dumps({
        "wall_time_s": 100.0, "tokens": {"input": 5000, "output": 1000},
        "config": {"agent_max_tokens": 100, "teacher_max_tokens": 50},
        "agent_calls": {"editor:goal/x": {"requests": 8, "retries": 2, "failures": 0},
                        "response_generation/teacher": {"requests": 10, "retries": 0, "failures": 0}}}))
    seen = observed(tmp_path)
    predicted = 10 * DEFAULT_RATIOS.agent * 100 + 10 * DEFAULT_RATIOS.answer * 50
    assert seen.output_scale == round(1000 / predicted, 4)
    assert seen.throughput == 10.0
    assert seen.retry_rate == {"editor:goal": 0.25, "response_generation": 0.0}


def test_summary_render_time_and_cost() -> None:
    stages = [StageEstimate("a", "agent", 2, 1_000_000, 100_000),
              StageEstimate("a", "agent", 1, 500_000, 50_000),
              StageEstimate("b", "teacher", 3, 0, 150_000)]
    estimate = summarise(stages, {"agent": "test tokenizer"}, ratios=DEFAULT_RATIOS, ratio_source="default",
                         throughput=1000.0, throughput_source="given", price_in=2.0, price_out=8.0)
    assert [s.stage for s in estimate.stages] == ["a", "b"] and estimate.requests == 6
    assert estimate.total_tokens == 1_800_000 and estimate.seconds == 300.0
    assert estimate.cost == pytest.approx(1.5 * 2 + 0.3 * 8)
    table = render(estimate)
    assert "1,500,000" in table and "5 min" in table and "cost: ~5.40" in table
    assert "time: unknown" in render(summarise(stages, {}, ratios=DEFAULT_RATIOS, ratio_source="x"))
    assert token_cost(10, 10, None, None) is None


def test_budget_caps() -> None:
    budget = TokenBudget(max_tokens_total=1000)
    assert budget.reached({"input": 600, "output": 399}) is None
    assert "--max-tokens-total" in budget.reached({"input": 600, "output": 400})
    money = TokenBudget(max_cost=1.0, price_in=1.0, price_out=10.0)
    assert money.reached({"input": 500_000, "output": 40_000}) is None
    assert "--max-cost" in money.reached({"input": 500_000, "output": 50_000})
    with pytest.raises(UserError, match="--price-in"):
        TokenBudget(max_cost=1.0)
    with pytest.raises(UserError, match="--max-tokens-total"):
        TokenBudget(max_tokens_total=0)
    big = summarise([StageEstimate("a", "agent", 1, 2000, 0)], {}, ratios=DEFAULT_RATIOS, ratio_source="x")
    assert "stop early" in budget.check_estimate(big)


def test_rest_em_and_magpie_requests() -> None:
    counter = prompt_counter("embedded")
    problems = arithmetic_problems(10, seed=0)
    samples, greedy = estimate_rest_em(problems, counter=counter, k=4, max_new_tokens=100,
                                       iterations=2, ratios=Ratios(0.1, 0.5))
    assert (samples.requests, greedy.requests) == (80, 20)
    assert samples.input_tokens == 4 * greedy.input_tokens and samples.output_tokens == 80 * 50
    stages = estimate_magpie(MagpieConfig(rows=6, turns=2), counter=counter, responder=counter,
                             ratios=Ratios(0.1, 0.5))
    assert [(s.stage, s.requests) for s in stages] == [("magpie_instruction", 6), ("magpie_response", 6)] * 2
    assert stages[0].output_tokens == 6 * 64  # stopped at the first newline, not 0.1 × 2048
    assert stages[2].input_tokens > stages[0].input_tokens  # turn 2 reads turn 1


def test_orca3_mix_estimate_uses_what_the_last_run_observed(tmp_path: Path) -> None:
    items = quickstart_items(rows=8)
    options = {"agent_llm": "embedded", "teacher": "embedded", "tasks_per_item": 2,
               "refinement_rounds": 1, "agent_max_tokens": 512, "teacher_max_tokens": 256}
    fresh = orca3_mix_estimate(items, repo_dir=tmp_path, price_in=1.0, **options)
    assert fresh.ratios == DEFAULT_RATIOS and fresh.seconds is None
    assert fresh.cost == pytest.approx(fresh.input_tokens / 1e6)
    (tmp_path / "run.json").write_text(json.dumps({
        "wall_time_s": 10.0, "tokens": {"input": 100, "output": 512},
        "config": {"agent_max_tokens": 512, "teacher_max_tokens": 256},
        "agent_calls": {"suggester/s": {"requests": 10, "retries": 0, "failures": 0}}}))
    again = orca3_mix_estimate(items, repo_dir=tmp_path, **options)
    # 512 generated where the defaults predicted 10 × agent ratio × 512: both ratios scaled so
    factor = 512 / (10 * DEFAULT_RATIOS.agent * 512)
    assert (again.ratios.agent, again.ratios.answer) == pytest.approx(
        (DEFAULT_RATIOS.agent * factor, DEFAULT_RATIOS.answer * factor), abs=1e-3)
    assert again.output_tokens < fresh.output_tokens
    assert again.seconds == pytest.approx(again.output_tokens / 51.2)
    assert "scaled to what the last run" in render(again) and "measured" in render(again)


def test_served_model_named_by_a_local_tokenizer_folder_uses_it(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1, "there": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "chat_template": "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}",
        "bos_token": "", "eos_token": ""}))
    counter = prompt_counter(f"openai:{tmp_path}@http://127.0.0.1:1/v1")
    assert "local tokenizer.json" in counter.description
    # "[", "user", "]", "hi", "there": five word-level tokens
    assert counter.chat([{"role": "user", "content": "hi there"}]) == 5
