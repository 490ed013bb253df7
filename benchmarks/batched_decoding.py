"""Aggregate decoding throughput, batched vs sequential llama.cpp, in one run on the embedded model.

    python benchmarks/batched_decoding.py                       # 64 new tokens per sample, 2 threads
    python benchmarks/batched_decoding.py --tokens 128 --threads 2 --seqs 1,2,4,8,16 --k 16
    python benchmarks/batched_decoding.py --model smollm2-f32.gguf --seqs 1,8   # another weight format

Both sides decode the same ReST-EM E-step prompts (steps.rest_em.prompts: one worked example, then
a generated arithmetic problem) with the E-step's sampling (T 0.7, top-k 40, no top-p, min-p or
repetition penalty; ReST-EM, Singh et al. 2023, §5), the same per-sample seeds and the same thread
count. Sequential is the current engine's loop: `Llama.create_chat_completion` once per sample,
cache reset before each. Batched is `BatchedDecoder.generate` on all samples at once.
Cases: N distinct problems with one sample each (N from --seqs; n_seq_max = N), and one problem
with k samples (ReST-EM's k samples per problem: the prompt is read once and shared).
Timed from the first call to the last text (model load and decoder context creation excluded on
both sides); the sides alternate --repeats times and the fastest run of each counts. Prints
tokens/s of each side, their ratio, how many texts came out identical (they should all be), and
the load average at start and end (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import time

# As steps.engines does, before llama.cpp (and its OpenMP) is loaded: threads wait without spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from llama_cpp import Llama  # noqa: E402

from steps.engines import embedded_gguf, input_seed  # noqa: E402
from steps.llms.batched_decoding import BatchedDecoder, DecodeRequest  # noqa: E402
from steps.rest_em.problems import arithmetic_problems  # noqa: E402
from steps.rest_em.prompts import solution_prompt  # noqa: E402

SAMPLING = dict(temperature=0.7, top_k=40, top_p=1.0, min_p=0.0, repeat_penalty=1.0)


def sequential(llama: Llama, samples: list[tuple[list[dict[str, str]], int]], tokens: int
               ) -> tuple[list[str], int, float]:
    """Texts, completion tokens and seconds of one `create_chat_completion` per (chat, seed)."""
    texts, produced = [], 0
    started = time.perf_counter()
    for chat, seed in samples:
        llama.reset()
        done = llama.create_chat_completion(messages=chat, max_tokens=tokens, seed=seed, **SAMPLING)
        texts.append(done["choices"][0]["message"]["content"])
        produced += done["usage"]["completion_tokens"]
    return texts, produced, time.perf_counter() - started


def batched(decoder: BatchedDecoder, requests: list[DecodeRequest]) -> tuple[list[str], int, float]:
    """Texts (request by request, seed by seed), completion tokens and seconds of one generate."""
    started = time.perf_counter()
    results = decoder.generate(requests)
    elapsed = time.perf_counter() - started
    if any(r.error for r in results):
        raise SystemExit(f"batched decoding refused a request: {[r.error for r in results]}")
    return ([t for r in results for t in r.texts], sum(sum(r.completion_tokens) for r in results),
            elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="most new tokens per sample")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads, both sides")
    parser.add_argument("--seqs", default="1,2,4,8,16", help="numbers of distinct prompts decoded together")
    parser.add_argument("--k", type=int, default=16, help="samples of one prompt (0 skips the case)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side; the fastest counts")
    parser.add_argument("--model", default=None,
                        help="a GGUF file (default: the embedded Q4_1 model); the weight format decides "
                             "how much batching gains")
    args = parser.parse_args()

    # The E-step prompts are under 200 tokens; llama.cpp sizes KV streams in multiples of 256.
    n_ctx_per_seq = 256 * -(-(200 + args.tokens) // 256)
    llama = Llama(model_path=args.model or str(embedded_gguf()), n_ctx=n_ctx_per_seq, n_threads=args.threads,
                  n_threads_batch=args.threads, verbose=False)
    counts = [int(n) for n in args.seqs.split(",")]
    problems = arithmetic_problems(max(counts), seed=args.seed)
    # A case is (name, [(chat, samples of it)]).
    cases = [(f"{n} prompts x 1", [(solution_prompt(p), 1) for p in problems[:n]]) for n in counts]
    if args.k:
        cases.append((f"1 prompt x {args.k}", [(solution_prompt(problems[0]), args.k)]))

    print(f"load average at start: {os.getloadavg()}; threads {args.threads}; "
          f"tokens/sample <= {args.tokens}")
    print(f"{'case':<16} {'seq tok/s':>10} {'batch tok/s':>12} {'ratio':>6} {'tokens':>7} {'same':>6}")
    for name, work in cases:
        requests = [DecodeRequest(chat, seeds=tuple(input_seed(args.seed, chat, i) for i in range(k)),
                                  max_new_tokens=args.tokens, **SAMPLING) for chat, k in work]
        samples = [(r.prompt, seed) for r in requests for seed in r.seeds]
        with BatchedDecoder(llama, n_seq_max=len(samples), n_ctx_per_seq=n_ctx_per_seq) as decoder:
            # Alternating sides, best of --repeats each: the load of a shared machine drifts.
            runs = [(sequential(llama, samples, args.tokens), batched(decoder, requests))
                    for _ in range(args.repeats)]
        seq_texts, seq_tokens, seq_s = min((run[0] for run in runs), key=lambda r: r[2])
        bat_texts, bat_tokens, bat_s = min((run[1] for run in runs), key=lambda r: r[2])
        same = sum(a == b for a, b in zip(seq_texts, bat_texts, strict=True))
        print(f"{name:<16} {seq_tokens / seq_s:>10.1f} {bat_tokens / bat_s:>12.1f} "
              f"{(bat_tokens / bat_s) / (seq_tokens / seq_s):>5.2f}x {bat_tokens:>7} "
              f"{same:>3}/{len(seq_texts)}")
    print(f"load average at end: {os.getloadavg()}")
    llama.close()


if __name__ == "__main__":
    main()
