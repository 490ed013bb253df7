"""What every version of a task must keep, checked after each stage that can change it.

A reply can parse and still be unusable: a passage that is the prompt itself, a user turn with an
unfilled `{placeholder}`, a multiple-choice task without options, a tool-use task whose API list
the Editor replaced with prose. The stages call these checks where they parse (then a failed
reply is retried) or apply replies (then the task is dropped, or an edit rejected and the earlier
version kept); either way the reason is recorded in the row's failures and counted on the card.

Structures, from the taxonomy (`taxonomies/agentinstruct/*.yaml`) and `outputs.py`:
- multiple choice (`multiple_choice` skills and agents): lettered options `A) …` — at least two,
  distinct — and an answer that names one of them (paper: the MCQ split and LSAT-style RC types);
- tool use (`context: tools`): the passage is a JSON API list (`outputs.Api`); a call names a
  listed API with its parameters, and comes or not as the scenario says (`tool_call`);
- every text an agent writes for the student or the next agent: no echo of the prompt frame and
  no placeholder that the prompt did not contain.
"""

from __future__ import annotations

import json
import re
import string
from typing import Any

from pydantic import TypeAdapter, ValidationError

from steps.agentinstruct.agent_task import OutputError, Request
from steps.agentinstruct.outputs import Api, Question, ToolRequest
from steps.taxonomy import InstructionAgent, Skill, Taxonomy

# An option line as seed instructions render them (`A) text`), also `(B) text`, `C. text`.
OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[).:]\s+\S", re.MULTILINE)
# `{name}` / `{{name}}` not after `\cmd`, `^`, `_`, `}` or a letter (LaTeX: \frac{a}{b}, x^{n}),
# and blanks such as `[Your Name]`, `[insert date]`, `<insert passage>`.
PLACEHOLDER = re.compile(
    r"(?<![\\^_}\w])\{\{?\s*[A-Za-z_]\w{0,40}\s*\}\}?"
    r"|\[(?:insert|your|enter|add|placeholder|todo|tbd)\b[^\]\n]{0,60}\]"
    r"|<(?:insert|your|placeholder)\b[^>\n]{0,60}>",
    re.IGNORECASE,
)
CODE_SPAN = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)  # code may hold braces on purpose
ECHO_WORDS = 8  # a run of this many words of a prompt frame is copied, not written
ECHO_RUNS = 2  # …and this many such runs make a reply an echo of its prompt

API_LIST = TypeAdapter(list[Api])


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _runs(text: str) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i : i + ECHO_WORDS]) for i in range(len(words) - ECHO_WORDS + 1)}


_FRAME_RUNS: dict[str, frozenset[tuple[str, ...]]] = {}


def frame_runs(taxonomy: Taxonomy) -> frozenset[tuple[str, ...]]:
    """Every run of `ECHO_WORDS` words in the taxonomy's own prompt text.

    The frames (split at their placeholders, which the seed or passage fills) and every agent's and goal's
    instructions. Cached per taxonomy version.
    """
    if taxonomy.version not in _FRAME_RUNS:
        p = taxonomy.prompts
        texts = [p.transformation, *p.instruction.values(), p.suggester, p.editor, p.follow_up,
                 p.tools_system]
        for skill in taxonomy.skills.values():
            texts += [skill.description, *(a.instructions for a in skill.transformation_agents),
                      *(a.prompt or "" for a in skill.transformation_agents),
                      *(a.instructions for a in skill.instruction_agents),
                      *(a.prompt or "" for a in skill.instruction_agents),
                      *(g.instructions for g in skill.refinement_goals)]
        runs: set[tuple[str, ...]] = set()
        for text in texts:
            for literal in re.split(r"\{\w*\}", text):  # no run across a filled-in field
                runs |= _runs(literal)
        _FRAME_RUNS[taxonomy.version] = frozenset(runs)
    return _FRAME_RUNS[taxonomy.version]


def echoes_prompt(text: str, taxonomy: Taxonomy) -> bool:
    """Whether `text` copies the prompt frame (e.g. a "passage" that is the transformation prompt itself).

    `ECHO_RUNS` or more runs of `ECHO_WORDS` words of the taxonomy's prompt text.
    """
    return len(_runs(text) & frame_runs(taxonomy)) >= ECHO_RUNS


def leftover_placeholders(text: str, source: str) -> list[str]:
    """Template placeholders in `text` (outside code spans) that `source` does not contain.

    `source` is the prompt or the passage the text was written from: such a placeholder is a
    blank nobody filled.
    """
    return [found for found in PLACEHOLDER.findall(CODE_SPAN.sub(" ", text)) if found not in source]


def text_problem(text: str, source: str, taxonomy: Taxonomy) -> str | None:
    """The reason a text an agent wrote is unusable (`prompt_echo`, `placeholder`), or None."""
    if echoes_prompt(text, taxonomy):
        return "prompt_echo"
    if leftover_placeholders(text, source):
        return "placeholder"
    return None


def check_reply(text: str, request: Request | None, taxonomy: Taxonomy) -> None:
    """Raise for a text reply that echoes its prompt or holds an unfilled placeholder.

    The stage then retries it like a reply that does not parse.

    Raises:
        OutputError: with reason `prompt_echo` or `placeholder`.
    """
    prompt = "\n".join(m["content"] for m in request.messages) if request is not None else ""
    if problem := text_problem(text, prompt, taxonomy):
        raise OutputError(problem)


def option_letters(instruction: str) -> list[str]:
    """The option letters (A, B, …) of the lettered option lines of a rendered task, in order."""
    return OPTION_LINE.findall(instruction)


def has_options(instruction: str) -> bool:
    """Lettered option lines A, B, … (at least two, in order) in a rendered task."""
    letters = option_letters(instruction)
    return len(letters) >= 2 and "".join(letters) == string.ascii_uppercase[: len(letters)]


def answer_names_option(answer: str, options: list[str]) -> bool:
    """Whether the answer is an option's letter or the text of an option.

    Letters may be written `B`, `(B)`, `B) text`, or `A, C` for select-all.
    """
    letters = set(string.ascii_uppercase[: len(options)])
    answer = answer.strip()
    picked = re.fullmatch(r"\(?([A-Z])\)?(?:[.):]\s*.*)?", answer, re.DOTALL)
    if picked:
        return picked[1] in letters
    several = re.fullmatch(r"[A-Z](?:\s*(?:,|and|&)\s*[A-Z])+", answer)
    if several:
        return set(re.findall(r"[A-Z]", answer)) <= letters
    normal = answer.lower().strip(" .")
    return any(normal == option.lower().strip(" .") for option in options)


def api_list(passage: str) -> list[dict[str, Any]] | None:
    """The APIs of a tool-use passage (a JSON list of `outputs.Api`), or None if it is not one."""
    try:
        apis = API_LIST.validate_json(passage)
    except ValidationError:
        return None
    return [api.model_dump() for api in apis] if apis else None


def tool_request_problem(request: ToolRequest, apis: list[dict[str, Any]] | None,
                         expected: str | None) -> str | None:
    """Why a tool-use request breaks its structure.

    A call where the scenario has none or none where it needs one, a call to an API not listed, an
    argument the API does not take, a required parameter left out (AgentInstruct paper §2.3, tool
    use: the four scenarios).
    """
    if apis is None:
        return "invalid_api_list"
    call = request.call
    if expected == "required" and call is None:
        return "missing_call"
    if expected == "none" and call is not None:
        return "unexpected_call"
    if call is None:
        return None
    api = next((a for a in apis if a["name"] == call.name), None)
    if api is None:
        return "unknown_api"
    parameters = {p["name"]: p for p in api["parameters"]}
    given = {argument.name for argument in call.arguments}
    if given - parameters.keys():
        return "unknown_argument"
    if {name for name, p in parameters.items() if p["required"]} - given:
        return "missing_required_argument"
    return None


def task_problem(skill: Skill, agent: InstructionAgent, item: str | Question | ToolRequest,
                 instruction: str, passage: str, taxonomy: Taxonomy) -> str | None:
    """Why a seed instruction is unusable, or None.

    `instruction` is the task as the student will read it (a question with its options rendered);
    `passage` is the text it is about.
    """
    if problem := text_problem(instruction, passage, taxonomy):
        return problem
    if isinstance(item, Question) and skill.is_multiple_choice(agent):
        options = [option.strip() for option in item.options]
        if len(options) < 2 and not has_options(instruction):
            return "missing_options"
        if len({option.lower() for option in options}) < len(options):
            return "duplicate_options"
        if options and not answer_names_option(item.answer, options):
            return "answer_not_an_option"
    if isinstance(item, ToolRequest):
        return tool_request_problem(item, api_list(passage), agent.tool_call)
    return None


def edit_problem(skill: Skill, agent: InstructionAgent, instruction: str, passage: str) -> str | None:
    """Why an Editor's version breaks the skill's structure, or None.

    A multiple-choice task must keep lettered options, a tool-use passage must stay an API list.
    """
    if skill.is_multiple_choice(agent) and not has_options(instruction):
        return "missing_options"
    if skill.context_of(agent) == "tools" and api_list(passage) is None:
        return "invalid_api_list"
    return None


def failure(stage: str, agent: str, reason: str, raw_output: str | None, key: Any) -> dict[str, Any]:
    """A failure record as `AgentTask.process` writes them, for what a stage's checks reject."""
    return {"stage": stage, "agent": agent, "reason": reason, "raw_output": raw_output,
            "key": json.dumps(key)}
