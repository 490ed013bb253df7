"""Domain steering as data (taxonomies/magpie/system_prompts.yaml).

A domain's system prompt goes before the pre-query template when the model writes instructions,
so that it asks, say, math questions (Magpie paper, arXiv 2406.08464, §2: a system prompt
steers the domain). Rows are spread over the chosen domains in
turn; repeat a name to weight it (`--domain math --domain math --domain default`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from steps import DATA_ROOT
from steps.errors import UserError
from steps.taxonomy import first_error, read_yaml

SYSTEM_PROMPTS_FILE = DATA_ROOT / "taxonomies" / "magpie" / "system_prompts.yaml"
NEUTRAL = "default"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Domain(_Strict):
    """A steering domain: its system prompt (None: none) and who wrote it."""

    prompt: str | None  # None: no system prompt
    source: str  # "magpie" (verbatim) or who wrote it


class Steering(_Strict):
    """The system_prompts.yaml file: the multi-turn system prompt and the domains."""

    # Magpie-MT's system prompt for turns >= 2 of neutral conversations; null for templates
    # without a system role (Gemma).
    multi_turn: str | None
    domains: dict[str, Domain] = Field(min_length=1)

    def resolve(self, names: list[str] | None) -> list[str]:
        """Checked domain names, in the order rows cycle through them (default: neutral)."""
        names = names or [NEUTRAL]
        for name in names:
            if name not in self.domains:
                raise UserError(f"--domain {name!r}: unknown; known: {', '.join(self.domains)} "
                                f"(add one in {SYSTEM_PROMPTS_FILE})")
        return names

    def system_prompt(self, domain: str, turn: int) -> str | None:
        """The system prompt of the instruction prompt of `turn` (1-based) in `domain`."""
        prompt = self.domains[domain].prompt
        if prompt is None and turn >= 2:
            return self.multi_turn
        return prompt


def load_steering(path: Path = SYSTEM_PROMPTS_FILE) -> Steering:
    """The steering file at `path`.

    Raises:
        UserError: the file is not valid YAML or does not fit the schema.
    """
    try:
        return Steering.model_validate(read_yaml(path))
    except ValidationError as error:
        raise UserError(f"{path}: {first_error(error)}") from None
