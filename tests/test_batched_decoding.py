"""Batched decoding on the embedded model gives what llama-cpp-python's sequential calls give."""

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as steps.engines: llama.cpp threads must not spin

from llama_cpp import Llama  # noqa: E402

from steps.engines import build_llm, embedded_gguf  # noqa: E402
from steps.llms.base import Prompt, generation_seed  # noqa: E402
from steps.llms.batched_decoding import BatchedDecoder, DecodeRequest  # noqa: E402
from steps.llms.llamacpp import LlamaCppEngine  # noqa: E402

pytestmark = pytest.mark.model

TOKENS = 24
CHATS = [[{"role": "user", "content": q}] for q in
         ("What is 17 + 25?", "Name three fruits.", "Write a haiku about rain.", "Say hello in French.")]
RAW = "<|im_start|>user\n"  # Magpie-style pre-query prompt: the model writes an instruction
FEW_SHOT = [  # a ReST-EM E-step prompt (steps.rest_em.prompts)
    {"role": "user", "content": "Solve the problem step by step. End with a final line of the form "
     "'Answer: N' where N is the number.\n\nLea has 5 pens. Lea gets 3 more pens, then gives away 2 "
     "pens. How many pens does Lea have now?"},
    {"role": "assistant", "content": "Lea starts with 5 pens. After getting 3 more she has 5 + 3 = 8. After "
     "giving away 2 she has 8 - 2 = 6.\nAnswer: 6"},
    {"role": "user", "content": "Hana has 11 cards. Hana gets 8 more cards, then gives away 12 cards. "
     "How many cards does Hana have now?"},
]
SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string", "maxLength": 40},
                   "answer": {"type": "integer"}},
    "required": ["question", "answer"],
}


@pytest.fixture(scope="module")
def llama() -> Iterator[Llama]:
    model = Llama(model_path=str(embedded_gguf()), n_ctx=1024, n_threads=1, n_threads_batch=1,
                  verbose=False)
    yield model
    model.close()


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    llm = build_llm("embedded", n_threads=1, max_new_tokens=TOKENS)
    llm.n_ctx = 256
    llm.load()
    yield llm
    llm.unload()


def sequential(llama: Llama, prompt: str | list[dict[str, str]], **sampling: Any) -> str:
    """The current engine's call: one completion at a time, no prefix cache."""
    llama.reset()
    if isinstance(prompt, str):
        return llama.create_completion(prompt=prompt, **sampling)["choices"][0]["text"]
    return llama.create_chat_completion(messages=prompt, **sampling)["choices"][0]["message"]["content"]


def test_greedy_batched_is_identical_to_sequential(llama: Llama) -> None:
    """Chat and raw prompts, one with a stop string, two samples of one greedy request."""
    greedy = dict(max_tokens=TOKENS, temperature=0.0, repeat_penalty=1.0)
    expected = [sequential(llama, chat, **greedy) for chat in CHATS]
    expected_raw = sequential(llama, RAW, stop=["\n"], **greedy)
    requests = [DecodeRequest(chat, max_new_tokens=TOKENS) for chat in CHATS]
    requests.append(DecodeRequest(RAW, seeds=(1, 2), max_new_tokens=TOKENS, stop=("\n",)))
    with BatchedDecoder(llama, n_seq_max=4, n_ctx_per_seq=256) as decoder:
        results = decoder.generate(requests)
    assert [r.texts[0] for r in results[:4]] == expected
    assert results[4].texts == [expected_raw, expected_raw]
    assert all(r.error is None and r.prompt_tokens > 0 for r in results)


def test_sampled_outputs_follow_the_seed_not_the_batch(llama: Llama) -> None:
    """Same seeds → the sequential engine's texts, whether the request is alone or behind long
    prompts in fewer slots than samples (most samples then start late, copying the prompt from a
    live sibling and re-reading its end)."""
    sampling = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    seeds = tuple(range(11, 15))
    target = DecodeRequest(CHATS[0], seeds=seeds, max_new_tokens=TOKENS, **sampling)
    penalized = DecodeRequest(CHATS[1], seeds=(7,), max_new_tokens=TOKENS, repeat_penalty=1.1, **sampling)
    long_chats = [[{"role": "user", "content": "Think step by step and show your work. " * 15 + q}]
                  for q in ("What is 3 * 14?", "What is 90 - 37?", "What is 8 + 65?")]
    others = [DecodeRequest(chat, seeds=(5,), max_new_tokens=TOKENS, **sampling) for chat in long_chats]
    expected = [sequential(llama, CHATS[0], max_tokens=TOKENS, repeat_penalty=1.0, seed=s, **sampling)
                for s in seeds]
    expected_penalized = sequential(llama, CHATS[1], max_tokens=TOKENS, repeat_penalty=1.1, seed=7,
                                    **sampling)
    expected_others = [sequential(llama, chat, max_tokens=TOKENS, repeat_penalty=1.0, seed=5, **sampling)
                       for chat in long_chats]
    with BatchedDecoder(llama, n_seq_max=8, n_ctx_per_seq=256) as decoder:
        alone = decoder.generate([target])[0]
    with BatchedDecoder(llama, n_seq_max=2, n_ctx_per_seq=256) as decoder:
        crowded = decoder.generate([*others, target, penalized])
    assert sum(r.prompt_tokens for r in crowded[:3]) > llama.n_batch  # prompts longer than a batch
    assert alone.texts == expected
    assert crowded[3].texts == expected
    assert crowded[4].texts == [expected_penalized]
    assert [r.texts[0] for r in crowded[:3]] == expected_others
    assert len(set(expected)) > 1  # the seeds matter


def test_a_sample_that_starts_late_reads_the_prompt_end_as_sequential_does(llama: Llama) -> None:
    """The second sample gets a slot only when the first request ends; it copies the prompt from its
    live sibling and re-reads the last two prompt tokens. Re-reading only the last one gives other
    logits (llama.cpp rounds a lone token differently) and, for this prompt and seed, another text."""
    sampling = dict(temperature=0.7, top_k=40, top_p=1.0, min_p=0.0)
    seed = 784969621
    expected = sequential(llama, FEW_SHOT, max_tokens=8, repeat_penalty=1.0, seed=seed, **sampling)
    with BatchedDecoder(llama, n_seq_max=2, n_ctx_per_seq=256) as decoder:
        _, late = decoder.generate([DecodeRequest(CHATS[3], max_new_tokens=1),
                                    DecodeRequest(FEW_SHOT, seeds=(1, seed), max_new_tokens=8, **sampling)])
    assert late.texts[1] == expected


def test_json_schema_constrained_output_parses(llama: Llama) -> None:
    chat = [{"role": "user", "content": "Write a math question and its answer as JSON."}]
    expected = sequential(llama, chat, max_tokens=64, temperature=0.0, repeat_penalty=1.0,
                          response_format={"type": "json_object", "schema": SCHEMA})
    with BatchedDecoder(llama, n_seq_max=2, n_ctx_per_seq=256) as decoder:
        result = decoder.generate([DecodeRequest(chat, seeds=(1, 2), max_new_tokens=64, temperature=0.9,
                                                 json_schema=SCHEMA),
                                   DecodeRequest(chat, max_new_tokens=64, json_schema=SCHEMA)])
    for text in [*result[0].texts, result[1].texts[0]]:
        parsed = json.loads(text)
        assert isinstance(parsed["question"], str) and isinstance(parsed["answer"], int)
    assert result[1].texts[0] == expected


def test_failures_are_reported_per_request(llama: Llama) -> None:
    long_chat = [{"role": "user", "content": "word " * 300}]
    with BatchedDecoder(llama, n_seq_max=2, n_ctx_per_seq=256) as decoder:
        overflow, fine, bad_schema, empty = decoder.generate([
            DecodeRequest(long_chat, seeds=(1, 2)),
            DecodeRequest(CHATS[0], max_new_tokens=8),
            DecodeRequest(CHATS[0], max_new_tokens=8, json_schema={"type": "nonsense"}),
            DecodeRequest("", max_new_tokens=8),
        ])
    assert overflow.error == "context_overflow"
    assert (overflow.texts, overflow.completion_tokens) == ([None, None], [0, 0])
    assert overflow.prompt_tokens > 256
    assert fine.error is None and fine.texts[0] and fine.completion_tokens[0] <= 8
    assert bad_schema.error == "invalid_schema"
    assert empty.error == "empty_prompt"


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="seeds"):
        DecodeRequest("x", seeds=(2**32 - 1,))
    with pytest.raises(ValueError, match="max_new_tokens"):
        DecodeRequest("x", max_new_tokens=0)


def test_engine_greedy_output_equals_the_sequential_engine(llama: Llama, engine: LlamaCppEngine) -> None:
    """The engine (batched) gives the texts of the engine before batching: llama-cpp-python, one
    completion at a time, same settings."""
    greedy = dict(max_tokens=TOKENS, temperature=0.0, top_k=0, repeat_penalty=1.0, stop=["\n"])
    expected = [sequential(llama, prompt, **greedy) for prompt in [*CHATS, RAW]]
    outputs = engine.generate(inputs=[*CHATS, RAW], max_new_tokens=TOKENS, stop=["\n"])
    assert [o["generations"][0] for o in outputs] == expected
    assert all(o["errors"] == [None] and o["statistics"]["output_tokens"][0] > 0 for o in outputs)


def test_engine_reads_a_shared_prompt_once_and_keeps_each_inputs_seeds(
        llama: Llama, engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs with the same prompt (Magpie's pre-query prompt, seeded per row) become one decode
    request; each input still gets the texts its own seeds give sequentially."""
    sent: list[DecodeRequest] = []
    generate = engine._decoder.generate
    monkeypatch.setattr(engine._decoder, "generate",
                        lambda requests: sent.extend(requests) or generate(requests))
    sampling = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
    inputs = [Prompt(RAW, seed=1), Prompt(CHATS[0]), Prompt(RAW, seed=2)]
    outputs = engine.generate(inputs=inputs, num_generations=2, max_new_tokens=TOKENS, seed=9, **sampling)
    assert len(sent) == 2 and len(sent[0].seeds) == 4  # RAW once, with both inputs' seeds
    for prompt, output in zip(inputs, outputs, strict=True):
        assert output["generations"] == [
            sequential(llama, prompt.messages, max_tokens=TOKENS, seed=generation_seed(prompt, i, 9),
                       **sampling) for i in range(2)]
    assert outputs[0]["generations"] != outputs[2]["generations"]


def test_engine_reports_the_decoders_refusals_as_errors(engine: LlamaCppEngine) -> None:
    long, bad_schema, fine = engine.generate(inputs=[
        Prompt("word " * 300), Prompt(CHATS[0], {"type": "nonsense"}), Prompt(CHATS[0])], max_new_tokens=8)
    assert long["generations"] == [None] and long["errors"][0]["reason"] == "context_overflow"
    assert "exceed context window of 256" in long["errors"][0]["message"]
    assert bad_schema["errors"][0]["reason"] == "invalid_schema"
    assert fine["errors"] == [None] and fine["generations"][0]


def test_max_new_tokens_is_cut_to_the_context_left(llama: Llama) -> None:
    # Magpie asks 4,096 new tokens of a 4,096-token context: decode what fits instead of refusing.
    with BatchedDecoder(llama, n_seq_max=1, n_ctx_per_seq=256) as decoder:
        (result,) = decoder.generate([DecodeRequest("word " * 200, seeds=(3,), temperature=0.7,
                                                    max_new_tokens=400)])
    assert result.error is None and 0 < result.prompt_tokens < 256
    assert result.texts[0] is not None
    assert result.completion_tokens[0] <= 256 - result.prompt_tokens
