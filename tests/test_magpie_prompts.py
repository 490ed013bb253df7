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

from steps.engines import EngineSpec, build_llm
from steps.llms.base import Prompt
from steps.llms.llamacpp import LlamaCppEngine
from steps.magpie.chat_template import resolve_template
from steps.magpie.sampling import Sampling, generation_kwargs, instruction_stops
from steps.magpie.turns import MagpieInstruction, MagpieResponse

pytestmark = pytest.mark.model
EMBEDDED = EngineSpec.parse("embedded")
SHORT = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=6)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every prompt LlamaCppEngine.generate receives (its text)."""
    seen: list[Any] = []
    original = LlamaCppEngine.generate

    @functools.wraps(original)
    def spy(self: LlamaCppEngine, inputs: list[Any], **kwargs: Any) -> Any:
        seen.extend(item.messages for item in inputs)
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
    return [{"conversation_id": i, "domain": domain, "messages": messages, "failures": [],
             "failed": False}
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
        if not after["failed"]:
            assert after["messages"][:-1] == before["messages"]
            new = after["messages"][-1]
            assert new["role"] == "user" and new["content"] == new["content"].strip() != ""
        else:
            assert [f["reason"] for f in after["failures"]] == ["empty_instruction"]
            assert after["messages"] == before["messages"]


def test_response_prompt_sent_is_the_templates_rendering(
    llm: LlamaCppEngine, sent: list[Any]
) -> None:
    template = resolve_template(EMBEDDED)
    step = MagpieResponse(name="response", llm=llm, template=template)
    conversation = [*TURN_1, {"role": "user", "content": "And 3+3?"}]
    row = {"conversation_id": 0, "domain": "default", "messages": conversation, "failed": False}
    failed = {**row, "conversation_id": 1, "failed": True, "failures": [{"reason": "empty"}]}
    out = next(step.process([row, failed]))
    assert sent == [reference_render(template, conversation, add_generation_prompt=True)]
    # failed upstream: passed through, no engine call
    assert (out[1]["messages"], out[1]["failures"]) == (conversation, failed["failures"])


def test_each_row_has_its_own_seed(llm: LlamaCppEngine) -> None:
    """The same prompt under different seeds varies; under the same seed it repeats."""
    prompt = resolve_template(EMBEDDED).pre_query_prompt([])
    outputs = llm.generate([Prompt(prompt, seed=seed) for seed in (11, 12, 13, 11)],
                           **llm.generation_kwargs)
    texts = [output["generations"][0] for output in outputs]
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
    outputs = llm.generate_outputs([Prompt(prompt, seed=seed) for seed in (21, 22, 21)],
                                   **llm.generation_kwargs)
    texts = [output["generations"][0] for output in outputs]
    assert all(text is not None for text in texts) and texts[0] == texts[2]
    step = MagpieInstruction(name="instruction", llm=llm, template=template,
                             system_prompts={"default": None, "steered": SYSTEM})
    out = next(step.process(rows()))
    assert {f["reason"] for row in out for f in row["failures"]} <= {"empty_instruction"}
    assert any(not row["failed"] for row in out)
