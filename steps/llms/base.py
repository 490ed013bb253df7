"""What every engine of the project takes and returns.

An input is a `Prompt` (a chat or a raw prompt string, an optional JSON schema, an optional
seed), or, for plain distilabel Tasks, a chat, a raw string or distilabel's `(chat, structured)`
tuple. An output keeps distilabel's shape (`generations`, `statistics`) and adds a parallel
`errors` list: None for a generation that came back, else `{"reason", "message"}` saying why it
did not, so a step can count every failure by reason instead of losing its batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from steps.rows import stable_id

Message = dict[str, str]
MAX_MESSAGE_CHARS = 300  # an error message is a hint for the card, not a log dump

# Reasons an engine gives for a generation that did not come back (counted on the card).
CONTEXT_OVERFLOW = "context_overflow"  # the prompt is longer than the model's context
UNAVAILABLE = "engine_error:unavailable"  # the server stayed down past the breaker's deadline
TIMEOUT = "engine_error:timeout"
CONNECTION = "engine_error:connection"


class EngineError(TypedDict):
    """Why a generation did not come back: a reason counted on the card and the server's words."""

    reason: str  # e.g. engine_error:503, engine_error:timeout, context_overflow
    message: str  # the server's words, secrets scrubbed, truncated


@dataclass(frozen=True)
class Prompt:
    """One input: what to send, how to constrain the reply, and the seed of its sampling."""

    messages: list[Message] | str  # a chat, or a raw prompt sent as is (no chat template)
    schema: dict[str, Any] | None = None  # JSON schema the reply must follow
    seed: int | None = None  # None: the `seed` generation setting of the call


def as_prompt(item: Any) -> Prompt:
    """A `Prompt` from any input a step may send (see the module docstring)."""
    if isinstance(item, Prompt):
        return item
    if isinstance(item, tuple):
        messages, structured = item
        return Prompt(messages, (structured or {}).get("schema"))
    return Prompt(item)


def sample_seed(*parts: Any) -> int:
    """The one seeding rule: a 31-bit seed (in [0, 2**31)) that depends only on `parts`.

    The parts are the run seed, row, stage, request and attempt (the engines add the prompt and
    the generation index), never batching, order or process.
    """
    return int(stable_id(*parts), 16) % 2**31


def generation_seed(prompt: Prompt, index: int, default: int) -> int:
    """The seed of generation `index` of `prompt` (its own seed, else the call's)."""
    return sample_seed(default if prompt.seed is None else prompt.seed, prompt.messages, index)


def engine_error(reason: str, message: object) -> EngineError:
    """An error record with the message scrubbed of secrets and cut to a readable length."""
    # Imported here: steps.publish loads the card renderer, which engines otherwise never need.
    from steps.publish.scrub import scrub_text

    text = scrub_text(" ".join(str(message).split()))
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return {"reason": reason, "message": text}


@dataclass
class Generation:
    """One generation's outcome, gathered into an output by `engine_output`."""

    text: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    retries: int = 0
    error: EngineError | None = None


def engine_output(generations: list[Generation]) -> dict[str, Any]:
    """Distilabel's output dict for one input, plus `errors` and `statistics.retries`."""
    return {
        "generations": [g.text for g in generations],
        "statistics": {"input_tokens": [g.input_tokens for g in generations],
                       "output_tokens": [g.output_tokens for g in generations],
                       "retries": [g.retries for g in generations]},
        "errors": [g.error for g in generations],
    }
