"""Each AgentInstruct Task: the prompts it sends, and how it parses what comes back."""

import json

import pytest

from steps.agentinstruct.agent_task import OutputError, Request
from steps.agentinstruct.content_transformation import ContentTransformation
from steps.agentinstruct.follow_up import FollowUpQuestion
from steps.agentinstruct.outputs import ApiList, Edit, Question
from steps.agentinstruct.refinement import Editor, Suggester
from steps.agentinstruct.response import ResponseGeneration
from steps.agentinstruct.seed_instructions import SeedInstructionGeneration
from steps.engines import build_llm
from steps.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy()
SEED = "Honeybees tell each other where flowers are by dancing. The angle of the dance points."


def task(cls: type, **kwargs: object):  # type: ignore[no-untyped-def]
    """A Task with its taxonomy but no model loaded: enough to format prompts."""
    made = cls(llm=build_llm("embedded"), **kwargs)
    made._taxonomy = TAXONOMY
    return made


def item(skill: str, transformation: str, instruction: str, **extra: object) -> dict:
    return {"item_id": "i", "skill": skill, "seed_text": SEED, "passage": "PASSAGE",
            "transformation_agent": transformation, "instruction_agent": instruction,
            "refinement_goals": [TAXONOMY.skill(skill).refinement_goals[0].id], **extra}


def test_transformation_prompt_identity_and_api_schema() -> None:
    rc = TAXONOMY.skill("reading_comprehension")
    argument = rc.transformation_agent("argument_passage")
    (request,) = task(ContentTransformation).requests(
        item("reading_comprehension", "argument_passage", "strengthen"))
    assert argument.instructions in request.messages[0]["content"]
    assert SEED in request.messages[0]["content"] and request.schema is None
    assert task(ContentTransformation).requests(
        item("reading_comprehension", "identity", "strengthen")) == []
    tool = TAXONOMY.skill("tool_use")
    apis = next(a for a in tool.transformation_agents if a.output == "apis")
    (request,) = task(ContentTransformation).requests(
        item("tool_use", apis.id, tool.instruction_agents[0].id))
    assert request.schema is ApiList


def test_seed_instruction_schema_is_bounded_by_max_items() -> None:
    (request,) = task(SeedInstructionGeneration, max_items=3).requests(
        item("reading_comprehension", "argument_passage", "strengthen"))
    schema = request.schema.model_json_schema()
    assert schema["properties"]["questions"]["maxItems"] == 3
    assert "PASSAGE" in request.messages[0]["content"]
    assert TAXONOMY.skill("reading_comprehension").instruction_agent("strengthen").instructions \
        in request.messages[0]["content"]


def test_questions_become_tasks_with_options_and_answers() -> None:
    row = item("reading_comprehension", "argument_passage", "strengthen")
    sig = task(SeedInstructionGeneration, max_items=2)
    reply = sig.parse(json.dumps({"questions": [
        {"question": "Which fact helps?", "options": ["Dances", "Colours"], "answer": "A"}]}),
        sig.requests(row)[0])
    sig.apply(row, {"tasks": reply})
    (unit,) = row["units"]
    assert unit["instruction"] == "Which fact helps?\nA) Dances\nB) Colours"
    assert unit["reference_answer"] == "A" and unit["round"] == 0 and not row["failed"]


def test_suggester_then_editor_add_a_refined_version() -> None:
    unit = {"task": 0, "round": 0, "goal": None, "instruction": "Q?", "passage": "P",
            "reference_answer": None, "response": None}
    row = item("reading_comprehension", "argument_passage", "strengthen", units=[unit])
    goal = TAXONOMY.skill("reading_comprehension").refinement_goals[0]
    (ask,) = task(Suggester, round=1).requests(row)
    assert goal.instructions in ask.messages[0]["content"] and ask.key == 0
    row["suggestions"] = [{"task": 0, "text": "Add a distractor."}]
    editor = task(Editor, round=1)
    (edit,) = editor.requests(row)
    assert edit.schema is Edit and "Add a distractor." in edit.messages[0]["content"]
    editor.apply(row, {0: Edit(instruction="Harder Q?", text=None)})
    assert [(u["round"], u["instruction"], u["passage"]) for u in row["units"]] == [
        (0, "Q?", "P"), (1, "Harder Q?", "P")]  # null text keeps the passage


@pytest.mark.parametrize(("skill", "first_role", "has_passage"), [
    ("reading_comprehension", "user", True), ("fermi", "user", False), ("tool_use", "system", True)])
def test_teacher_sees_what_the_student_will(skill: str, first_role: str, has_passage: bool) -> None:
    s = TAXONOMY.skill(skill)
    unit = {"task": 0, "round": 0, "instruction": "TASK", "passage": "PASSAGE"}
    row = item(skill, s.transformation_agents[0].id, s.instruction_agents[0].id, units=[unit])
    (request,) = task(ResponseGeneration).requests(row)
    assert request.messages[0]["role"] == first_role
    assert ("PASSAGE" in json.dumps(request.messages)) == has_passage
    assert request.messages[-1] == {"role": "user", "content": request.messages[-1]["content"]}


def test_follow_up_only_for_multi_turn_skills() -> None:
    chat = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    unit = {"task": 0, "round": 0, "messages": chat}
    multi = TAXONOMY.skill("conversation")
    assert multi.turns >= 2
    row = item("conversation", multi.transformation_agents[0].id, multi.instruction_agents[0].id,
               units=[unit])
    (request,) = task(FollowUpQuestion, turn=2).requests(row)
    assert "ASSISTANT: A" in request.messages[0]["content"]
    assert task(FollowUpQuestion, turn=multi.turns + 1).requests(row) == []
    single = item("fermi", "quantity_inventory", TAXONOMY.skill("fermi").instruction_agents[0].id,
                  units=[unit])
    assert task(FollowUpQuestion, turn=2).requests(single) == []


@pytest.mark.parametrize(("output", "reason"), [
    ("   ", "empty_output"), ('{"question": "Q", "answ', "invalid_json"),
    ('{"question": "Q"}', "schema_mismatch")])
def test_unusable_replies_are_labelled(output: str, reason: str) -> None:
    schema = Question if output.startswith("{") else None
    with pytest.raises(OutputError) as error:
        task(ResponseGeneration).parse(output, Request(0, "a", [], schema))
    assert error.value.reason == reason


def test_parses_real_embedded_model_output() -> None:
    """The embedded model's structured reply, grammar-constrained, parses into the task list."""
    sig = SeedInstructionGeneration(llm=build_llm("embedded", max_new_tokens=400, seed=1),
                                    max_items=1)
    sig.load()
    try:
        (row,) = next(sig.process([item("reading_comprehension", "argument_passage",
                                        "literal_comprehension", passage=SEED)]))
    finally:
        sig.unload()
    assert row["tokens"]["output"] > 0
    assert row["units"] or row["failures"]  # parsed, or recorded with its reason
    for unit in row["units"]:
        assert unit["instruction"] and unit["reference_answer"]
