"""The registry of verifiers by problem kind: the one place that maps a kind to its check."""

from __future__ import annotations

from steps.errors import UserError
from steps.rest_em.verifiers.base import Verifier
from steps.rest_em.verifiers.final_answer import FinalAnswerVerifier
from steps.rest_em.verifiers.unit_tests import UnitTestVerifier

VERIFIERS: dict[str, type[Verifier]] = {
    verifier.kind: verifier for verifier in (FinalAnswerVerifier, UnitTestVerifier)
}


def verifier_for(kind: str, where: str = "problem") -> type[Verifier]:
    """The verifier class of a problem kind.

    Raises:
        UserError: no verifier is registered for `kind` (the message names `where` and the kinds).
    """
    try:
        return VERIFIERS[kind]
    except KeyError:
        raise UserError(f"{where}: unknown problem kind {kind!r}; known kinds: "
                        f"{', '.join(sorted(VERIFIERS))}") from None

