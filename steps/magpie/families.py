"""Chat template families as data (taxonomies/magpie/chat_templates.yaml).

Stop strings per family and canonical templates for `--template NAME`.

Stops depend on the family, not on the model: Magpie stops instructions on the end-of-turn and
role tokens of the model's template (magpie-align/magpie `configs/model_configs.json`), so the
family is read off the template.
"""

from __future__ import annotations

from functools import cache

from pydantic import BaseModel, ConfigDict, ValidationError

from steps import DATA_ROOT
from steps.errors import UserError
from steps.taxonomy import first_error, read_yaml

CHAT_TEMPLATES_FILE = DATA_ROOT / "taxonomies" / "magpie" / "chat_templates.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateFamily(_Strict):
    """A chat template family: its marker, BOS/EOS and the stop strings Magpie uses."""

    name: str
    marker: str  # a string only this family's templates contain
    bos_token: str
    eos_token: str
    stop: list[str]
    instruction_stop: list[str]


class KnownTemplate(_Strict):
    """A canonical template, by family."""

    family: str
    template: str


class ChatTemplates(_Strict):
    """The chat_templates.yaml file: families and canonical templates."""

    families: dict[str, TemplateFamily]
    templates: dict[str, KnownTemplate]


@cache
def _load() -> ChatTemplates:
    data = read_yaml(CHAT_TEMPLATES_FILE)
    if isinstance(data, dict):  # each family's name is its key
        data["families"] = {k: {"name": k, **v} for k, v in (data.get("families") or {}).items()}
    try:
        loaded = ChatTemplates.model_validate(data)
    except ValidationError as error:
        raise UserError(f"{CHAT_TEMPLATES_FILE}: {first_error(error)}") from None
    for name, known in loaded.templates.items():
        if known.family not in loaded.families:
            raise UserError(f"{CHAT_TEMPLATES_FILE}: templates.{name}.family: unknown family "
                            f"{known.family!r}")
    return loaded


def load_chat_templates() -> dict[str, KnownTemplate]:
    """The canonical templates by name."""
    return _load().templates


def template_family(name: str) -> TemplateFamily:
    """The family named `name` (KeyError if unknown)."""
    return _load().families[name]


def family_of(template_source: str) -> TemplateFamily | None:
    """The first family whose marker the template contains (file order), or None."""
    return next((f for f in _load().families.values() if f.marker in template_source), None)
