"""The reward-model hook: scores from a reward model served next to an OpenAI-compatible API.

Magpie scores conversations with a reward model (FsfairX-LLaMA3-RM, Magpie paper §3) and filters on
it. Nothing here invents a score: without a configured reward model the `reward` column is null
and the presets report their reward thresholds as not applied. To fill it, serve one with vLLM

    vllm serve sfairXC/FsfairX-LLaMA3-RM-v0.1 --task reward   # newer vLLM: --runner pooling

and pass `--reward-engine openai:sfairXC/FsfairX-LLaMA3-RM-v0.1@http://HOST:8000/v1`. Each
conversation goes as chat `messages` to the server's pooling endpoint (`/pooling`, beside `/v1`);
the reward is the last number in the answer's `data[0].data`, i.e. the score at the last token
for models that return one per token. $OPENAI_API_KEY, when set, is sent as the bearer token.
"""

import os
from typing import Any, Self

import requests
from distilabel.steps import Step, StepInput
from distilabel.typing import StepColumns, StepOutput
from pydantic import BaseModel, ConfigDict
from typing_extensions import override

from steps.engines import EngineSpec
from steps.errors import UserError
from steps.llm_step import failure_record, row_failed
from steps.llms.base import engine_error


class RewardError(Exception):
    """The reward server failed or answered something without a score."""


class RewardEndpoint(BaseModel):
    """A reward model behind vLLM's pooling API (`openai:MODEL@URL`)."""

    model_config = ConfigDict(frozen=True)

    model: str
    base_url: str  # the OpenAI-compatible base URL, usually ending in /v1
    timeout_s: float = 60.0

    @classmethod
    def parse(cls, spec: str) -> Self:  # type: ignore[override]
        """The endpoint of an `openai:MODEL@BASE_URL` engine spec.

        Raises:
            UserError: the spec names no server URL (`--reward-engine`).
        """
        engine = EngineSpec.parse(spec)
        if engine.base_url is None:  # a server kind: the reward model is served, not loaded
            raise UserError(f"--reward-engine {spec!r}: use openai:MODEL@BASE_URL (a vLLM server "
                            "running the reward model)")
        return cls(model=engine.model, base_url=engine.base_url)

    @property
    def pooling_url(self) -> str:
        """The /pooling URL next to the OpenAI-compatible base URL."""
        return self.base_url.rstrip("/").removesuffix("/v1") + "/pooling"

    def score(self, messages: list[dict[str, str]]) -> float:
        """The reward of a conversation.

        Raises:
            RewardError: the call failed or the answer holds no number.
        """
        headers = {}
        if key := os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {key}"
        try:
            answer = requests.post(self.pooling_url, headers=headers, timeout=self.timeout_s,
                                   json={"model": self.model, "messages": messages})
            answer.raise_for_status()
            return _last_number(answer.json()["data"][0]["data"])
        except (requests.RequestException, ValueError, KeyError, IndexError, TypeError) as error:
            raise RewardError(f"{type(error).__name__}: {error}") from None


def _last_number(value: Any) -> float:
    while isinstance(value, list) and value:
        value = value[-1]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"no score in {value!r}")
    return float(value)


class ScoreReward(Step):
    """Adds `reward` to live conversations.

    A failed call leaves it null and adds a failure record (stage `reward`, reason `reward_error`) to
    `failures`; the conversation is kept.
    """

    endpoint: RewardEndpoint

    @property
    @override
    def inputs(self) -> StepColumns:
        return ["messages", "failures", "failed"]

    @property
    @override
    def outputs(self) -> StepColumns:
        return ["reward", "failures"]

    @override
    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        scored = []
        for row in inputs:
            reward, failures = None, list(row.get("failures") or [])
            if not row_failed(row):
                try:
                    reward = self.endpoint.score(row["messages"])
                except RewardError as failure:
                    failures.append(failure_record(
                        "reward", "reward_model", "reward_error",
                        message=engine_error("reward_error", failure)["message"]))
            scored.append({**row, "reward": reward, "failures": failures})
        yield scored
