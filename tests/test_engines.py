"""Engines: spec parsing, the table of kinds, the embedded model, and a real OpenAI-compatible
server on loopback."""

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from steps.agentinstruct.outputs import Question
from steps.engines import KINDS, EngineSpec, build_llm, check_engine, embedded_gguf
from steps.errors import UserError
from steps.llms.base import Prompt
from steps.llms.batched_decoding import DecodeRequest, DecodeResult
from steps.llms.llamacpp import LlamaCppEngine
from steps.llms.openai_compatible import OpenAICompatibleEngine

CHAT = [{"role": "user", "content": "Name one planet of the solar system."}]
SCHEMA = {"format": "json", "schema": Question.model_json_schema()}


@pytest.mark.parametrize("spec", ["", "embedded:x", "llamacpp:", "openai:gpt", "openai:m@ftp://x",
                                  "vllm:", "tgi:model", "llamacpp:/no/such.gguf"])
def test_bad_spec_is_one_line(spec: str) -> None:
    with pytest.raises(UserError) as error:
        EngineSpec.parse(spec)
    assert spec in str(error.value) and "\n" not in str(error.value)


def test_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EngineSpec.parse("embedded").model == str(embedded_gguf())
    assert embedded_gguf().is_file()
    assert EngineSpec.parse("openai:m@http://h:1/v1") == EngineSpec("openai", "m", "http://h:1/v1")
    assert EngineSpec.parse("vllm:Qwen/Qwen2.5-7B-Instruct").model_id == "Qwen/Qwen2.5-7B-Instruct"
    assert isinstance(build_llm("embedded"), LlamaCppEngine)
    assert isinstance(build_llm("openai:m@http://h:1/v1"), OpenAICompatibleEngine)
    with pytest.raises(UserError, match="no server runs for it"):  # the run starts it first
        build_llm("vllm:m")
    monkeypatch.setenv("GENTEACH_ENGINE_URLS", '{"vllm:m": "http://h:2/v1"}')
    vllm = build_llm("vllm:m", seed=3)  # one server for the run, reached over HTTP
    assert isinstance(vllm, OpenAICompatibleEngine) and vllm.base_url == "http://h:2/v1"


def test_every_kind_answers_from_the_table() -> None:
    """What callers ask of an engine, answered by its kind's entry, not by its name."""
    gguf = str(embedded_gguf())
    local = EngineSpec.parse(f"llamacpp:{gguf}")
    server = EngineSpec.parse("openai:m@http://h:1/v1")
    vllm = EngineSpec.parse("vllm:org/model")
    assert local.gguf_path == embedded_gguf() and server.gguf_path is None
    assert local.engine_kind.raw_prompts and vllm.engine_kind.raw_prompts  # /v1/completions
    assert local.engine_kind.neutral_sampling == {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
    assert server.engine_kind.neutral_sampling == {}  # a server's own defaults are unknown
    assert local.finetuned_spec(embedded_gguf().parent / "ft.gguf").startswith("llamacpp:")
    assert EngineSpec.parse("embedded").finetuned_gguf and not vllm.finetuned_gguf
    assert vllm.finetuned_spec(embedded_gguf().parent) == f"vllm:{embedded_gguf().parent}"
    with pytest.raises(UserError, match="fine-tunes local weights"):
        server.finetuned_spec(embedded_gguf())
    for kind in KINDS.values():  # every entry names a class that builds and preflights
        engine_class = kind.engine_class()
        assert callable(engine_class.from_spec) and callable(engine_class.preflight)


def test_preflight_of_local_files(tmp_path: Path) -> None:
    assert check_engine("embedded", "--engine").kind == "embedded"
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model at all, just text" * 4)
    with pytest.raises(UserError) as error:
        check_engine(f"llamacpp:{fake}", "--engine")
    assert str(error.value).startswith("--engine llamacpp:") and "not a GGUF file" in str(error.value)


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
    assert out["errors"] == [None]


def test_prompt_longer_than_the_context_is_an_error_not_an_exception() -> None:
    llm = build_llm("embedded", max_new_tokens=4)
    llm.n_ctx = 512
    llm.load()
    try:
        long, chat, short = llm.generate(inputs=[
            Prompt("word " * 600), [{"role": "user", "content": "word " * 600}], Prompt("Hi")],
            max_new_tokens=4)
    finally:
        llm.unload()
    for failed in (long, chat):
        assert failed["generations"] == [None]
        assert failed["errors"][0]["reason"] == "context_overflow"
        assert "exceed context window of 512" in failed["errors"][0]["message"]
    assert short["errors"] == [None] and short["generations"][0] is not None


def test_no_repetition_penalty_unless_asked() -> None:
    """llama-cpp-python's own defaults (top-k 40, min-p 0.05, repeat_penalty 1.1) never apply
    silently."""
    llm = build_llm("embedded", temperature=0.7)
    seen: list[DecodeRequest] = []

    class Decoder:
        n_ctx_per_seq = 4096

        def generate(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
            seen.extend(requests)
            return [DecodeResult(["x"] * len(r.seeds), 1, [1] * len(r.seeds), ["stop"] * len(r.seeds))
                    for r in requests]

    llm._decoder = Decoder()
    llm.generate(inputs=["raw"], **llm.generation_kwargs)
    llm.generate(inputs=["raw"], top_k=40, **llm.generation_kwargs)
    assert (seen[0].top_k, seen[0].min_p, seen[0].repeat_penalty) == (0, 0.0, 1.0)
    assert (seen[1].top_k, seen[1].min_p, seen[1].repeat_penalty) == (40, 0.0, 1.0)


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
    try:
        chat, structured, raw = llm.generate_outputs(
            inputs=[CHAT, (CHAT, SCHEMA), "<|im_start|>user\n"], **llm.generation_kwargs)
    finally:
        llm.unload()
    assert chat["generations"][0].strip()
    assert structured["errors"] == [None], structured["errors"]
    assert Question.model_validate(json.loads(structured["generations"][0], strict=False)).answer
    assert raw["generations"][0] is not None
    assert chat["statistics"]["output_tokens"][0] > 0
    assert chat["errors"] == [None] and chat["statistics"]["retries"] == [0]
