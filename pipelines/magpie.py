"""magpie: general-chat conversations from an aligned model's chat template alone (no seeds).

    conversations ─▶ (instruction ─▶ response) × turns ─▶ [tags] ─▶ [language] ─▶ [reward] ─▶ filter

    python pipelines/magpie.py --rows 100
    python pipelines/magpie.py --rows 1000 --turns 2 --domain math --domain default --tag \\
        --detect-language --filter pro-300k-filtered --keep-longest 500
    python pipelines/magpie.py --config recipes/magpie/quickstart.yaml

Writes a dataset repository folder (data/magpie/, data/failures/, funnel.parquet, run.json) and
its card, and pushes it with --push-to-hub.

--estimate prints the requests, tokens, time and cost per stage without generating.
--max-tokens-total / --max-cost stop feeding conversations once the finished ones reach the cap,
keeping what was made (exit 3); finished conversations are kept in the output folder, so a rerun
with a higher cap makes only the missing ones (and an interrupted or failed run's rerun too).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from steps import repo_folder
from steps.errors import cli_main
from steps.estimate import priced_tokens
from steps.finish_run import begin_run, check_run, counted, finish_run
from steps.magpie.config import MagpieConfig
from steps.magpie.filters import apply_preset
from steps.magpie.pipeline import run_magpie
from steps.magpie.rows import CONFIG, FLOW
from steps.recipe_config import parse_config
from steps.run_record import WORK_DIR, EngineRecord, RunRecord, engine_record
from steps.servers.engine import reuse_engine_url, serve_engines


def magpie_engines(config: MagpieConfig) -> dict[str, EngineRecord]:
    """The run's engines by role, with their sampling settings (run.json and the card)."""
    engines = {"instruction": engine_record(config.engine, config.instruction.model_dump())}
    if not config.instructions_only:
        engines["response"] = engine_record(config.response_engine or config.engine,
                                            config.response.model_dump())
    if config.judge_engine:
        engines["judge"] = engine_record(config.judge_engine, {"temperature": 0.0})
    if config.reward_engine:
        engines["reward"] = engine_record(config.reward_engine)
    return engines


def print_estimate(config: MagpieConfig) -> None:
    """`--estimate`: the run's requests, tokens, time and cost per stage; nothing generated."""
    from steps.estimate import DEFAULT_RATIOS, estimate_magpie, prompt_counter, render, summarise

    counter = prompt_counter(config.engine)
    responder = prompt_counter(config.response_engine or config.engine)
    judge = prompt_counter(config.judge_engine) if config.judge_engine else None
    stages = estimate_magpie(config, counter=counter, responder=responder, judge=judge)
    estimate = summarise(stages, {"instruction": counter.description,
                                  "response": responder.description},
                         ratios=DEFAULT_RATIOS, ratio_source="defaults",
                         throughput=config.throughput, throughput_source="given",
                         price_in=config.price_in, price_out=config.price_out)
    print(render(estimate))
    if warning := config.budget.check_estimate(estimate):
        print(warning)


@cli_main
def main(argv: list[str] | None = None) -> Path:
    config = parse_config(MagpieConfig, argv, __doc__)
    reuse_engine_url([config.engine, config.response_engine, config.judge_engine], config.engine_url)
    check_run(config, engines={"--engine": config.engine,
                               "--response-engine": config.response_engine,
                               "--judge": config.judge_engine})
    if config.estimate:
        print_estimate(config)
        return config.repo_dir
    run_id = config.run_id()
    started = time.time()
    work = config.repo_dir / WORK_DIR / run_id
    with serve_engines([config.engine, config.response_engine, config.judge_engine], work):
        # (checks the rest of the options before generating; on Ray the steps' nodes cannot
        # reach this machine's checkpoint files: each run starts over)
        made = run_magpie(config, run_id, None if config.ray else work / "conversations")
    rows, funnel, not_applied = made.rows, [made.funnel], []
    if config.filter:
        filtered = apply_preset(rows, config.filter, config.keep_longest)
        rows, not_applied = filtered.table, filtered.not_applied
        funnel.append(filtered.funnel)
    out = config.repo_dir
    begin_run(out)
    repo_folder.write_config(out, CONFIG, rows)
    repo_folder.write_config(out, repo_folder.FAILURES, made.failures)  # a fresh run: replaced
    pq.write_table(pa.concat_tables(funnel), out / repo_folder.FUNNEL_FILE)
    lost = sum(made.funnel.column("rows").to_pylist())
    print(f"magpie: {rows.num_rows} of {config.rows} conversations kept ({lost} lost in "
          f"generation, {made.not_done} not made), {counted(made.failures.num_rows, 'failure record')}")
    for line in not_applied:
        print(f"  filter not applied: {line}")
    stopped = {"conversations": made.not_done, "of": config.rows,
               "reason": config.budget.reached(made.tokens) or "the run stopped before them"
               } if made.not_done else None
    finish_run(config, RunRecord(
        run_id=run_id, flows=[FLOW], config=config.model_dump(mode="json"), seed=config.seed,
        engines=magpie_engines(config), rows={CONFIG: rows.num_rows},
        failures=made.failures.num_rows, wall_time_s=time.time() - started,
        started_at=datetime.fromtimestamp(started, UTC).isoformat(),
        generation_params=made.generation_params,
        tokens=priced_tokens(made.tokens, config.price_in, config.price_out),
        filter={"preset": config.filter, "not_applied": not_applied} if config.filter else None,
        **({"not_done": stopped} if stopped else {}),
    ), work_items=config.rows, unfinished=stopped and (
        f"{stopped['conversations']} of {config.rows} conversations not made: "
        f"{stopped['reason']}"))
    return out


if __name__ == "__main__":
    main()
