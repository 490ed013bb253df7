"""The base of every AgentInstruct agent step: an LLM step that knows the taxonomy.

Fan-out, seeding, retries on unparsable replies and failure records come from
`steps.llm_step.LLMStep`; an agent step says which requests a work item needs (`requests`) and
writes the parsed replies back (`apply`).
"""

from pathlib import Path
from typing import Any

from pydantic import PrivateAttr
from typing_extensions import override

from steps.llm_step import LLMStep, OutputError, Request
from steps.taxonomy import TAXONOMY_DIR, Skill, Taxonomy, load_taxonomy

__all__ = ["AgentTask", "OutputError", "Request"]


class AgentTask(LLMStep):
    """An AgentInstruct agent: rows are work items, seeded per item; loads the taxonomy.

    Input columns:
        - item_id (`str`): the work item, for seeding.
        - skill (`str`): its taxonomy skill id.

    Output columns and failure reasons: LLMStep's, plus the subclass's.

    References:
        - AgentInstruct paper (arXiv 2407.03502) §2: agents per flow, driven by a taxonomy.
    """

    taxonomy_dir: str = str(TAXONOMY_DIR)
    _taxonomy: Taxonomy = PrivateAttr()

    @override
    def load(self) -> None:
        super().load()
        self._taxonomy = load_taxonomy(Path(self.taxonomy_dir))

    def skill(self, row: dict[str, Any]) -> Skill:
        """The taxonomy skill of a work item (its `skill` column)."""
        return self._taxonomy.skill(row["skill"])

    @property
    @override
    def inputs(self) -> list[str]:
        return ["item_id", "skill"]
