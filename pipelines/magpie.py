"""magpie: general-chat conversations from an aligned model's chat template alone (no seeds).

    conversations ─▶ (instruction ─▶ response) × turns ─▶ [tags] ─▶ [language] ─▶ [reward] ─▶ filter

    python pipelines/magpie.py --rows 100
    python pipelines/magpie.py --rows 1000 --turns 2 --domain math --domain default --tag \\
        --detect-language --filter pro-300k-filtered --keep-longest 500

Writes a dataset repository folder (data/magpie/, data/failures/, funnel.parquet, run.json);
render its card and upload it with pipelines/publish.py.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from steps import REPO_ROOT, repo_folder
from steps.errors import UserError, cli_main
from steps.magpie.config import MagpieConfig
from steps.magpie.filters import apply_preset, presets
from steps.magpie.pipeline import run_magpie
from steps.magpie.rows import CONFIG
from steps.magpie.sampling import INSTRUCTION_SAMPLING as INS
from steps.magpie.sampling import RESPONSE_SAMPLING as RES
from steps.magpie.sampling import Sampling
from steps.rows import stable_id
from steps.run_record import write_run_record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, required=True, help="conversations to make")
    p.add_argument("--turns", type=int, default=1, help="user/assistant turns per conversation")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--engine", default="embedded", help="the aligned model (writes instructions)")
    p.add_argument("--response-engine", help="another model for the responses (default: same)")
    p.add_argument("--template", help="chat template override: a family name (llama3, chatml, "
                   "qwen2, qwen2.5, phi3, gemma2, mistral), a tokenizer_config.json or a .jinja")
    p.add_argument("--domain", action="append", help="steering domain from "
                   "taxonomies/magpie/system_prompts.yaml; repeat to mix (default: default)")
    p.add_argument("--instruction-temperature", type=float, default=INS.temperature)
    p.add_argument("--instruction-top-p", type=float, default=INS.top_p)
    p.add_argument("--instruction-max-tokens", type=int, default=INS.max_new_tokens)
    p.add_argument("--no-newline-stop", action="store_true",
                   help="let instructions run past the first newline")
    p.add_argument("--response-temperature", type=float, default=RES.temperature)
    p.add_argument("--response-top-p", type=float, default=RES.top_p)
    p.add_argument("--response-max-tokens", type=int, default=RES.max_new_tokens)
    p.add_argument("--instructions-only", action="store_true", help="no responses")
    p.add_argument("--tag", action="store_true", help="tag category/quality/difficulty")
    p.add_argument("--judge", help="engine of the tagging judge (default: --engine)")
    p.add_argument("--detect-language", action="store_true")
    p.add_argument("--languages", help="candidate ISO 639-1 codes, e.g. en,es,de (default: all)")
    p.add_argument("--reward-engine", help="openai:MODEL@BASE_URL of a served reward model")
    p.add_argument("--filter", choices=sorted(presets()), help="Magpie release filter preset")
    p.add_argument("--keep-longest", type=int,
                   help="keep the N longest responses (overrides the preset's N; 0: all)")
    p.add_argument("--threads", type=int, help="llama.cpp threads per engine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", type=Path, default=REPO_ROOT / "outputs" / "magpie")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> MagpieConfig:
    try:
        return MagpieConfig(
            num_rows=args.rows, turns=args.turns, batch_size=args.batch_size,
            engine=args.engine, response_engine=args.response_engine, template=args.template,
            domains=args.domain, newline_stop=not args.no_newline_stop,
            instruction=Sampling(temperature=args.instruction_temperature,
                                 top_p=args.instruction_top_p,
                                 max_new_tokens=args.instruction_max_tokens),
            response=Sampling(temperature=args.response_temperature, top_p=args.response_top_p,
                              max_new_tokens=args.response_max_tokens),
            instructions_only=args.instructions_only,
            judge=(args.judge or args.engine) if args.tag else None,
            detect_language=args.detect_language,
            languages=args.languages.split(",") if args.languages else None,
            reward_engine=args.reward_engine, seed=args.seed, n_threads=args.threads,
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(f"option {where}: {first['msg']}") from None


@cli_main
def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    config = config_from(args)
    run_id = stable_id("magpie", config.model_dump())
    started = time.time()
    made = run_magpie(config, run_id)
    rows, funnel, not_applied = made.rows, [made.funnel], []
    if args.filter:
        filtered = apply_preset(rows, args.filter, args.keep_longest)
        rows, not_applied = filtered.table, filtered.not_applied
        funnel.append(filtered.funnel)
    out = args.output_dir
    repo_folder.write_config(out, CONFIG, rows)
    repo_folder.write_config(out, repo_folder.FAILURES, made.failures)  # a fresh run: replaced
    pq.write_table(pa.concat_tables(funnel), out / repo_folder.FUNNEL_FILE)
    write_run_record(out, {
        "run_id": run_id, "flows": ["magpie"],
        "config": config.model_dump(), "seed": config.seed,
        "generation_params": made.generation_params,
        "filter": {"preset": args.filter, "not_applied": not_applied} if args.filter else None,
        "rows": {CONFIG: rows.num_rows}, "failures": made.failures.num_rows,
        "wall_time_s": round(time.time() - started, 1),
    }, resumed=False)
    lost = sum(made.funnel.column("rows").to_pylist())
    print(f"magpie: {rows.num_rows} of {config.num_rows} conversations kept ({lost} lost in "
          f"generation), {made.failures.num_rows} failure records; wrote {out}")
    for line in not_applied:
        print(f"  filter not applied: {line}")
    return out


if __name__ == "__main__":
    main()
