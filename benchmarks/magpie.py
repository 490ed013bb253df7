"""Magpie instruction throughput, raw llama-cpp-python vs the distilabel pipeline, in one run.

    python benchmarks/magpie.py --rows 64
    python benchmarks/magpie.py --rows 500 --stats     # + tag distribution and duplicate rate

Both sides make the same N instructions with the embedded model: the same pre-query prompt (the
GGUF's chat template), Magpie's instruction sampling (T=1, top-p=1, no top-k, no repetition
penalty, end-of-turn + newline stops), the same seed per row and the same thread count. Raw is
`Llama.create_completion` in a loop; the pipeline is steps.magpie's distilabel pipeline with
instructions only. Both are timed from start to the last instruction, model load included (and
the pipeline's process and worker start-up). Prints instructions/s of each, their ratio, and how
many instructions came out identical.
--stats then tags the pipeline's instructions (the pipeline judge's prompt and schema on the
embedded model; lingua over all languages) and prints the tag distributions and the
exact-duplicate rate after normalisation (lower case, punctuation dropped, spaces collapsed).
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter

from tqdm import tqdm

from steps.engines import EngineSpec, build_llm
from steps.llm_step import OutputError, request_seed
from steps.llms.base import Prompt, generation_seed
from steps.magpie.chat_template import resolve_template
from steps.magpie.config import MagpieConfig
from steps.magpie.language import build_detector, detect_language
from steps.magpie.pipeline import run_magpie
from steps.magpie.sampling import Sampling, generation_kwargs, instruction_stops
from steps.magpie.tagging import JUDGE_MAX_TOKENS, TAG_COLUMNS, MagpieTagger


def raw_instructions(n: int, sampling: Sampling, seed: int, threads: int
                     ) -> tuple[list[str], float]:
    """The instructions and the seconds they took, model load included."""
    from llama_cpp import Llama  # after steps.engines has set OpenMP's wait policy, as for engines

    started = time.perf_counter()
    engine = EngineSpec.parse("embedded")
    template = resolve_template(engine)
    prompt = template.for_engine(template.pre_query_prompt([]))
    kwargs = generation_kwargs(engine, sampling, instruction_stops(template))
    kwargs["max_tokens"] = kwargs.pop("max_new_tokens")
    # As LlamaCppEngine does it: the same Llama settings, the cache reset before every call.
    llama = Llama(model_path=engine.model, n_ctx=4096, n_threads=threads, verbose=False)
    texts = []
    try:
        for i in tqdm(range(n), desc="raw llama-cpp-python", unit="instr"):
            llama.reset()
            request = Prompt(prompt, seed=request_seed(seed, i, "instruction_1", "user", 0))
            done = llama.create_completion(prompt, **kwargs,
                                           seed=generation_seed(request, 0, seed))
            texts.append(done["choices"][0]["text"].strip())
    finally:
        llama.close()
    return texts, time.perf_counter() - started


def normalised(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", text.lower())).strip()


def tag(instructions: list[str], threads: int) -> list[dict]:
    """The pipeline judge's prompt, schema and parsing (MagpieTagger) and lingua, for statistics.

    The judge runs on one llama.cpp instance that keeps its prompt cache between calls: the
    long prompt prefix is read once, not per row (LlamaCppEngine resets the cache on every call
    so that outputs do not depend on call order), which makes 500 tags minutes, not an hour.
    """
    from llama_cpp import Llama

    judge = MagpieTagger(name="tagging", llm=build_llm("embedded"))  # format and parse only
    llama = Llama(model_path=EngineSpec.parse("embedded").model, n_ctx=4096, n_threads=threads,
                  n_threads_batch=threads, verbose=False)
    tagged = []
    try:
        for i, text in enumerate(tqdm(instructions, desc="tagging (embedded judge)")):
            row = {"conversation_id": i, "messages": [{"role": "user", "content": text}]}
            (request,) = judge.requests(row)
            done = llama.create_chat_completion(
                request.messages, temperature=0.0, max_tokens=JUDGE_MAX_TOKENS,
                response_format={"type": "json_object", "schema": request.schema})
            try:
                tags = judge.parse(done["choices"][0]["message"]["content"], request)
            except OutputError:
                tags = None
            tagged.append({**(tags or dict.fromkeys(TAG_COLUMNS)), "parsed": tags is not None})
    finally:
        llama.close()
    detector = build_detector()
    for row, text in zip(tagged, instructions, strict=True):
        row["language"] = detect_language(detector, text)
    return tagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=64, help="per instruction")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads, both sides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stats", action="store_true")
    args = parser.parse_args()
    sampling = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=args.max_tokens)

    raw, raw_s = raw_instructions(args.rows, sampling, args.seed, args.threads)

    config = MagpieConfig(num_rows=args.rows, batch_size=args.batch_size, instruction=sampling,
                          instructions_only=True, seed=args.seed, n_threads=args.threads)
    started = time.perf_counter()
    made = run_magpie(config, run_id="benchmark")
    pipeline_s = time.perf_counter() - started
    pipeline = [r["messages"][0]["content"] for r in made.rows.to_pylist()]

    lost = sum(made.funnel.column("rows").to_pylist())
    same = sum((Counter(text for text in raw if text) & Counter(pipeline)).values())
    print(f"\n{args.rows} instructions, max {args.max_tokens} tokens, {args.threads} thread(s)")
    print(f"raw llama-cpp-python : {raw_s:8.1f} s  {args.rows / raw_s:6.2f} instructions/s")
    print(f"distilabel pipeline  : {pipeline_s:8.1f} s  {args.rows / pipeline_s:6.2f} "
          f"instructions/s  ({len(pipeline)} rows, {lost} empty/failed, counted)")
    print(f"pipeline / raw       : {raw_s / pipeline_s:.2f}x instructions/s")
    print(f"instructions identical on both sides (same seeds): {same}/{len(pipeline)}")
    if not args.stats:
        return
    unique = len({normalised(text) for text in pipeline})
    print(f"\nexact duplicates after normalisation: {len(pipeline) - unique}/{len(pipeline)} "
          f"= {(len(pipeline) - unique) / max(len(pipeline), 1):.1%}")
    tagged = tag(pipeline, args.threads)
    for column in [*TAG_COLUMNS, "language"]:
        counts = Counter(row[column] for row in tagged)
        shown = ", ".join(f"{k}: {v}" for k, v in counts.most_common())
        print(f"{column:14}: {shown}")
    unparsed = sum(not row["parsed"] for row in tagged)
    print(f"judge answers not parsed: {unparsed}/{len(tagged)}")


if __name__ == "__main__":
    main()
