"""orca3_mix: instruction data the way Orca-3's AgentInstruct made it, across its 17 skills.

    seeds ─▶ content transformation ─▶ seed instructions ─▶ (suggester ─▶ editor) × rounds ─▶ teacher

Every stage is a distilabel Task whose agents and prompts come from taxonomies/agentinstruct/.
Rerunning the same command resumes an interrupted run; the same --seed gives the same rows.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from steps import repo_folder, storage
from steps.agentinstruct.checkpoint import Checkpoints, CheckpointWriter, PlannedItems
from steps.agentinstruct.config import Orca3MixConfig
from steps.agentinstruct.content_transformation import ContentTransformation
from steps.agentinstruct.follow_up import FollowUpQuestion
from steps.agentinstruct.plan import parse_mix, plan_items, seed_token_budget
from steps.agentinstruct.refinement import Editor, Suggester
from steps.agentinstruct.response import ResponseGeneration
from steps.agentinstruct.seed_instructions import SeedInstructionGeneration
from steps.cluster import run_pipeline
from steps.curation import CurationConfig
from steps.engines import EngineSpec
from steps.engines import build_llm as build_engine
from steps.errors import cli_main
from steps.estimate import TokenBudget, orca3_mix_estimate, priced_tokens, render
from steps.finish_run import begin_run, check_run, counted, finish_run
from steps.llms.concurrency import ServerSlots, items_per_batch
from steps.magpie.pipeline import make_magpie_rows
from steps.magpie.sampling import Sampling
from steps.pipeline import Pipeline, chain
from steps.progress import watch
from steps.publish.scrub import portable
from steps.recipe_config import parse_config
from steps.run_record import WORK_DIR, EngineRecord, RunRecord, engine_record
from steps.seeds import Seeds, fit_seeds, load_seeds
from steps.servers.engine import reuse_engine_url, serve_engines
from steps.taxonomy import Skill, Taxonomy, load_taxonomy


def build_pipeline(config: Orca3MixConfig, plan: str, work: str, cache: Path, run_id: str,
                   turns: int, slots: ServerSlots | None = None) -> Pipeline:
    """The distilabel pipeline over the planned items in `plan` (one committed batch at a time).

    `plan` and `work` (the checkpoints' folder) are URLs every node reaches; `cache` is the
    driver's local folder for distilabel's cache. Server engines share `slots` (at most
    --max-concurrency requests in flight per server).
    """
    if slots is not None:  # every LLM of the chain below is built by this one function
        def build_llm(spec: str, **generation: Any) -> Any:
            return slots.serve(build_engine(spec, **generation), spec, config.request_timeout,
                               config.request_retries)
    else:
        build_llm = build_engine
    agent = {"max_new_tokens": config.agent_max_tokens, "temperature": config.agent_temperature,
             "seed": config.seed}
    teacher = {"max_new_tokens": config.teacher_max_tokens,
               "temperature": config.teacher_temperature, "seed": config.seed}
    params = json.dumps({"agent": {"engine": portable(config.agent_llm), **agent},
                         "teacher": {"engine": portable(config.teacher), **teacher},
                         "tasks_per_item": config.tasks_per_item,
                         "refinement_rounds": config.refinement_rounds}, sort_keys=True)
    batch_size = serving_batch_size(config)
    common: dict[str, Any] = {"input_batch_size": batch_size}
    agents = {**common, **({"taxonomy_dir": str(config.taxonomy)} if config.taxonomy else {})}
    with Pipeline(name="orca3-mix", cache_dir=str(cache)) as pipeline:
        steps = [
            PlannedItems(plan_path=plan, batch_size=batch_size, batches_dir=work,
                         budget=config.budget.step_field()),
            ContentTransformation(llm=build_llm(config.agent_llm, **agent), **agents),
            SeedInstructionGeneration(llm=build_llm(config.agent_llm, **agent),
                                      max_items=config.tasks_per_item, **agents),
        ]
        for r in range(1, config.refinement_rounds + 1):
            steps += [Suggester(llm=build_llm(config.agent_llm, **agent), round=r, **agents),
                      Editor(llm=build_llm(config.agent_llm, **agent), round=r, **agents)]
        steps.append(ResponseGeneration(llm=build_llm(config.teacher, **teacher), **agents))
        for turn in range(2, turns + 1):  # multi-turn skills: the user follows up, teacher answers
            steps += [FollowUpQuestion(llm=build_llm(config.agent_llm, **agent), turn=turn, **agents),
                      ResponseGeneration(llm=build_llm(config.teacher, **teacher), **agents)]
        steps += [
            CheckpointWriter(work_dir=work, run_id=run_id,
                             agent_model=portable(EngineSpec.parse(config.agent_llm).model_id),
                             teacher_model=portable(EngineSpec.parse(config.teacher).model_id),
                             generation_params=params, **common),
        ]
        chain(*steps)
    return pipeline


def max_concurrency(config: Orca3MixConfig) -> int:
    """--max-concurrency, else the default of the engines (64 with a server, 1 local)."""
    return config.concurrency(config.agent_llm, config.teacher)


def serving_batch_size(config: Orca3MixConfig) -> int:
    """Work items per batch: --batch-size, raised to --max-concurrency for server engines so
    that one step's batch can keep the server busy (steps.llms.concurrency)."""
    return items_per_batch(config.batch_size, max_concurrency(config),
                           (config.agent_llm, config.teacher))


def agentinstruct_engines(config: Orca3MixConfig) -> dict[str, EngineRecord]:
    """The run's engines with their generation settings, as run.json and the card show them."""
    return {
        "agent": engine_record(config.agent_llm, {"temperature": config.agent_temperature,
                                                  "max_new_tokens": config.agent_max_tokens}),
        "teacher": engine_record(config.teacher, {"temperature": config.teacher_temperature,
                                                  "max_new_tokens": config.teacher_max_tokens}),
    }


def fit_to_engines(seeds: Seeds, config: Orca3MixConfig, skills: list[Skill],
                   taxonomy: Taxonomy) -> Seeds:
    """Cut seeds by each engine's own tokens so that every prompt a seed reaches, with its reply,
    fits that engine's context (a longer prompt is refused outright); cuts are reported."""
    for spec in dict.fromkeys((config.agent_llm, config.teacher)):
        engine = EngineSpec.parse(spec)
        tokenize = engine.tokenizer()
        budget = seed_token_budget(skills, taxonomy.prompts, tokenize,
                                   engine.engine_kind.context_tokens, config.agent_max_tokens,
                                   config.teacher_max_tokens, config.refinement_rounds)
        seeds = fit_seeds(seeds, tokenize, budget)
    return seeds


@cli_main
def main(argv: list[str] | None = None) -> Path:
    config = parse_config(Orca3MixConfig, argv, __doc__)
    reuse_engine_url([config.agent_llm, config.teacher], config.engine_url)
    check_run(config, engines={"--agent-llm": config.agent_llm, "--teacher": config.teacher},
              benchmarks=config.benchmarks if config.curate else None)
    taxonomy = load_taxonomy(config.taxonomy) if config.taxonomy else load_taxonomy()
    skills = taxonomy.resolve(config.skills)
    seeds = fit_to_engines(load_seeds(config.seed_source, config.text_column), config, skills,
                           taxonomy)
    print(f"seeds: {len(seeds)} used; {seeds.report.summary()}")
    weights = parse_mix(",".join(f"{k}={v}" for k, v in config.mix.items()), skills)
    run_id = config.run_id()
    budget = config.budget  # bad caps fail here, before any work
    magpie_rows = round(config.rows * config.magpie_share)
    items = plan_items(skills, seeds, config.rows - magpie_rows, weights, config.seed,
                       tasks_per_item=config.tasks_per_item,
                       refinement_rounds=config.refinement_rounds)
    repo_dir = config.repo_dir  # local (a staging folder when the output is a URL)
    if config.estimate:
        print_estimate(config, items, magpie_rows, budget)
        return repo_dir
    work = repo_dir / WORK_DIR / run_id  # this machine's: distilabel's cache, server logs
    # The plan and the checkpoints: where every node reaches them, the output URL's.
    shared = storage.join(config.output_url or str(repo_dir), WORK_DIR, run_id)
    batches = storage.join(shared, "batches")
    checkpoints = Checkpoints(batches)
    checkpoints.discard_incomplete()
    checkpoints.discard_failed()  # items that failed on engine errors are tried again
    todo = [item for item in items if item["item_id"] not in checkpoints.done]
    print(f"orca3_mix: {counted(len(skills), 'skill')}, {counted(len(seeds), 'seed')}, "
          f"{counted(len(items), 'work item')} "
          f"({len(items) - len(todo)} already done), run {run_id}")
    started = time.time()
    # One server per managed-server engine for the whole run, Magpie's share included.
    with serve_engines([config.agent_llm, config.teacher], work):
        begin_run(repo_dir)
        with checkpoints.timed():  # every try's time counts, killed ones included
            if todo:
                work.mkdir(parents=True, exist_ok=True)
                plan = storage.join(shared, "plan.parquet")
                storage.write_parquet(plan, pa.Table.from_pylist(todo))
                turns = max(skill.turns for skill in skills)
                engines = (config.agent_llm, config.teacher)
                # Ray actors on other nodes cannot share this process's slots (a Manager).
                with ServerSlots(engines, max_concurrency(config)) as slots, watch(
                        "work items", len(items), lambda: len(Checkpoints(batches).done)):
                    # Resume is ours (the checkpoints); distilabel 1.5.3 still reads its cached
                    # pipeline.yaml, which a killed run can leave empty: start without it.
                    shutil.rmtree(work / "distilabel", ignore_errors=True)
                    pipeline = build_pipeline(config, plan, batches, work / "distilabel", run_id,
                                              turns, None if config.ray else slots)
                    run_pipeline(pipeline, config)
        summary = Checkpoints(batches).assemble(repo_dir)
        summary["tokens"] = priced_tokens(summary["tokens"], config.price_in, config.price_out)
        capped = budget.reached(summary["tokens"])
        not_done = len(items) - len(Checkpoints(batches).done)
        if magpie_rows:  # Magpie conversations from the teacher, mixed in as config `magpie`
            magpie = make_magpie_rows(
                magpie_rows, engine=config.teacher, seed=config.seed, run_id=run_id,
                batch_size=config.batch_size, ray=config.ray, replicas=config.replicas,
                ray_address=config.ray_address, max_concurrency=config.max_concurrency,
                request_timeout=config.request_timeout, request_retries=config.request_retries,
                instruction=Sampling(temperature=1.0, top_p=1.0, max_new_tokens=256),  # Magpie's
                response=Sampling(temperature=config.teacher_temperature, top_p=1.0,
                                  max_new_tokens=config.teacher_max_tokens))
            repo_folder.write_config(repo_dir, "magpie", magpie.rows)
            repo_folder.add_generation_results(repo_dir, magpie.failures, magpie.funnel)
            summary["rows"]["magpie"] = magpie.rows.num_rows
            summary["failures"] += magpie.failures.num_rows
    record = RunRecord(
        run_id=run_id, config=config.model_dump(mode="json"), seed=config.seed,
        wall_time_s=Checkpoints(batches).elapsed_s,
        started_at=datetime.fromtimestamp(started, UTC).isoformat(),
        taxonomy_version=taxonomy.version,
        flows=["agentinstruct", *(["magpie"] if magpie_rows else [])],
        engines=agentinstruct_engines(config),
        seeds={"source": config.seed_source, "files": len(seeds), **seeds.report.as_dict()},
        **summary)
    # Items neither committed nor failed: a budget cap, or a run stopped early (Ctrl-C).
    why = capped or "the run stopped before them; rerun the same command to finish them"
    finish_run(config, record, work_items=len(items) + magpie_rows,
               curation=CurationConfig(benchmarks=config.benchmarks) if config.curate else None,
               unfinished=f"{not_done} of {len(items)} work items not done: {why}" if not_done else None)
    return repo_dir


def print_estimate(config: Orca3MixConfig, items: list[dict[str, Any]], magpie_rows: int,
                   budget: TokenBudget) -> None:
    """`--estimate`: the planned run's requests, tokens, time and cost; nothing generated."""
    magpie = None
    if magpie_rows:
        from steps.magpie.config import MagpieConfig

        magpie = MagpieConfig(rows=magpie_rows, engine=config.teacher, seed=config.seed,
                              template="chatml" if EngineSpec.parse(config.teacher).base_url
                              else None)
    estimate = orca3_mix_estimate(
        items, agent_llm=config.agent_llm, teacher=config.teacher,
        tasks_per_item=config.tasks_per_item, refinement_rounds=config.refinement_rounds,
        agent_max_tokens=config.agent_max_tokens, teacher_max_tokens=config.teacher_max_tokens,
        repo_dir=config.repo_dir, magpie=magpie, throughput=config.throughput,
        price_in=config.price_in, price_out=config.price_out)
    print(render(estimate))
    if warning := budget.check_estimate(estimate):
        print(warning)


if __name__ == "__main__":
    main()
