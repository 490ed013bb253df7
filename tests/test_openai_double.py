"""The OpenAI-compatible protocol double (tests/openai_double.py): it answers as the engines
expect, injects faults at the configured rates, keeps schema-valid JSON, and counts."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Literal

import openai_double
import pytest
from openai_double import Faults, OpenAIDouble, Stats, free_port, schema_instance
from pydantic import BaseModel, Field, StringConstraints

from steps.agentinstruct.outputs import ApiList, Edit, task_list

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Name three rivers."}],
        "max_tokens": 32, "seed": 7}


def post(url: str, body: dict[str, Any], timeout: float = 10) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, dict(reply.headers), json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


async def burst(url: str, bodies: list[dict[str, Any]], timeout: float = 30) -> list[int]:
    """Send all bodies at once, one connection each; the status of each (0 = no answer: dropped
    or timed out). Raw HTTP/1.1 rather than httpx, whose pool slows down past a few hundred
    connections and would make this test slow, not the double."""
    port = int(url.split(":")[2].split("/")[0])
    path = "/" + url.split("/", 3)[3]

    async def one(body: dict[str, Any]) -> int:
        data = json.dumps(body).encode()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return 0
        try:
            writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
                         "Connection: close\r\n\r\n".encode() + data)
            answer = await asyncio.wait_for(reader.read(), timeout)
            return int(answer.split(b" ", 2)[1]) if answer else 0
        except (TimeoutError, ConnectionError):
            return 0
        finally:
            writer.close()

    return list(await asyncio.gather(*(one(b) for b in bodies)))


def bodies(n: int) -> list[dict[str, Any]]:
    return [{**CHAT, "messages": [{"role": "user", "content": f"question {i}"}]} for i in range(n)]


def test_models_chat_and_completions_answer_with_usage() -> None:
    with OpenAIDouble() as server:
        with urllib.request.urlopen(f"{server.url}/models", timeout=5) as reply:
            assert json.loads(reply.read())["data"][0]["id"] == "double"
        status, _, chat = post(f"{server.url}/chat/completions", CHAT)
        assert status == 200
        text = chat["choices"][0]["message"]["content"]
        assert text and chat["usage"]["completion_tokens"] <= 32
        assert chat["usage"]["prompt_tokens"] > 0
        assert chat["usage"]["total_tokens"] == (chat["usage"]["prompt_tokens"]
                                                 + chat["usage"]["completion_tokens"])
        # deterministic from the request: same request, same text; another seed, another text
        assert post(f"{server.url}/chat/completions", CHAT)[2]["choices"][0]["message"]["content"] == text
        other = post(f"{server.url}/chat/completions", {**CHAT, "seed": 8})[2]
        assert other["choices"][0]["message"]["content"] != text
        status, _, done = post(f"{server.url}/completions",
                               {"model": "m", "prompt": "<|im_start|>user\n", "max_tokens": 5})
        assert status == 200 and done["choices"][0]["text"]
        assert done["usage"]["completion_tokens"] == 5 and done["choices"][0]["finish_reason"] == "length"
        status, _, error = post(f"{server.url}/chat/completions", {"model": "m"})
        assert status == 400 and "messages" in error["error"]["message"]
        assert server.stats()["status"] == {"200": 4, "400": 1}


class Limits(BaseModel):
    level: Literal["easy", "hard"]
    score: Annotated[int, Field(ge=3, le=5)]
    tags: Annotated[list[Annotated[str, StringConstraints(min_length=30, max_length=31)]],
                    Field(min_length=3, max_length=4)]
    note: str | None = None


@pytest.mark.parametrize("model", [ApiList, Edit, task_list("questions", 2),
                                   task_list("tool_requests", 3), Limits])
def test_schema_forms_give_valid_json(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    forms = [{"type": "json_schema", "json_schema": {"name": "output", "schema": schema}},
             {"type": "json_object", "schema": schema}]  # llama.cpp's form
    with OpenAIDouble() as server:
        for form in forms:
            status, _, reply = post(f"{server.url}/chat/completions",
                                    {**CHAT, "response_format": form})
            assert status == 200
            model.model_validate_json(reply["choices"][0]["message"]["content"])


def test_schema_instance_respects_bounds() -> None:
    for seed in range(20):
        value = Limits.model_validate(schema_instance(Limits.model_json_schema(), random.Random(seed)))
        assert 3 <= len(value.tags) <= 4 and 3 <= value.score <= 5
    # a list allowed up to max_items gets more than one task, as a real agent would write
    assert len(schema_instance(task_list("instructions", 2).model_json_schema(),
                               random.Random(0))["instructions"]) == 2


def test_faults_come_at_the_configured_rates_and_depend_on_the_seed() -> None:
    faults = Faults(fail_rate=0.2, fail_status=503, rate_limit_rate=0.1, retry_after=2, seed=3)
    with OpenAIDouble(faults) as server:
        statuses = asyncio.run(burst(f"{server.url}/chat/completions", bodies(600)))
        stats = server.stats()
    assert stats["requests"] == 600
    assert stats["status"] == {str(s): statuses.count(s) for s in sorted(set(statuses))}
    assert abs(statuses.count(503) / 600 - 0.2) < 0.05
    assert abs(statuses.count(429) / 600 - 0.1) < 0.04
    assert statuses.count(200) + statuses.count(503) + statuses.count(429) == 600
    # which request fails is a function of the seed and the request, not of arrival order
    with OpenAIDouble(faults) as server:
        again = asyncio.run(burst(f"{server.url}/chat/completions", bodies(600)[::-1]))[::-1]
    assert again == statuses
    with OpenAIDouble(replace(faults, seed=4)) as server:
        assert asyncio.run(burst(f"{server.url}/chat/completions", bodies(600))) != statuses


def test_a_retry_of_a_failed_request_draws_afresh() -> None:
    with OpenAIDouble(Faults(fail_rate=0.5, seed=1)) as server:
        url = f"{server.url}/chat/completions"
        first = asyncio.run(burst(url, bodies(40)))
        failed = [b for b, s in zip(bodies(40), first, strict=True) if s == 500]
        retried = asyncio.run(burst(url, failed))
    assert failed and 200 in retried


def test_rate_limit_sends_retry_after() -> None:
    with OpenAIDouble(Faults(rate_limit_rate=1.0, retry_after=2.5)) as server:
        status, headers, error = post(f"{server.url}/chat/completions", CHAT)
    assert status == 429 and headers["Retry-After"] == "2.5" and "rate limit" in error["error"]["message"]


def test_hung_requests_outlast_the_client_timeout_and_leave_when_it_goes() -> None:
    with OpenAIDouble(Faults(hang_rate=1.0, hang_s=60)) as server:
        statuses = asyncio.run(burst(f"{server.url}/chat/completions", bodies(3), timeout=0.5))
        assert statuses == [0, 0, 0]
        stats = server.stats()
        for _ in range(50):  # the handlers are cancelled once the client has gone
            if stats["in_flight"] == 0:
                break
            asyncio.run(asyncio.sleep(0.05))
            stats = server.stats()
    assert stats["hung"] == 3 and stats["in_flight"] == 0 and stats["peak_in_flight"] == 3


def test_down_then_healthy_at_run_time() -> None:
    with OpenAIDouble(Faults(down=True)) as server:
        url = f"{server.url}/chat/completions"
        assert asyncio.run(burst(url, bodies(2))) == [0, 0]  # connections dropped unanswered
        with pytest.raises(OSError):  # RemoteDisconnected
            urllib.request.urlopen(f"{server.url}/models", timeout=5)
        server.configure(down=False)
        assert asyncio.run(burst(url, bodies(2))) == [200, 200]
        # the admin endpoint does the same for a server in another process
        status, _, settings = post(f"{server.url.removesuffix('/v1')}/admin/faults", {"fail_rate": 1.0})
        assert status == 200 and settings["fail_rate"] == 1.0
        assert asyncio.run(burst(url, bodies(2))) == [500, 500]
        assert post(f"{server.url.removesuffix('/v1')}/admin/faults", {"nonsense": 1})[0] == 400
        assert server.stats()["status"] == {"0": 2, "200": 2, "500": 2}


def test_healthy_after_n_requests() -> None:
    with OpenAIDouble(Faults(fail_rate=1.0, healthy_after=3)) as server:
        url = f"{server.url}/chat/completions"
        assert [post(url, b)[0] for b in bodies(5)] == [500, 500, 500, 200, 200]


def test_stats_count_requests_in_flight_at_256_concurrent() -> None:
    with OpenAIDouble(Faults(latency=1.0)) as server:
        statuses = asyncio.run(burst(f"{server.url}/chat/completions", bodies(256)))
        stats = server.stats()
        with urllib.request.urlopen(f"{server.url.removesuffix('/v1')}/stats", timeout=5) as reply:
            served = json.loads(reply.read())
        post(f"{server.url.removesuffix('/v1')}/admin/reset", {})
        cleared = server.stats()
    assert statuses == [200] * 256
    # all 256 were held at once: the double answered them in parallel, not one after another
    assert stats["peak_in_flight"] == 256 and stats["mean_in_flight"] > 0.8 * 256
    assert stats["requests"] == 256 and stats["in_flight"] == 0
    assert served["requests"] == 256 and served["completion_tokens"] > 0
    assert cleared["requests"] == 0 and cleared["peak_in_flight"] == 0


def test_script_prints_its_url_first() -> None:
    script = Path(__file__).with_name("openai_double.py")
    port = free_port()
    process = subprocess.Popen([sys.executable, str(script), "--port", str(port), "--latency", "0.01"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}/v1"
        assert post(f"{url}/chat/completions", CHAT)[0] == 200
    finally:
        process.terminate()
        process.wait(10)


def test_capped_window_leaves_out_the_fill_and_the_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 1.0, 3.0, 4.0, 10.0, 12.0])
    monkeypatch.setattr(openai_double, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    stats = Stats()
    for delta in (+1, +1, -1, +1, -1, -1):  # 1 in flight, the peak 2 from t=1 to t=3 and at t=4
        stats.change(delta)
    seen = stats.as_dict()
    assert seen["peak_in_flight"] == 2 and seen["busy_s"] == 12.0
    assert seen["capped_s"] == 3.0  # t=1 (first at the peak) to t=4 (last at the peak)
    assert seen["mean_in_flight_capped"] == round((2 * 2 + 1 * 1) / 3, 3)
    assert seen["mean_in_flight"] == round((1 + 2 * 2 + 1 + 2 * 6 + 1 * 2) / 12, 3)
