"""Verifiers by problem kind: the binary check ReST-EM keeps samples by.

    base          the protocol (prompt, reference, extraction, check -> Verdict, vote, preflight)
    registry      VERIFIERS: problem kind -> verifier class; `verifier_for` (unknown: UserError)
    final_answer  math: final answer vs reference (math-verify, exact numbers)
    unit_tests    code: program vs unit tests in the sandbox

Adding a kind: a module here with a `Verifier` subclass, one entry in `registry.VERIFIERS`, and
its test.
"""
