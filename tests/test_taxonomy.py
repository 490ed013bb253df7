"""The AgentInstruct taxonomy: the paper's facts hold, every prompt frame fits every agent, the
sample seeds serve every skill, and a malformed file fails with one line naming file and key."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from steps import REPO_ROOT
from steps.agentinstruct.plan import parse_mix
from steps.errors import UserError
from steps.seeds import load_seeds
from steps.taxonomy import TAXONOMY_DIR, Taxonomy, load_taxonomy

SPLITS = {  # agentinstruct.md §2
    "reading_comprehension": "rc",
    "open_domain_qa": "open_domain_qa",
    "text_modification": "text_modification",
    "web_agent": "webagent_flow",
    "brain_teaser": "brain_teaser",
    "analytical_reasoning": "analytical_reasoning",
    "multiple_choice_questions": "mcq",
    "data_to_text": "struct2text_flow",
    "fermi": "fermi",
    "coding": "code_",
    "text_extraction": "text_extraction",
    "text_classification": "text_classification",
    "retrieval_augmented_generation": "rag",
    "tool_use": "tool_use",
    "creative_content_generation": "creative_content",
    "few_shot_reasoning": "fs_cot_flow",
    "conversation": "follow_up",
}
PUBLIC_RC_TYPES = {  # agentinstruct.md §3
    "Literal Comprehension", "Numerical Discrete Reasoning", "Critical Comprehension",
    "Evaluative Comprehension", "Vocabulary and Language Use", "Relationship Comprehension",
    "Sequencing Events", "Strengthen", "Weaken", "Assumption", "Flaw", "Inference", "Principle",
    "Method of Reasoning",
}
TEXT_MODIFICATION_TYPES = {  # agentinstruct.md §4
    "Paraphrasing", "Simplification", "Expansion", "Translation", "Formatting",
    "Sentiment Change", "Annotation", "Keyword Replacement", "Removal and Redaction",
    "Capitalization", "Styling", "Content Rewriting", "Data Normalization",
    "Plagiarism Rewording", "Code Switching", "Obfuscation", "Textual Entailment",
    "Rewriting with Vocabulary Limits",
}


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


def test_the_17_skills_carry_their_dataset_split_names(taxonomy: Taxonomy) -> None:
    """The paper's 17 skills are all there under their orca-agentinstruct-1M splits; a skill added
    as one more YAML file is validated by the tests that walk every skill, with no edit here."""
    splits = {skill_id: skill.split for skill_id, skill in taxonomy.skills.items()}
    assert {skill_id: splits.get(skill_id) for skill_id in SPLITS} == SPLITS
    assert len(set(splits.values())) == len(splits)  # one dataset config per skill
    assert [s.id for s in taxonomy.resolve(["rc", "code_"])] == ["reading_comprehension", "coding"]


@pytest.mark.parametrize(("names", "ids"), [
    (["rc", "reading_comprehension"], ["reading_comprehension"]),
    (["reading_comprehension", "rc", "rc"], ["reading_comprehension"]),
    (["code_", " rc", "coding", ""], ["coding", "reading_comprehension"]),
    (["mcq", "multiple_choice_questions", "fermi", "mcq"], ["multiple_choice_questions", "fermi"]),
])
def test_a_skill_named_twice_is_planned_once(taxonomy: Taxonomy, names: list[str],
                                             ids: list[str]) -> None:
    assert [s.id for s in taxonomy.resolve(names)] == ids


@pytest.mark.parametrize(("spec", "needle"), [
    ("rc=nan", "finite"), ("rc=inf", "finite"), ("rc=-inf", "finite"), ("rc=NaN", "finite"),
    ("rc=-1", "finite number ≥ 0"), ("rc=", "must be a number"), ("rc=two", "must be a number"),
    ("rc=1,reading_comprehension=2", "name the same skill"), ("rc=0,code_=0", "not all be zero"),
    ("fermi=1", "not one of the selected skills"),
])
def test_bad_mix_is_one_line(taxonomy: Taxonomy, spec: str, needle: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_mix(spec, taxonomy.resolve(["rc", "code_"]))
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_mix_by_id_or_split_name(taxonomy: Taxonomy) -> None:
    skills = taxonomy.resolve(["rc", "code_"])
    assert parse_mix(" rc = 2 , coding=0.5", skills) == {"reading_comprehension": 2.0,
                                                        "coding": 0.5}


def test_structure_flags_cover_the_options_and_call_types(taxonomy: Taxonomy) -> None:
    mcq = taxonomy.skill("multiple_choice_questions")
    assert all(mcq.is_multiple_choice(a) for a in mcq.instruction_agents)
    rc = taxonomy.skill("reading_comprehension")
    assert rc.is_multiple_choice(rc.instruction_agent("strengthen"))
    assert not rc.is_multiple_choice(rc.instruction_agent("literal_comprehension"))
    tool_use = taxonomy.skill("tool_use")
    assert {a.id: a.tool_call for a in tool_use.instruction_agents} == {
        "single_api": "required", "api_sequence": "required", "no_suitable_api": "none",
        "missing_parameter": "none"}


def test_over_100_subcategories_and_every_skill_has_all_three_flows(taxonomy: Taxonomy) -> None:
    assert taxonomy.subcategory_count >= 100
    for skill in taxonomy.skills.values():
        assert len(skill.transformation_agents) >= 2, skill.id
        assert len(skill.instruction_agents) >= 3, skill.id
        assert len(skill.refinement_goals) >= 2, skill.id


def test_reading_comprehension_matches_the_paper(taxonomy: Taxonomy) -> None:
    rc = taxonomy.skill("reading_comprehension")
    assert len(rc.transformation_agents) == 9
    assert [a.id for a in rc.transformation_agents if a.identity] == ["identity"]
    assert len(rc.instruction_agents) == 43
    assert {a.name for a in rc.instruction_agents} >= PUBLIC_RC_TYPES
    assert {a.output for a in rc.instruction_agents} == {"questions"}
    assert {g.id for g in rc.refinement_goals} == {
        "unanswerable", "answer_changes", "harder_question"}


def test_reading_comprehension_routes_question_types_by_passage(taxonomy: Taxonomy) -> None:
    rc = taxonomy.skill("reading_comprehension")
    allowed = {a.id: {q.id for q in rc.allowed_instruction_agents(a.id)}
               for a in rc.transformation_agents}
    assert all(a.question_types for a in rc.transformation_agents)  # routing is explicit
    assert {"strengthen", "weaken", "assumption", "flaw"} <= allowed["argument_passage"]
    assert "strengthen" not in allowed["poem"]
    assert "figurative_language" in allowed["poem"] - allowed["argument_passage"]
    assert set().union(*allowed.values()) == {a.id for a in rc.instruction_agents}


def test_text_modification_has_the_18_task_types(taxonomy: Taxonomy) -> None:
    names = [a.name for a in taxonomy.skill("text_modification").instruction_agents]
    assert len(names) == 18
    assert set(names) == TEXT_MODIFICATION_TYPES


def test_tool_use_synthesises_apis_from_code_and_has_the_4_scenarios(taxonomy: Taxonomy) -> None:
    tool_use = taxonomy.skill("tool_use")
    assert tool_use.seed_kinds == ["code"]
    assert tool_use.context == "tools"
    assert {a.id for a in tool_use.transformation_agents if a.output == "apis"} == {
        "api_synthesis", "library_reconstruction"}
    assert len(tool_use.instruction_agents) == 4
    assert {a.output for a in tool_use.instruction_agents} == {"tool_requests"}


def test_question_skills_return_questions_and_open_qa_stands_alone(taxonomy: Taxonomy) -> None:
    mcq = taxonomy.skill("multiple_choice_questions")
    assert {a.output for a in mcq.instruction_agents} == {"questions"}
    odqa = taxonomy.skill("open_domain_qa")
    assert {odqa.context_of(a) for a in odqa.instruction_agents} == {"none"}
    rag = taxonomy.skill("retrieval_augmented_generation")
    assert {rag.context_of(a) for a in rag.instruction_agents} == {"passage"}


def test_agents_other_than_identity_have_short_instructions(taxonomy: Taxonomy) -> None:
    for skill in taxonomy.skills.values():
        agents = [*skill.transformation_agents, *skill.instruction_agents, *skill.refinement_goals]
        for agent in agents:
            if getattr(agent, "identity", False):
                continue
            sentences = len(re.findall(r"[.!?](\s|$)", agent.instructions))
            assert 1 <= sentences <= 3, (skill.id, agent.id, agent.instructions)


def _documented_placeholders() -> dict[str, str]:
    """Every field named in the header comment of _prompts.yaml, with a recognisable value."""
    header = "".join(line for line in (TAXONOMY_DIR / "_prompts.yaml").read_text().splitlines(True)
                     if line.startswith("#"))
    return {name: f"<{name}>" for name in re.findall(r"\{(\w+)\}", header)}


def test_every_prompt_frame_formats_for_every_agent(taxonomy: Taxonomy) -> None:
    fields = _documented_placeholders()
    frames = taxonomy.prompts
    assert fields["apis"] in frames.tools_system.format(**fields)
    for skill in taxonomy.skills.values():
        base = {**fields, "skill_name": skill.name, "skill_description": skill.description}
        for agent in skill.transformation_agents:
            agent_fields = {**base, "agent_name": agent.name,
                            "agent_instructions": agent.instructions}
            prompt = (agent.prompt or frames.transformation).format(**agent_fields)
            assert agent.instructions in prompt and fields["text"] in prompt
        for agent in skill.instruction_agents:
            agent_fields = {**base, "agent_name": agent.name,
                            "agent_instructions": agent.instructions}
            prompt = (agent.prompt or frames.instruction[agent.output]).format(**agent_fields)
            assert agent.instructions in prompt and fields["text"] in prompt
        for goal in skill.refinement_goals:
            goal_fields = {**base, "goal_name": goal.name, "goal_instructions": goal.instructions}
            for frame in (frames.suggester, frames.editor):
                prompt = frame.format(**goal_fields)
                assert goal.instructions in prompt and fields["instruction"] in prompt


def test_sample_seeds_serve_every_skill_and_fit_a_small_context(taxonomy: Taxonomy) -> None:
    folder = REPO_ROOT / "seeds" / "sample"
    seeds = load_seeds(str(folder))
    assert len(seeds) == len(list(folder.iterdir()))  # every file is a seed the loader accepts
    for skill in taxonomy.skills.values():
        assert any(seed.kind in skill.seed_kinds for seed in seeds), skill.id
    for seed in seeds:
        assert len(seed.text.encode()) < 3000, seed.source


# --- malformed files: one line naming the file and the key -------------------------------------


def _edit(mutate: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        data = yaml.safe_load(path.read_text())
        mutate(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return apply


def _bad_syntax(path: Path) -> None:
    path.write_text(path.read_text() + "\nextra: [unclosed\n")


def _second_skill_on_same_split(path: Path) -> None:
    shutil.copy(path, path.with_name("fermi_copy.yaml"))


BROKEN = {
    "bad YAML syntax": ("fermi.yaml", _bad_syntax, ["not valid YAML", "line"]),
    "missing required key": (
        "fermi.yaml", _edit(lambda d: d.pop("split")), ["split", "Field required"]),
    "unknown top-level key": (
        "fermi.yaml", _edit(lambda d: d.update(colour="blue")), ["colour", "Extra inputs"]),
    "unknown agent key": (
        "fermi.yaml",
        _edit(lambda d: d["instruction_agents"][1].update(instruction="typo of instructions")),
        ["instruction_agents.1.instruction", "Extra inputs"]),
    "bad output value": (
        "fermi.yaml", _edit(lambda d: d["instruction_agents"][2].update(output="essays")),
        ["instruction_agents.2.output"]),
    "unknown question type in routing": (
        "reading_comprehension.yaml",
        _edit(lambda d: d["transformation_agents"][0]["question_types"].append("no_such_type")),
        ["transformation_agents.0.question_types", "no_such_type"]),
    "duplicate id": (
        "reading_comprehension.yaml",
        _edit(lambda d: d["instruction_agents"].append(dict(d["instruction_agents"][0]))),
        ["instruction_agents", "duplicate id", "literal_comprehension"]),
    "missing prompt frame": (
        "_prompts.yaml", _edit(lambda d: d.pop("editor")), ["editor", "Field required"]),
    "two skills on one split": ("fermi.yaml", _second_skill_on_same_split, ["split 'fermi'"]),
    "options on a non-question agent": (
        "fermi.yaml", _edit(lambda d: d["instruction_agents"][0].update(multiple_choice=True)),
        ["instruction_agents.0", "multiple_choice"]),
}


@pytest.mark.parametrize("case", BROKEN)
def test_malformed_file_fails_with_one_line_naming_file_and_key(tmp_path: Path, case: str) -> None:
    directory = tmp_path / "agentinstruct"
    shutil.copytree(TAXONOMY_DIR, directory)
    load_taxonomy(directory)  # the copy is valid before it is broken
    filename, breaker, fragments = BROKEN[case]
    breaker(directory / filename)
    with pytest.raises(UserError) as caught:
        load_taxonomy(directory)
    message = str(caught.value)
    assert "\n" not in message
    where = directory if case == "two skills on one split" else directory / filename
    assert message.startswith(f"{where}:")
    for fragment in fragments:
        assert fragment in message
