"""ReST-EM (Singh et al. 2023): self-training on the model's own verified solutions.

Read in this order:
    problems      problems with a binary check (file or generate:arithmetic), held-out split
    prompts       the few-shot prompt solutions are sampled and trained with
    answers       final answer / code block extraction, answer normalisation
    math_verifier math-verify (gold first) on a worker process's main thread, own timeouts
    sandbox       code against unit tests in namespaces + rlimits (sandbox_launcher runs inside)
    scoring       one sample -> one outcome (pass/fail/timeout/error/unparseable/no_output)
    selection     keep at most N correct per problem; outcome counts; funnel rows
    metrics       greedy pass@1, pass@k, majority vote
    estep         the E-step as a distilabel pipeline
    records       kept solutions as ROW_SCHEMA rows
    mstep         the M-step driver: base model, settings, a spawned training process
    sft           TRL SFTTrainer on completions, held-out-reward early stopping [train]
    gguf_export   fine-tuned weights back to GGUF for llama.cpp engines [train]
    loop          iterations E -> evaluate -> M, and the repository folder it writes
"""
