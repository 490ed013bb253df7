"""Each skill keeps its structure through every stage: options of multiple-choice tasks, the API
list of tool use; echoes of the prompt and unfilled placeholders are caught; every task rejected
or not written is a counted failure."""

import json

import pytest

from steps.agentinstruct import structure
from steps.agentinstruct.agent_task import OutputError
from steps.agentinstruct.content_transformation import ContentTransformation
from steps.agentinstruct.follow_up import FollowUpQuestion
from steps.agentinstruct.outputs import Edit, Question, ToolCall, ToolRequest, task_list
from steps.agentinstruct.refinement import Editor
from steps.agentinstruct.seed_instructions import SeedInstructionGeneration
from steps.engines import build_llm
from steps.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy()
PASSAGE = "Honeybees tell each other where flowers are by dancing. The angle of the dance points."
APIS = [{"name": "get_weather", "description": "Weather for a city on a date.", "parameters": [
    {"name": "city", "type": "string", "description": "City name", "required": True},
    {"name": "date", "type": "string", "description": "ISO date", "required": False}]}]
API_PASSAGE = json.dumps(APIS, indent=1)


def task(cls: type, **kwargs: object):  # type: ignore[no-untyped-def]
    made = cls(llm=build_llm("embedded"), **kwargs)
    made._taxonomy = TAXONOMY
    return made


def item(skill: str, instruction: str, **extra: object) -> dict:
    s = TAXONOMY.skill(skill)
    return {"item_id": "i", "skill": skill, "seed_text": PASSAGE, "passage": PASSAGE,
            "transformation_agent": s.transformation_agents[0].id, "instruction_agent": instruction,
            "refinement_goals": [s.refinement_goals[0].id], "failures": [], **extra}


def q(question: str = "Which fact helps?", options: tuple[str, ...] = ("Dances", "Colours"),
      answer: str = "A") -> Question:
    return Question(question=question, options=list(options), answer=answer)


def call(name: str = "get_weather", **arguments: str) -> ToolCall:
    return ToolCall(name=name, arguments=[{"name": k, "value": v} for k, v in arguments.items()])


SEED_TASKS = {  # case: (skill, agent, item, passage, reason)
    "mcq with options": ("multiple_choice_questions", "concept_check", q(), PASSAGE, None),
    "mcq without options": ("multiple_choice_questions", "concept_check", q(options=()), PASSAGE,
                            "missing_options"),
    "mcq one option": ("multiple_choice_questions", "application", q(options=("Only",)), PASSAGE,
                       "missing_options"),
    "mcq options in the question text": (
        "multiple_choice_questions", "concept_check",
        q(question="Which is a mammal?\nA) Whale\nB) Shark\nC) Trout", options=()), PASSAGE, None),
    "mcq duplicate options": ("multiple_choice_questions", "concept_check",
                              q(options=("Bees", "bees", "Ants")), PASSAGE, "duplicate_options"),
    "mcq answer beyond the options": ("multiple_choice_questions", "concept_check",
                                      q(answer="E"), PASSAGE, "answer_not_an_option"),
    "mcq answer is an option's text": ("multiple_choice_questions", "concept_check",
                                       q(answer="colours."), PASSAGE, None),
    "mcq answer not among the options": ("multiple_choice_questions", "concept_check",
                                         q(answer="Smell"), PASSAGE, "answer_not_an_option"),
    "select all that apply": ("multiple_choice_questions", "select_all",
                              q(options=("a", "b", "c", "d", "e"), answer="A, C and E"), PASSAGE,
                              None),
    "rc lsat type without options": ("reading_comprehension", "strengthen", q(options=()), PASSAGE,
                                     "missing_options"),
    "rc short answer without options": ("reading_comprehension", "literal_comprehension",
                                        q(options=(), answer="By dancing"), PASSAGE, None),
    "unfilled {suggestion}": ("open_domain_qa", "factual_recall", "Explain {suggestion} in two lines.",
                              PASSAGE, "placeholder"),
    "unfilled {{topic}}": ("open_domain_qa", "factual_recall", "Write about {{ topic }}.", PASSAGE,
                           "placeholder"),
    "unfilled [Your Name]": ("open_domain_qa", "factual_recall", "Sign the letter as [Your Name].",
                             PASSAGE, "placeholder"),
    "latex braces are not placeholders": ("open_domain_qa", "factual_recall",
                                          r"Simplify \frac{a}{b} + x^{n} for n = 2.", PASSAGE, None),
    "braces in a code span": ("open_domain_qa", "factual_recall", "What does `f'{name}'` print?",
                              PASSAGE, None),
    "braces the passage has": ("open_domain_qa", "factual_recall", "What does {name} stand for?",
                               "print(f'{name}')", None),
    "task echoing the prompt frame": (
        "open_domain_qa", "factual_recall",
        "Write up to 2 different, self-contained tasks of this type about the text above.",
        PASSAGE, "prompt_echo"),
    "tool call as listed": ("tool_use", "single_api",
                            ToolRequest(request="Weather in Oslo?", call=call(city="Oslo")),
                            API_PASSAGE, None),
    "tool call to an api not listed": ("tool_use", "single_api",
                                       ToolRequest(request="Book it", call=call("book_flight")),
                                       API_PASSAGE, "unknown_api"),
    "tool call with an unknown argument": (
        "tool_use", "single_api",
        ToolRequest(request="Weather?", call=call(city="Oslo", units="C")), API_PASSAGE,
        "unknown_argument"),
    "tool call without a required parameter": (
        "tool_use", "api_sequence", ToolRequest(request="Weather?", call=call(date="2024-01-01")),
        API_PASSAGE, "missing_required_argument"),
    "single api scenario without a call": ("tool_use", "single_api",
                                           ToolRequest(request="Weather in Oslo?"), API_PASSAGE,
                                           "missing_call"),
    "no suitable api scenario with a call": (
        "tool_use", "no_suitable_api", ToolRequest(request="Play jazz", call=call(city="Oslo")),
        API_PASSAGE, "unexpected_call"),
    "missing parameter scenario, no call": ("tool_use", "missing_parameter",
                                            ToolRequest(request="What's the weather?"),
                                            API_PASSAGE, None),
    "tool task on prose instead of an api list": (
        "tool_use", "single_api", ToolRequest(request="Weather in Oslo?", call=call(city="Oslo")),
        "The library has a weather function.", "invalid_api_list"),
}


@pytest.mark.parametrize("case", SEED_TASKS)
def test_seed_instruction_structure(case: str) -> None:
    skill_id, agent_id, made, passage, reason = SEED_TASKS[case]
    skill = TAXONOMY.skill(skill_id)
    instruction = made if isinstance(made, str) else (
        made.request if isinstance(made, ToolRequest) else
        made.question + "".join(f"\n{'ABCDE'[i]}) {o}" for i, o in enumerate(made.options)))
    assert structure.task_problem(skill, skill.instruction_agent(agent_id), made, instruction,
                                  passage, TAXONOMY) == reason


def test_multiple_choice_schema_makes_options_appear() -> None:
    sig = task(SeedInstructionGeneration, max_items=2)
    (request,) = sig.requests(item("multiple_choice_questions", "concept_check", tasks=3))
    schema = request.schema.model_json_schema()
    assert schema["properties"]["questions"]["maxItems"] == 3  # what the plan asked of this item
    assert "up to 3 questions" in request.messages[0]["content"]
    question = schema["$defs"]["MultipleChoiceQuestion"]
    assert "options" in question["required"] and question["properties"]["options"]["minItems"] == 2
    assert question["properties"]["answer"]["pattern"] == "^[A-E](, [A-E]){0,4}$"  # by letter
    with pytest.raises(OutputError, match="schema_mismatch"):
        sig.parse(json.dumps({"questions": [{"question": "Q?", "answer": "A"}]}), request)
    assert task_list("questions", 2).model_json_schema()["$defs"]["Question"].get("required") == [
        "question", "answer"]  # other question types may have none


def test_rejected_and_missing_tasks_are_counted() -> None:
    sig = task(SeedInstructionGeneration, max_items=3)
    row = item("reading_comprehension", "strengthen", tasks=3)
    reply = task_list("questions", 3)(questions=[q(), q(options=(), question="No options?")])
    sig.apply(row, {"tasks": reply})
    assert [u["instruction"] for u in row["units"]] == ["Which fact helps?\nA) Dances\nB) Colours"]
    assert [(f["stage"], f["reason"]) for f in row["failures"]] == [
        ("seed_instruction_generation", "missing_options"),
        ("seed_instruction_generation", "fewer_tasks")]  # 3 asked, 2 written
    assert not row["failed"]


def _edit_row(skill: str, agent: str, instruction: str, passage: str) -> dict:
    unit = {"task": 0, "round": 0, "goal": None, "instruction": instruction, "passage": passage,
            "reference_answer": "A", "response": None}
    return item(skill, agent, units=[unit], passage=passage)


EDITS = {  # case: (skill, agent, first instruction, passage, edit, reason or None)
    "mcq keeps its options": (
        "multiple_choice_questions", "concept_check", "Q?\nA) x\nB) y", PASSAGE,
        Edit(instruction="Harder Q?\nA) x\nB) y\nC) z", text=None), None),
    "mcq loses its options": (
        "multiple_choice_questions", "concept_check", "Q?\nA) x\nB) y", PASSAGE,
        Edit(instruction="Harder Q? Explain your reasoning.", text=None), "missing_options"),
    "tool list replaced by prose": (
        "tool_use", "single_api", "Weather in Oslo?", API_PASSAGE,
        Edit(instruction="Weather in Oslo next Friday?", text="Use the weather tool wisely."),
        "invalid_api_list"),
    "tool list edited, still a list": (
        "tool_use", "single_api", "Weather in Oslo?", API_PASSAGE,
        Edit(instruction="Weather in Oslo next Friday?", text=json.dumps(APIS * 1)), None),
    "passage edited freely": (
        "reading_comprehension", "main_idea", "Main idea?", PASSAGE,
        Edit(instruction="Main idea of paragraph 1?", text="Bees dance. Ants do not."), None),
}


@pytest.mark.parametrize("case", EDITS)
def test_edits_that_break_the_structure_keep_the_previous_version(case: str) -> None:
    skill, agent, first, passage, edit, reason = EDITS[case]
    row = _edit_row(skill, agent, first, passage)
    task(Editor, round=1).apply(row, {0: edit})
    if reason is None:
        assert [u["round"] for u in row["units"]] == [0, 1] and not row["failures"]
        if skill == "tool_use":
            assert structure.api_list(row["units"][1]["passage"]) == APIS
    else:
        assert [u["round"] for u in row["units"]] == [0]  # the previous version stays
        (failure,) = row["failures"]
        assert (failure["stage"], failure["reason"]) == ("editor", reason)


def test_a_passage_that_is_its_prompt_is_retried_as_an_echo() -> None:
    transform = task(ContentTransformation)
    (request,) = transform.requests(item("reading_comprehension", "argument_passage"))
    prompt = request.messages[0]["content"]
    with pytest.raises(OutputError, match="prompt_echo"):
        transform.parse(prompt, request)
    with pytest.raises(OutputError, match="prompt_echo"):  # its frame without the seed
        transform.parse(prompt.replace(PASSAGE, ""), request)
    assert transform.parse(f"An argument: {PASSAGE} So bees navigate.", request)


@pytest.mark.parametrize(("reply", "reason"), [
    ("Could you give an example of {suggestion}?", "placeholder"),
    ("Thanks! Can you explain [insert topic] again?", "placeholder"),
    ("Could you give an example of that with numbers?", None),
])
def test_follow_up_turns_with_placeholders_are_retried(reply: str, reason: str | None) -> None:
    follow = task(FollowUpQuestion, turn=2)
    chat = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    unit = {"task": 0, "round": 0, "messages": chat}
    skill = TAXONOMY.skill("conversation")
    (request,) = follow.requests(item("conversation", skill.instruction_agents[0].id,
                                          units=[unit]))
    if reason:
        with pytest.raises(OutputError, match=reason):
            follow.parse(reply, request)
    else:
        assert follow.parse(reply, request) == reply


def test_editor_reply_echoing_its_prompt_is_retried() -> None:
    editor = task(Editor, round=1)
    row = _edit_row("reading_comprehension", "main_idea", "Main idea?", PASSAGE)
    row["suggestions"] = [{"task": 0, "text": "Ask about paragraph 1."}]
    (request,) = editor.requests(row)
    frame = request.messages[0]["content"]
    with pytest.raises(OutputError, match="prompt_echo"):
        editor.parse(json.dumps({"instruction": frame[:400], "text": None}), request)
    with pytest.raises(OutputError, match="placeholder"):
        editor.parse(json.dumps({"instruction": "Given {suggestions}, what?"}), request)
