"""Every distilabel Step class of the project works inside a real distilabel Pipeline.

distilabel 1.5.3 finds a step's input by reading the `StepInput` hint of `process` at run time
(`_Step.get_process_step_input`); under `from __future__ import annotations` the hint is a string
and the pipeline refuses the step. Two checks: a static one over every Step class (found by
importing every module under `steps/`), and one Pipeline run of one row through a representative
step of each kind (a global step, a generator, plain steps, LLM steps on a stub LLM, no model).
"""

import ast
import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from distilabel.models.llms import LLM
from distilabel.steps import GeneratorStep, LoadDataFromDicts
from distilabel.steps.base import _STEP_INPUT_ANNOTATION, _Step
from distilabel.utils.typing_ import is_parameter_annotated_with

import steps
from steps.agentinstruct.content_transformation import ContentTransformation
from steps.agentinstruct.refinement import Suggester
from steps.agentinstruct.response import ResponseGeneration
from steps.curation.distilabel_steps import CurateRows
from steps.llms.base import Generation, engine_output
from steps.magpie.pipeline import PackConversations
from steps.magpie.turns import MagpieConversations, MagpieResponse
from steps.pipeline import Pipeline
from steps.rest_em.estep import KeepCorrect

ROOT = Path(__file__).resolve().parent.parent
REPLY = "Bees dance to show where the flowers are; the angle points at the sun."


def _project_step_classes() -> list[type[_Step]]:
    for module in pkgutil.walk_packages(steps.__path__, "steps."):
        importlib.import_module(module.name)  # an import error fails the test: no step is missed
    found, todo = [], list(_Step.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("steps.") and cls not in found:
            found.append(cls)
    return sorted(found, key=lambda cls: (cls.__module__, cls.__qualname__))


STEP_CLASSES = _project_step_classes()


def _postpones_annotations(module_name: str) -> bool:
    tree = ast.parse(inspect.getsource(sys.modules[module_name]))
    return any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names)
               for node in tree.body)


def test_the_project_defines_the_steps_it_is_known_for() -> None:
    names = {cls.__name__ for cls in STEP_CLASSES}
    assert {"CurateRows", "LLMStep", "AgentTask", "MagpieTask", "MagpieConversations",
            "SampleSolutions", "CheckpointWriter", "PlannedItems"} <= names


@pytest.mark.parametrize("cls", STEP_CLASSES, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_step_modules_keep_annotations_evaluated(cls: type[_Step]) -> None:
    """No module defining the class or a project base of it postpones annotations, and `process`
    takes a parameter distilabel recognises as `StepInput` (generators take an offset)."""
    for base in cls.__mro__:
        if base.__module__.startswith("steps."):
            assert not _postpones_annotations(base.__module__), (
                f"{base.__module__} has `from __future__ import annotations`")
    if issubclass(cls, GeneratorStep):
        return
    parameters = inspect.signature(cls.process).parameters.values()
    assert [p.name for p in parameters if is_parameter_annotated_with(p, _STEP_INPUT_ANNOTATION)], (
        f"{cls.__name__}.process has no parameter distilabel resolves as StepInput")


class StubLLM(LLM):
    """A fixed reply for every prompt: `REPLY`, or a JSON document when the request has a schema."""

    def load(self) -> None:
        super().load()

    @property
    def model_name(self) -> str:
        return "stub"

    def generate(self, inputs: list[Any], num_generations: int = 1,  # type: ignore[override]
                 seed: int = 0) -> list[dict[str, Any]]:
        return [engine_output([Generation(json.dumps({"apis": []}) if p.schema else REPLY, 3, 5)]
                              * num_generations) for p in inputs]


ROW = {
    # AgentInstruct work item (taxonomies/: reading_comprehension)
    "item_id": "i0", "skill": "reading_comprehension", "seed_text": "Honeybees dance to tell "
    "each other where flowers are. The angle of the dance points relative to the sun.",
    "transformation_agent": "argument_passage", "instruction_agent": "strengthen",
    "refinement_goals": ["unanswerable"], "passage": "Bees dance.",
    "units": [{"task": 0, "round": 0, "goal": None, "instruction": "Why do bees dance?",
               "passage": "Bees dance.", "reference_answer": None, "response": None}],
    # Magpie conversation and curation rows
    "conversation_id": 0, "domain": "general", "failures": [], "failed": False,
    "messages": [{"role": "user", "content": "Why do honeybees dance in front of the hive?"},
                 {"role": "assistant", "content": REPLY}],
    # ReST-EM scored samples
    "outcome": ["fail", "pass"],
}


def run_one_row_pipeline() -> dict[str, list[dict[str, Any]]]:
    """One row through a step of each kind, each a branch of one pipeline: the leaves' rows."""
    with Pipeline(name="every-kind-of-step") as pipeline:
        load = LoadDataFromDicts(name="load", data=[ROW], batch_size=1)
        leaves = [
            CurateRows(name="curate"),
            ContentTransformation(name="transform", llm=StubLLM()),
            Suggester(name="suggest", llm=StubLLM(), round=1),
            ResponseGeneration(name="answer", llm=StubLLM()),
            MagpieResponse(name="respond", llm=StubLLM()),
            KeepCorrect(name="keep"),
        ]
        for leaf in leaves:
            load >> leaf
        MagpieConversations(name="conversations", num_rows=1, domains=["general"]) >> PackConversations(
            name="pack", total=1)
    distiset = pipeline.run(use_cache=False)
    return {name: distiset[name]["train"].to_list()
            for name in ["curate", "transform", "suggest", "answer", "respond", "keep", "pack"]}


def test_one_row_runs_through_each_kind_of_step_in_a_pipeline() -> None:
    """In a fresh process: distilabel forks its step processes, and a fork after an in-process
    llama.cpp (loaded by other tests of the session) hangs."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(len(got) == 1 for got in rows.values()), {k: len(v) for k, v in rows.items()}
    assert rows["transform"][0]["passage"] == REPLY and rows["transform"][0]["failed"] is False
    assert rows["suggest"][0]["suggestions"] == [{"task": 0, "text": REPLY}]
    assert rows["answer"][0]["units"][0]["messages"][-1] == {"role": "assistant", "content": REPLY}
    assert rows["respond"][0]["messages"][-1] == {"role": "assistant", "content": REPLY}
    assert rows["respond"][0]["tokens"] == {"input": 3, "output": 5}
    assert rows["keep"][0]["kept"] == [1]
    assert rows["curate"][0]["item_id"] == "i0"
    assert json.loads(rows["pack"][0]["conversation"])["conversation_id"] == 0
    print(f"one-row pipeline of 9 steps: {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    print(json.dumps(run_one_row_pipeline(), default=str))
