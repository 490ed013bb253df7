"""Engines: spec parsing, the embedded model, and a real OpenAI-compatible server on loopback."""

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from steps.agentinstruct.outputs import Question
from steps.engines import EngineSpec, LlamaCppEngine, OpenAICompatibleEngine, build_llm, embedded_gguf
from steps.errors import UserError

CHAT = [{"role": "user", "content": "Name one planet of the solar system."}]
SCHEMA = {"format": "json", "schema": Question.model_json_schema()}


@pytest.mark.parametrize("spec", ["", "embedded:x", "llamacpp:", "openai:gpt", "openai:m@ftp://x",
                                  "vllm:", "tgi:model", "llamacpp:/no/such.gguf"])
def test_bad_spec_is_one_line(spec: str) -> None:
    with pytest.raises(UserError) as error:
        EngineSpec.parse(spec)
    assert spec in str(error.value) and "\n" not in str(error.value)


def test_specs() -> None:
    assert EngineSpec.parse("embedded").model == str(embedded_gguf())
    assert embedded_gguf().is_file()
    assert EngineSpec.parse("openai:m@http://h:1/v1") == EngineSpec("openai", "m", "http://h:1/v1")
    assert EngineSpec.parse("vllm:Qwen/Qwen2.5-7B-Instruct").model_id == "Qwen/Qwen2.5-7B-Instruct"
    assert isinstance(build_llm("embedded"), LlamaCppEngine)
    assert isinstance(build_llm("openai:m@http://h:1/v1"), OpenAICompatibleEngine)


@pytest.fixture(scope="module")
def embedded() -> Iterator[LlamaCppEngine]:
    llm = build_llm("embedded", max_new_tokens=400, temperature=0.8, seed=3)
    llm.load()
    yield llm
    llm.unload()


def test_embedded_structured_output_validates(embedded: LlamaCppEngine) -> None:
    out = embedded.generate(inputs=[(CHAT, SCHEMA)], **embedded.generation_kwargs)[0]
    question = Question.model_validate(json.loads(out["generations"][0], strict=False))
    assert question.question and question.answer
    assert out["statistics"]["output_tokens"][0] > 0


def test_sampling_is_seeded_per_input(embedded: LlamaCppEngine) -> None:
    """Same input and seed → same text at T=0.8, whatever else is in the batch; another seed
    changes it."""
    other = [{"role": "user", "content": "Write a haiku about rain."}]
    alone = embedded.generate(inputs=[CHAT], **embedded.generation_kwargs)[0]["generations"]
    batched = embedded.generate(inputs=[other, CHAT], **embedded.generation_kwargs)[1]["generations"]
    assert alone == batched
    reseeded = [embedded.generate(inputs=[CHAT], **{**embedded.generation_kwargs, "seed": s})[0][
        "generations"][0] for s in (4, 5, 6)]
    assert any(text != alone[0] for text in reseeded)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def openai_server() -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server on the embedded model, on loopback."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("llama_cpp.server did not come up on loopback in 60 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_openai_compatible_server(openai_server: str) -> None:
    llm = build_llm(f"openai:smollm2@{openai_server}", max_new_tokens=400, temperature=0.0,
                    top_k=40, repeat_penalty=1.1)  # extras travel in the request body
    llm.load()
    chat, structured, raw = llm.generate_outputs(
        inputs=[CHAT, (CHAT, SCHEMA), "<|im_start|>user\n"], **llm.generation_kwargs)
    assert chat["generations"][0].strip()
    assert Question.model_validate(json.loads(structured["generations"][0], strict=False)).answer
    assert raw["generations"][0] is not None
    assert chat["statistics"]["output_tokens"][0] > 0
