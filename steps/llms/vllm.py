"""vLLM on local GPUs, through distilabel's `vLLM` (extra `[vllm]`).

(No distilabel Step is defined here, so `from __future__ import annotations` is safe.)
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from distilabel.models.llms import vLLM

from steps.errors import UserError
from steps.llms.base import as_prompt

if TYPE_CHECKING:
    from steps.engines import EngineSpec


class VLLMEngine(vLLM):
    """distilabel's vLLM, taking the project's inputs and generation settings.

    vLLM seeds a whole call (`extra_sampling_params.seed`), not each input, so per-prompt seeds
    are not applied; `repeat_penalty` is vLLM's `repetition_penalty`.
    """

    @classmethod
    def from_spec(cls, spec: EngineSpec, n_threads: int | None,
                  generation: dict[str, Any]) -> VLLMEngine:
        """The engine of a parsed spec (`steps.engines.build_llm`), settings renamed for vLLM."""
        settings = dict(generation)
        if "repeat_penalty" in settings:
            settings["repetition_penalty"] = settings.pop("repeat_penalty")
        if "seed" in settings:
            settings["extra_sampling_params"] = {"seed": settings.pop("seed")}
        return cls(model=spec.model, generation_kwargs=settings)

    @staticmethod
    def preflight(spec: EngineSpec, timeout_s: float) -> None:
        """Raises UserError when the `[vllm]` extra is not installed."""
        if importlib.util.find_spec("vllm") is None:
            raise UserError("vLLM is not installed: pip install -e '.[vllm]'")

    def generate_outputs(self, inputs: list[Any], num_generations: int = 1,
                         **kwargs: Any) -> list[dict[str, Any]]:
        """Inputs in distilabel's formats first: a chat, or (chat, structured output).

        (Here, not in `generate`, whose named keywords distilabel reads as runtime parameters.)
        """
        formatted = []
        for item in inputs:
            prompt = as_prompt(item)
            formatted.append((prompt.messages, {"format": "json", "schema": prompt.schema})
                             if prompt.schema else prompt.messages)
        return super().generate_outputs(formatted, num_generations=num_generations, **kwargs)
