"""The plan asks for exactly the work the quota needs, seeds fit the engine's context, and the
checkpoints count every failure under its config, never leave an empty or stale config, and keep
the wall time of killed tries."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from steps import REPO_ROOT, repo_folder
from steps.agentinstruct.checkpoint import Checkpoints, CheckpointWriter
from steps.agentinstruct.plan import parse_mix, plan_items, quotas, seed_token_budget
from steps.engines import embedded_gguf
from steps.llms.tokenizer import LlamaCppTokenizer, utf8_bytes
from steps.rows import FAILURE_SCHEMA, ROW_SCHEMA, stable_id, to_table
from steps.seeds import Seed, Seeds, cut_to_tokens, fit_seeds
from steps.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy()
SEEDS = [Seed(f"s{i}", f"s{i}.txt", f"text {i}", "text") for i in range(3)] + [
    Seed("c0", "c0.py", "def f(): pass", "code")]


@pytest.mark.parametrize(("rows", "names", "tasks_per_item", "rounds"), [
    (23, ["rc", "mcq", "fermi"], 2, 1), (39, ["rc", "tool_use", "follow_up", "code_"], 2, 1),
    (5, ["rc"], 2, 1), (7, ["rc", "mcq"], 3, 2), (10, ["rc"], 1, 0), (1, ["rc", "mcq"], 2, 1),
    (68, None, 2, 1), (17, ["fermi"], 4, 3),
])
def test_the_plan_asks_exactly_for_the_quota(rows: int, names: list[str] | None,
                                             tasks_per_item: int, rounds: int) -> None:
    skills = TAXONOMY.resolve(names)
    weights = parse_mix(None, skills)
    items = plan_items(skills, SEEDS, rows, weights, 7, tasks_per_item, rounds)
    made: dict[str, int] = {}
    for item in items:
        assert 1 <= item["tasks"] <= tasks_per_item and len(item["refined"]) == rounds
        assert all(0 <= n <= item["tasks"] for n in item["refined"])
        assert item["refined"] == sorted(item["refined"], reverse=True)  # refined tasks only drop
        made[item["skill"]] = made.get(item["skill"], 0) + item["tasks"] + sum(item["refined"])
    expected = {k: v for k, v in quotas(rows, weights).items() if v}
    assert made == expected  # versions a fully successful run makes == rows the quota keeps
    assert len({i["item_id"] for i in items}) == len(items)
    per_skill = {s.id: sum(i["skill"] == s.id for i in items) for s in skills}
    for skill_id, quota in quotas(rows, weights).items():
        assert per_skill[skill_id] == math.ceil(math.ceil(quota / (rounds + 1)) / tasks_per_item)


CHINESE = "黄河是中国第二长的河流，发源于青藏高原，流经九个省区，最后注入渤海。" * 180  # 6,120 chars


@pytest.fixture(scope="module")
def smollm():  # type: ignore[no-untyped-def]
    from llama_cpp import Llama

    model = Llama(model_path=str(embedded_gguf()), n_ctx=512, n_batch=512, verbose=False)
    yield model
    model.close()


def test_cut_seeds_fit_the_context_of_llama_cpp_in_every_prompt(smollm) -> None:  # type: ignore[no-untyped-def]
    """The fault: a 6,000-character Chinese seed is ~8,000 tokens and llama.cpp refuses the
    prompt. Cut to the budget, the largest prompt it reaches (the Editor's, with an identity
    passage, a task and suggestions each as long as an agent reply) leaves room for the reply."""
    tokenize = LlamaCppTokenizer(str(embedded_gguf()))
    agent_max, teacher_max, n_ctx = 32, 32, 512
    skills = TAXONOMY.resolve(["rc"])
    budget = seed_token_budget(skills, TAXONOMY.prompts, tokenize, n_ctx, agent_max, teacher_max, 1)
    assert 50 < budget < n_ctx - 3 * agent_max
    rc = skills[0]
    transformation = TAXONOMY.prompts.transformation.format(
        skill_name=rc.name, skill_description=rc.description, agent_name="Debate",
        agent_instructions=rc.transformation_agents[1].instructions, text=CHINESE)
    with pytest.raises(ValueError, match="exceed context window"):
        smollm.create_chat_completion([{"role": "user", "content": transformation}], max_tokens=1)
    (seed,) = fit_seeds(Seeds([Seed("z", "zh.txt", CHINESE, "text")]), tokenize, budget)
    filler = cut_to_tokens(CHINESE, tokenize, agent_max)  # a task as long as an agent may write
    assert len(tokenize(filler)) == pytest.approx(agent_max, abs=2)
    goal = max(rc.refinement_goals, key=lambda g: len(g.instructions))
    editor = TAXONOMY.prompts.editor.format(
        skill_name=rc.name, goal_name=goal.name, goal_instructions=goal.instructions,
        text=seed.text, instruction=filler, suggestions=filler)
    smollm.reset()
    done = smollm.create_chat_completion([{"role": "user", "content": editor}], max_tokens=1)
    assert done["usage"]["prompt_tokens"] + agent_max <= n_ctx


@pytest.mark.parametrize(("names", "agent_max", "lower_than"), [
    (["rc"], 512, (["rc"], 256)),  # longer replies leave less room for the seed
    (["follow_up"], 256, (["fermi"], 256)),  # three turns of conversation beside the passage
    (["rc", "follow_up"], 256, (["rc"], 256)),  # the run's budget is its tightest skill's
])
def test_budget_leaves_room_for_what_the_seed_shares_prompts_with(names, agent_max, lower_than) -> None:  # type: ignore[no-untyped-def]
    def budget(skill_names: list[str], agent: int) -> int:
        return seed_token_budget(TAXONOMY.resolve(skill_names), TAXONOMY.prompts, utf8_bytes, 8192,
                                 agent, 256, 1)

    assert budget(names, agent_max) < budget(*lower_than)


def _item(skill: str, config: str, units: list, failures: list, item_id: str = "i1") -> dict:
    return {"item_id": item_id, "skill": skill, "config": config, "seed_id": "s", "seed_source": "a.txt",
            "transformation_agent": "t", "instruction_agent": "a", "item_index": 0, "quota": 2,
            "units": units, "failures": failures, "tokens": {"input": 1, "output": 1},
            "calls": {"teacher": [1, 0, 0]}}


def _write(work: Path, items: list[dict]) -> None:
    writer = CheckpointWriter(work_dir=str(work), run_id="r", agent_model="m", teacher_model="m",
                              generation_params="{}")
    list(writer.process(items))


def test_failures_of_a_skill_without_rows_are_filed_under_its_config(tmp_path: Path) -> None:
    repo, work = tmp_path / "repo", tmp_path / "work"
    repo_folder.write_config(repo, "rc", to_table([{"id": "old", "messages": []}]))  # earlier run
    unit = {"task": 0, "round": 0, "goal": None, "reference_answer": None,
            "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    failure = {"stage": "seed_instruction_generation", "agent": "strengthen",
               "reason": "fewer_tasks", "raw_output": "{}", "key": "1"}
    _write(work, [_item("reading_comprehension", "rc", [], [failure, failure]),
                  _item("fermi", "fermi", [unit], [], "i2")])
    summary = Checkpoints(work).assemble(repo)
    assert summary["rows"] == {"fermi": 1}
    assert summary["failure_reasons"] == {"rc/seed_instruction_generation:fewer_tasks": 2}
    assert repo_folder.configs(repo) == ["failures", "fermi"]  # the stale rc config is gone
    failures = repo_folder.read_config(repo, "failures").to_pylist()
    assert {f["config"] for f in failures} == {"rc"}
    assert repo_folder.row_counts(repo) == {"fermi": 1}


def test_a_rerun_without_failures_leaves_no_failures_folder(tmp_path: Path) -> None:
    """The earlier run's failed items succeeded on the rerun: no empty data/failures/ is left."""
    repo, work = tmp_path / "repo", tmp_path / "work"
    failure = {"run_id": "r", "item_id": "i1", "reason": "engine_unavailable"}
    repo_folder.write_config(repo, repo_folder.FAILURES, to_table([failure], FAILURE_SCHEMA))
    unit = {"task": 0, "round": 0, "goal": None, "reference_answer": None,
            "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    _write(work, [_item("fermi", "fermi", [unit], [])])
    assert Checkpoints(work).assemble(repo)["failures"] == 0
    assert repo_folder.configs(repo) == ["fermi"]
    assert sorted(p.name for p in (repo / repo_folder.DATA_DIR).iterdir()) == ["fermi"]


def test_an_empty_config_is_never_written_and_replaces_a_stale_one(tmp_path: Path) -> None:
    assert repo_folder.write_config(tmp_path, "rest_em", ROW_SCHEMA.empty_table()) is None
    assert repo_folder.configs(tmp_path) == []
    repo_folder.write_config(tmp_path, "rest_em", to_table([{"id": stable_id(1)}]))
    repo_folder.write_config(tmp_path, "rc", to_table([{"id": stable_id(2)}]))
    assert repo_folder.write_config(tmp_path, "rest_em", pa.table({"id": pa.array([], pa.string())})) is None
    assert repo_folder.configs(tmp_path) == ["rc"]
    assert not (tmp_path / "data" / "rest_em").exists()


KILLED_TRY = """
import sys, time
from pathlib import Path
from steps.agentinstruct.checkpoint import Checkpoints
with Checkpoints(Path(sys.argv[1])).timed(interval_s=0.1):
    print("started", flush=True)
    time.sleep(60)
"""


def test_wall_time_of_a_resumed_run_includes_killed_tries(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    killed = subprocess.Popen([sys.executable, "-c", KILLED_TRY, str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, text=True)
    assert killed.stdout is not None and killed.stdout.readline() == "started\n"
    time.sleep(1.5)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    first = Checkpoints(tmp_path).elapsed_s
    assert 1.2 <= first <= 3.0
    with Checkpoints(tmp_path).timed():
        time.sleep(0.5)
    assert Checkpoints(tmp_path).elapsed_s == pytest.approx(first + 0.5, abs=0.3)
    assert json.loads(next((tmp_path / "tries").glob("*.json")).read_text())["elapsed_s"] > 0
