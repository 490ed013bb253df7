"""The OpenAI-compatible engine under server faults (issue 11): retries with backoff, Retry-After,
non-transient errors, timeouts, the circuit breaker, preflight, and an LLM step that loses
nothing. Against the fault-injecting protocol double on loopback (tests/openai_double.py)."""

import logging
import threading
import time
from collections.abc import Hashable, Iterator
from typing import Any

import pytest
from openai_double import Faults, OpenAIDouble, free_port

from steps.engines import build_llm, check_engine
from steps.errors import UserError
from steps.llm_step import LLMStep, Request
from steps.llms.base import Prompt
from steps.llms.openai_compatible import OpenAICompatibleEngine

CHAT = [{"role": "user", "content": "Name a planet."}]
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}  # retry at once: tests measure counts


@pytest.fixture
def server() -> Iterator[OpenAIDouble]:
    with OpenAIDouble(Faults()) as double:
        yield double


LOADED: list[OpenAICompatibleEngine] = []


@pytest.fixture(autouse=True)
def unload_engines() -> Iterator[None]:
    """Close each test's engines, as a step does when it ends (their connections stay open else)."""
    yield
    while LOADED:
        LOADED.pop().unload()


def engine(url: str, **settings: Any) -> OpenAICompatibleEngine:
    llm = build_llm(f"openai:double@{url}", max_new_tokens=16, temperature=0.7)
    for name, value in {**FAST, **settings}.items():
        setattr(llm, name, value)
    llm.load()
    LOADED.append(llm)
    return llm


def generate(llm: OpenAICompatibleEngine, n: int) -> list[dict[str, Any]]:
    prompts = [Prompt(CHAT, seed=seed) for seed in range(n)]
    return llm.generate_outputs(inputs=prompts, num_generations=1, **llm.generation_kwargs)


def test_transient_errors_are_retried_and_counted(server: OpenAIDouble) -> None:
    clean = generate(engine(server.url), 12)
    server.configure(fail_rate=0.4, fail_status=500)
    faulty = generate(engine(server.url), 12)
    assert [o["generations"] for o in faulty] == [o["generations"] for o in clean]
    assert all(o["errors"] == [None] for o in faulty)
    retries = sum(o["statistics"]["retries"][0] for o in faulty)
    assert retries == server.stats()["status"].get("500") > 0  # every retry counted, by us


def test_retry_after_is_honoured(server: OpenAIDouble) -> None:
    server.configure(rate_limit_rate=1.0, retry_after=0.6, healthy_after=1)
    started = time.monotonic()
    (output,) = generate(engine(server.url), 1)
    assert output["errors"] == [None] and output["statistics"]["retries"] == [1]
    assert time.monotonic() - started >= 0.6  # the server's wait, not the 0.01 s backoff


def test_non_transient_error_is_not_retried(server: OpenAIDouble) -> None:
    server.configure(fail_rate=1.0, fail_status=400)
    (output,) = generate(engine(server.url), 1)
    assert output["generations"] == [None] and output["statistics"]["retries"] == [0]
    assert output["errors"][0]["reason"] == "engine_error:400"
    assert "injected fault 400" in output["errors"][0]["message"]
    assert server.stats()["requests"] == 1


def test_a_hung_request_times_out_and_is_retried(server: OpenAIDouble) -> None:
    server.configure(hang_rate=1.0, hang_s=30, healthy_after=1)
    (output,) = generate(engine(server.url, timeout=1), 1)
    assert output["errors"] == [None] and output["statistics"]["retries"] == [1]
    server.reset_stats()
    server.configure(healthy_after=None)
    (output,) = generate(engine(server.url, timeout=1, request_retries=1), 1)
    assert output["errors"][0]["reason"] == "engine_error:timeout"
    assert output["statistics"]["retries"] == [1]


def test_circuit_breaker_pauses_then_resumes(server: OpenAIDouble,
                                             caplog: pytest.LogCaptureFixture) -> None:
    server.configure(fail_rate=1.0, fail_status=503)
    llm = engine(server.url, breaker_threshold=3, breaker_pause_s=0.5, request_retries=50)
    threading.Timer(1.5, lambda: server.configure(fail_rate=0.0)).start()
    with caplog.at_level(logging.WARNING):
        outputs = generate(llm, 4)
    assert all(o["errors"] == [None] for o in outputs)
    assert f"server {server.url} failing (503) — retrying in 0.5 s" in caplog.text
    assert "answers again" in caplog.text
    # Paused, not hammering: without the breaker 4 requests would retry every ≤ 0.05 s.
    assert server.stats()["status"]["503"] < 40


def test_past_the_deadline_requests_fail_as_unavailable(server: OpenAIDouble) -> None:
    server.configure(fail_rate=1.0, fail_status=503)
    llm = engine(server.url, breaker_threshold=2, breaker_pause_s=0.2, breaker_deadline_s=1.0,
                 request_retries=1000)
    started = time.monotonic()
    outputs = generate(llm, 3)
    assert time.monotonic() - started < 5
    assert {o["errors"][0]["reason"] for o in outputs} == {"engine_error:unavailable"}


def test_preflight_server_down_is_one_line_within_10_s() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        check_engine(f"openai:m@{url}", "--teacher")
    assert time.monotonic() - started < 10
    assert str(error.value) == (f"--teacher openai:m@{url}: no server answers at {url} "
                                "(connection refused); start it or fix the URL")


def test_preflight_names_unknown_models_and_dropped_connections(server: OpenAIDouble) -> None:
    assert check_engine(f"openai:double@{server.url}", "--agent-llm").model == "double"
    with pytest.raises(UserError, match=r"--agent-llm .*does not serve model 'gpt-9'.*double"):
        check_engine(f"openai:gpt-9@{server.url}", "--agent-llm")
    server.configure(down=True)
    with pytest.raises(UserError, match="no server answers"):
        check_engine(f"openai:double@{server.url}", "--agent-llm", timeout_s=2)


def test_preflight_never_shows_a_key(server: OpenAIDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-abcdefghijklmnopqrstuvwxyz"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    url = server.url.replace("http://", f"http://user:{secret}@")
    with pytest.raises(UserError) as error:
        check_engine(f"openai:gpt-9@{url}", "--teacher")
    assert secret not in str(error.value)


class Answer(LLMStep):
    """One request per row; the reply is kept as is."""

    stage = "answer"

    def requests(self, row: dict[str, Any]) -> list[Request]:
        return [Request("answer", "teacher", [{"role": "user", "content": row["question"]}])]

    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        row["answer"] = replies.get("answer")


def run_step(url: str, rows: int, **settings: Any) -> list[dict[str, Any]]:
    step = Answer(name="answer", seed=1, llm=engine(url, **settings))
    return next(step.process([{"item_id": str(i), "question": f"Question {i}?"}
                              for i in range(rows)]))


def test_step_under_faults_gets_the_fault_free_rows(server: OpenAIDouble) -> None:
    """20% 500s, 5% 429s with Retry-After, 2% hangs past the timeout: same rows, retries counted."""
    clean = run_step(server.url, 30)
    server.configure(fail_rate=0.2, rate_limit_rate=0.05, retry_after=0.1, hang_rate=0.02,
                     hang_s=30)
    faulty = run_step(server.url, 30, timeout=1)
    assert [r["answer"] for r in faulty] == [r["answer"] for r in clean]
    assert all(r["failures"] == [] for r in faulty)
    assert sum(r["engine_retries"]["answer/teacher"] for r in faulty) > 0


def test_step_with_every_request_failing_records_every_row(server: OpenAIDouble) -> None:
    server.configure(fail_rate=1.0, fail_status=500)
    rows = run_step(server.url, 5, request_retries=2, breaker_pause_s=0.1)
    assert len(rows) == 5 and all(r["answer"] is None for r in rows)
    assert [[f["reason"] for f in r["failures"]] for r in rows] == [["engine_error:500"]] * 5
    assert all(r["engine_retries"] == {"answer/teacher": 2} for r in rows)
