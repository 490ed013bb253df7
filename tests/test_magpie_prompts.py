"""What the Magpie steps send to the engine (the embedded model, spied on), byte for byte."""

import functools
from collections.abc import Iterator
from typing import Any

import pytest
from test_engines import openai_server  # noqa: F401 - the loopback server fixture
from test_magpie_template import (
    LLAMA3_TEMPLATE,
    SYSTEM,
    TURN_1,
    reference_pre_query,
    reference_render,
)

from steps.engines import EngineSpec, LlamaCppEngine, build_llm
from steps.magpie.chat_template import resolve_template
from steps.magpie.sampling import Sampling, generation_kwargs, instruction_stops
from steps.magpie.task import generate_seeded
from steps.magpie.turns import MagpieInstruction, MagpieResponse

pytestmark = pytest.mark.model
EMBEDDED = EngineSpec.parse("embedded")
SHORT = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=6)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every input LlamaCppEngine.generate receives."""
    seen: list[Any] = []
    original = LlamaCppEngine.generate

    @functools.wraps(original)
    def spy(self: LlamaCppEngine, inputs: list[Any], **kwargs: Any) -> Any:
        seen.extend(inputs)
        return original(self, inputs=inputs, **kwargs)

    monkeypatch.setattr(LlamaCppEngine, "generate", spy)
    return seen


@pytest.fixture(scope="module")
def llm() -> Iterator[LlamaCppEngine]:
    chatml = resolve_template(EMBEDDED)
    engine = build_llm(EMBEDDED, **generation_kwargs(EMBEDDED, SHORT, instruction_stops(chatml)))
    engine.load()
    yield engine
    engine.unload()


def rows() -> list[dict[str, Any]]:
    """Turn 1 and turn 2, each with and without a steering system prompt."""
    return [{"conversation_id": i, "domain": domain, "messages": messages, "failure": None,
             "failure_stage": None, "failure_raw": None}
            for i, (domain, messages) in enumerate(
                [("default", []), ("steered", []), ("default", TURN_1), ("steered", TURN_1)])]


@pytest.mark.parametrize("name", ["chatml", "llama3"])
def test_instruction_prompts_sent_are_the_templates_rendering(
    name: str, llm: LlamaCppEngine, sent: list[Any]
) -> None:
    template = resolve_template(EMBEDDED) if name == "chatml" else LLAMA3_TEMPLATE
    step = MagpieInstruction(name="instruction", llm=llm, template=template,
                             system_prompts={"default": None, "steered": SYSTEM})
    out = next(step.process(rows()))
    expected = [reference_pre_query(template, history) for history in (
        [], [{"role": "system", "content": SYSTEM}], TURN_1,
        [{"role": "system", "content": SYSTEM}, *TURN_1])]
    assert sent == expected
    for before, after in zip(rows(), out, strict=True):  # a stripped user turn, or a failure
        if after["failure"] is None:
            assert after["messages"][:-1] == before["messages"]
            new = after["messages"][-1]
            assert new["role"] == "user" and new["content"] == new["content"].strip() != ""
        else:
            assert after["failure"] == "empty_instruction" and after["messages"] == []


def test_response_prompt_sent_is_the_templates_rendering(
    llm: LlamaCppEngine, sent: list[Any]
) -> None:
    template = resolve_template(EMBEDDED)
    step = MagpieResponse(name="response", llm=llm, template=template)
    conversation = [*TURN_1, {"role": "user", "content": "And 3+3?"}]
    row = {"conversation_id": 0, "domain": "default", "messages": conversation, "failure": None}
    failed = {**row, "conversation_id": 1, "failure": "empty_instruction"}
    out = next(step.process([row, failed]))
    assert sent == [reference_render(template, conversation, add_generation_prompt=True)]
    assert out[1] == failed  # failed upstream: passed through, no engine call


def test_each_row_has_its_own_seed(llm: LlamaCppEngine) -> None:
    """The same prompt under different seeds varies; under the same seed it repeats."""
    prompt = resolve_template(EMBEDDED).pre_query_prompt([])
    texts = generate_seeded(llm, [prompt] * 4, [11, 12, 13, 11])
    assert texts[0] == texts[3]
    assert len(set(texts[:3])) > 1


def test_openai_compatible_engine_gets_raw_prompts(openai_server: str) -> None:  # noqa: F811
    """A server (llama.cpp's, on loopback) gets the prompt on /v1/completions, one seed per row,
    requests concurrent; its template comes from --template."""
    spec = EngineSpec.parse(f"openai:smollm2@{openai_server}")
    template = resolve_template(spec, "chatml")
    llm = build_llm(spec, **generation_kwargs(spec, SHORT, instruction_stops(template)))
    llm.load()
    prompt = template.pre_query_prompt([])
    texts = generate_seeded(llm, [prompt] * 3, [21, 22, 21])
    assert all(text is not None for text in texts) and texts[0] == texts[2]
    step = MagpieInstruction(name="instruction", llm=llm, template=template,
                             system_prompts={"default": None, "steered": SYSTEM})
    out = next(step.process(rows()))
    assert {row["failure"] for row in out} <= {None, "empty_instruction"}
    assert any(row["failure"] is None for row in out)
