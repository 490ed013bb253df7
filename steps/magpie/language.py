"""The language of each conversation's first instruction, with lingua, as Magpie tags it.

lingua ships its language models inside the wheel: it works offline, with no download at run
time. Loading the models of all 75 languages takes tens of seconds on a small CPU, once per run;
`languages` narrows the candidates (and the load) when the possible languages are known.
"""

from typing import Any

from distilabel.steps import Step, StepInput
from distilabel.typing import StepColumns, StepOutput
from pydantic import PrivateAttr
from typing_extensions import override

from steps.errors import UserError
from steps.llm_step import row_failed
from steps.magpie.tagging import first_instruction


def iso_codes(languages: list[str]) -> list[str]:
    """Checked ISO 639-1 codes (lower case) of languages lingua knows."""
    from lingua import IsoCode639_1

    codes = [code.lower() for code in languages]
    unknown = [code for code in codes if not hasattr(IsoCode639_1, code.upper())]
    if unknown:
        raise UserError(f"--languages: {unknown[0]!r} is not an ISO 639-1 code lingua knows")
    if len(set(codes)) < 2:
        raise UserError("--languages: give at least two candidate languages")
    return codes


def build_detector(languages: list[str] | None = None) -> Any:
    """A lingua detector over all languages, or over the ISO 639-1 codes given."""
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    if not languages:
        return LanguageDetectorBuilder.from_all_languages().build()
    codes = [getattr(IsoCode639_1, code.upper()) for code in iso_codes(languages)]
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()


def detect_language(detector: Any, text: str) -> str | None:
    """ISO 639-1 code, lower case; None when lingua cannot tell (digits, symbols, empty)."""
    language = detector.detect_language_of(text)
    return language.iso_code_639_1.name.lower() if language else None


class DetectLanguage(Step):
    """Adds the language of each live conversation's text, by lingua.

    Input columns:
        - messages (`list[dict]`), failed (`bool`).

    Output columns:
        - language (`str | None`): ISO 639-1 code; None for failed conversations.

    References:
        - Magpie's tagger (magpie-align/magpie `exp/unitag.py`): language by lingua.
    """

    languages: list[str] | None = None
    _detector: Any = PrivateAttr(default=None)

    @property
    @override
    def inputs(self) -> StepColumns:
        return ["messages", "failed"]

    @property
    @override
    def outputs(self) -> StepColumns:
        return ["language"]

    @override
    def load(self) -> None:
        super().load()
        self._detector = build_detector(self.languages)

    @override
    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        yield [
            {**row, "language": detect_language(self._detector, first_instruction(row["messages"]))
             if not row_failed(row) else None}
            for row in inputs
        ]
