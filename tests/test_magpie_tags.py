"""Magpie tags: the judge (schema, parsing, the embedded model), lingua, the reward hook."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from steps.engines import build_llm
from steps.errors import UserError
from steps.llm_step import OutputError
from steps.magpie.language import DetectLanguage, build_detector, detect_language, iso_codes
from steps.magpie.reward import RewardEndpoint, RewardError, ScoreReward
from steps.magpie.tagging import JUDGE_MAX_TOKENS, MagpieTagger, load_tag_scales

CHAT = [{"role": "user", "content": "Write a Python function that reverses a list."},
        {"role": "assistant", "content": "def rev(xs): return xs[::-1]"}]


def test_scales_are_magpies() -> None:
    scales = load_tag_scales()
    assert len(scales.task_categories) == 12 and "Coding & Debugging" in scales.task_categories
    assert list(scales.input_quality) == ["very poor", "poor", "average", "good", "excellent"]
    assert scales.difficulty == ["very easy", "easy", "medium", "hard", "very hard"]
    enums = {k: v["enum"] for k, v in scales.schema()["properties"].items()}
    assert enums["task_category"] == list(scales.task_categories)
    assert scales.judge_prompt("QUERY").rstrip().endswith("QUERY\n```")  # shared prefix first


@pytest.mark.parametrize(("text", "ok"), [
    ('{"task_category": "Math", "input_quality": "good", "difficulty": "hard"}', True),
    ('{"task_category": "Maths", "input_quality": "good", "difficulty": "hard"}', False),
    ('{"task_category": "Math", "input_quality": "good"}', False),
    ("not json", False), ("[1]", False), (None, False),
])
def test_parse(text: str | None, ok: bool) -> None:
    assert (load_tag_scales().parse(text) is not None) == ok


def test_unparsable_answer_is_kept_as_a_failure() -> None:
    tagger = MagpieTagger(name="tagging", llm=build_llm("embedded"))
    (request,) = tagger.requests({"messages": CHAT})
    with pytest.raises(OutputError, match="judge_unparsable"):
        tagger.parse("{oops", request)
    row = {"messages": CHAT}
    tagger.apply(row, {})  # what the base does when the judge's reply failed
    assert row == {"messages": CHAT, "task_category": None, "input_quality": None,
                   "difficulty": None}


@pytest.mark.model
def test_embedded_judge_answers_within_the_scales() -> None:
    tagger = MagpieTagger(name="tagging", llm=build_llm(
        "embedded", temperature=0.0, max_new_tokens=JUDGE_MAX_TOKENS))
    tagger.load()
    try:
        rows = [{"conversation_id": 0, "messages": CHAT, "failed": False},
                {"conversation_id": 1, "messages": [], "failed": True}]
        tagged, failed = next(tagger.process(rows))
    finally:
        tagger.unload()
    scales = load_tag_scales()
    assert tagged["failures"] == [] and not tagged["failed"]
    assert tagged["task_category"] in scales.task_categories
    assert tagged["input_quality"] in scales.input_quality
    assert tagged["difficulty"] in scales.difficulty
    assert "task_category" not in failed  # failed upstream: not sent to the judge


def test_language_detection_offline() -> None:
    detector = build_detector(["en", "es", "de", "fr"])
    assert detect_language(detector, "Where is the nearest library, please?") == "en"
    assert detect_language(detector, "¿Dónde está la biblioteca más cercana?") == "es"
    assert detect_language(detector, "12345") is None
    step = DetectLanguage(name="language", languages=["en", "de"])
    step.load()
    live, failed = next(step.process([
        {"messages": [{"role": "user", "content": "Wie spät ist es heute Abend?"}],
         "failed": False},
        {"messages": [], "failed": True}]))
    assert (live["language"], failed["language"]) == ("de", None)


@pytest.mark.parametrize("codes", [["en"], ["en", "xx"]])
def test_language_codes_checked(codes: list[str]) -> None:
    with pytest.raises(UserError, match="--languages"):
        iso_codes(codes)


class RewardServer(BaseHTTPRequestHandler):
    """vLLM's /pooling as a reward server: a score per token; status 500 for model "broken"."""

    seen: list[tuple[dict[str, Any], str | None]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        RewardServer.seen.append((body, self.headers.get("Authorization")))
        if self.path != "/pooling" or body["model"] == "broken":
            self.send_response(500)
            self.end_headers()
            return
        payload = json.dumps({"data": [{"index": 0, "data": [[0.5], [-3.25]]}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def reward_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RewardServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    RewardServer.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_reward_hook(reward_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    endpoint = RewardEndpoint.parse(f"openai:rm@{reward_url}")
    assert endpoint.score(CHAT) == -3.25  # the last token's score
    body, auth = RewardServer.seen[-1]
    assert body == {"model": "rm", "messages": CHAT} and auth == "Bearer sk-test"
    with pytest.raises(RewardError):
        RewardEndpoint.parse(f"openai:broken@{reward_url}").score(CHAT)


def test_reward_failures_keep_the_row(reward_url: str) -> None:
    step = ScoreReward(name="reward", endpoint=RewardEndpoint.parse(f"openai:broken@{reward_url}"))
    row, failed = next(step.process([{"messages": CHAT, "failed": False, "failures": []},
                                     {"messages": [], "failed": True, "failures": []}]))
    (failure,) = row["failures"]
    assert row["reward"] is None and not row["failed"]  # the conversation is kept
    assert (failure["stage"], failure["reason"]) == ("reward", "reward_error")
    assert "500" in failure["message"]
    assert failed["reward"] is None and failed["failures"] == []
    assert len(RewardServer.seen) == 1  # the failed conversation was not scored


def test_reward_spec_must_be_a_server() -> None:
    with pytest.raises(UserError, match="--reward-engine"):
        RewardEndpoint.parse("embedded")
