"""The base of every AgentInstruct agent step: an LLM step that knows the taxonomy.

Fan-out, seeding, retries on unparsable replies and failure records come from
`steps.llm_step.LLMStep`; an agent step says which requests a work item needs (`requests`) and
writes the parsed replies back (`apply`).

(No `from __future__ import annotations` here: distilabel reads the `StepInput` hint at runtime.)
"""

from pathlib import Path
from typing import Any

from pydantic import PrivateAttr
from typing_extensions import override

from steps.llm_step import LLMStep, OutputError, Request
from steps.taxonomy import TAXONOMY_DIR, Skill, Taxonomy, load_taxonomy

__all__ = ["AgentTask", "OutputError", "Request"]


class AgentTask(LLMStep):
    """An AgentInstruct agent: rows are work items (`item_id`, `skill`), seeded per item."""

    taxonomy_dir: str = str(TAXONOMY_DIR)
    _taxonomy: Taxonomy = PrivateAttr()

    @override
    def load(self) -> None:
        super().load()
        self._taxonomy = load_taxonomy(Path(self.taxonomy_dir))

    def skill(self, row: dict[str, Any]) -> Skill:
        return self._taxonomy.skill(row["skill"])

    @property
    @override
    def inputs(self) -> list[str]:
        return ["item_id", "skill"]
