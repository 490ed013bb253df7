"""ReST-EM (Singh et al. 2023): self-training on the model's own verified solutions.

Read in this order:
    problems      problems with a binary check (file or generate:arithmetic), held-out split
    verifiers     one verifier per problem kind (prompt, extraction, check, vote, preflight)
    prompts       the few-shot prompt solutions are sampled and trained with
    answers       final answer / code block extraction, exact numbers, answer normalisation
    math_verifier exact numbers, then math-verify (gold first) in a worker process
    sandbox       code against unit tests in namespaces + rlimits (sandbox_launcher runs inside)
    scoring       one sample -> one outcome (pass/fail/timeout/error/unparseable/no_output)
    selection     keep at most N correct per problem; outcome counts; funnel rows
    metrics       greedy pass@1, pass@k, majority vote
    estep         the E-step as a distilabel pipeline
    records       kept solutions as ROW_SCHEMA rows
    mstep_types   the base weights, M-step settings and result (shared by mstep and sft)
    mstep         the M-step driver: a spawned process that trains or exports
    sft           TRL SFTTrainer on completions in float32, validation-reward early stopping [train]
    gguf_export   fine-tuned weights back to an F32 GGUF for llama.cpp engines [train]
    loop          iterations E -> evaluate -> M, and the repository folder it writes
"""
