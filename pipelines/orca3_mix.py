"""orca3_mix: instruction data the way Orca-3's AgentInstruct made it, across its 17 skills.

    seeds ─▶ content transformation ─▶ seed instructions ─▶ (suggester ─▶ editor) × rounds ─▶ teacher

Every stage is a distilabel Task whose agents and prompts come from taxonomies/agentinstruct/.
Rerunning the same command resumes an interrupted run; the same --seed gives the same rows.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from steps import REPO_ROOT, repo_folder
from steps.agentinstruct.checkpoint import Checkpoints, CheckpointWriter, PlannedItems
from steps.agentinstruct.content_transformation import ContentTransformation
from steps.agentinstruct.follow_up import FollowUpQuestion
from steps.agentinstruct.plan import parse_mix, plan_items
from steps.agentinstruct.refinement import Editor, Suggester
from steps.agentinstruct.response import ResponseGeneration
from steps.agentinstruct.seed_instructions import SeedInstructionGeneration
from steps.curation import CurationConfig, curate
from steps.engines import EngineSpec, build_llm
from steps.errors import UserError, cli_main
from steps.magpie.pipeline import make_magpie_rows
from steps.magpie.sampling import Sampling
from steps.pipeline import Pipeline, chain
from steps.progress import watch
from steps.publish import check_repo_id, push_folder, write_card
from steps.rows import stable_id
from steps.run_record import write_run_record
from steps.seeds import load_seeds
from steps.taxonomy import load_taxonomy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", default=str(REPO_ROOT / "seeds" / "sample"),
                   help="folder of text/code files, .jsonl/.parquet file, or Hub dataset id")
    p.add_argument("--text-column", help="text column of a tabular seed source")
    p.add_argument("--skills", help="comma-separated skill ids or split names (default: all 17)")
    p.add_argument("--rows", type=int, default=68, help="rows to make in total")
    p.add_argument("--mix", help="per-skill weights, e.g. rc=2,code_=0.5 (default: equal)")
    p.add_argument("--agent-llm", default="embedded", help="engine of the flow agents")
    p.add_argument("--teacher", default="embedded", help="engine of the responses")
    p.add_argument("--agent-temperature", type=float, default=0.7)
    p.add_argument("--teacher-temperature", type=float, default=0.0)
    p.add_argument("--agent-max-tokens", type=int, default=512)
    p.add_argument("--teacher-max-tokens", type=int, default=256)
    p.add_argument("--magpie-share", type=float, default=0.0,
                   help="fraction of --rows made by Magpie from the teacher (config `magpie`)")
    p.add_argument("--tasks-per-item", type=int, default=2,
                   help="tasks each seed-instruction agent writes per passage")
    p.add_argument("--refinement-rounds", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=4, help="work items per distilabel batch")
    p.add_argument("--benchmarks", nargs="*", default=[],
                   help="decontaminate against these ([NAME=]file|folder|Hub id)")
    p.add_argument("--no-curate", action="store_true", help="skip dedup, filters, decontamination")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--output-dir", type=Path, default=REPO_ROOT / "outputs" / "orca3_mix")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the dataset repo folder")
    p.add_argument("--private", action="store_true")
    args = p.parse_args(argv)
    if args.rows < 1 or args.tasks_per_item < 1 or args.refinement_rounds < 0:
        raise UserError("--rows and --tasks-per-item must be ≥ 1, --refinement-rounds ≥ 0")
    if not 0 <= args.magpie_share < 1:
        raise UserError("--magpie-share must be in [0, 1)")
    return args


def build_pipeline(args: argparse.Namespace, plan: Path, work: Path, run_id: str,
                   turns: int) -> Pipeline:
    agent = {"max_new_tokens": args.agent_max_tokens, "temperature": args.agent_temperature,
             "seed": args.seed}
    teacher = {"max_new_tokens": args.teacher_max_tokens,
               "temperature": args.teacher_temperature, "seed": args.seed}
    params = json.dumps({"agent": {"engine": args.agent_llm, **agent},
                         "teacher": {"engine": args.teacher, **teacher},
                         "tasks_per_item": args.tasks_per_item,
                         "refinement_rounds": args.refinement_rounds}, sort_keys=True)
    common = {"input_batch_size": args.batch_size}
    with Pipeline(name="orca3-mix", cache_dir=str(work / "distilabel")) as pipeline:
        steps = [
            PlannedItems(plan_path=str(plan), batch_size=args.batch_size),
            ContentTransformation(llm=build_llm(args.agent_llm, **agent), **common),
            SeedInstructionGeneration(llm=build_llm(args.agent_llm, **agent),
                                      max_items=args.tasks_per_item, **common),
        ]
        for r in range(1, args.refinement_rounds + 1):
            steps += [Suggester(llm=build_llm(args.agent_llm, **agent), round=r, **common),
                      Editor(llm=build_llm(args.agent_llm, **agent), round=r, **common)]
        steps.append(ResponseGeneration(llm=build_llm(args.teacher, **teacher), **common))
        for turn in range(2, turns + 1):  # multi-turn skills: the user follows up, teacher answers
            steps += [FollowUpQuestion(llm=build_llm(args.agent_llm, **agent), turn=turn, **common),
                      ResponseGeneration(llm=build_llm(args.teacher, **teacher), **common)]
        steps += [
            CheckpointWriter(work_dir=str(work / "batches"), run_id=run_id,
                             agent_model=EngineSpec.parse(args.agent_llm).model_id,
                             teacher_model=EngineSpec.parse(args.teacher).model_id,
                             generation_params=params, **common),
        ]
        chain(*steps)
    return pipeline


@cli_main
def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.push_to_hub:
        check_repo_id(args.push_to_hub)
    taxonomy = load_taxonomy()
    skills = taxonomy.resolve(args.skills.split(",") if args.skills else None)
    seeds = load_seeds(args.seeds, args.text_column)
    weights = parse_mix(args.mix, skills)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    run_id = stable_id({k: v for k, v in config.items() if k not in ("output_dir", "push_to_hub",
                                                                     "private")})
    magpie_rows = round(args.rows * args.magpie_share)
    items = plan_items(skills, seeds, args.rows - magpie_rows, weights, args.seed,
                       rows_per_item=args.tasks_per_item * (args.refinement_rounds + 1),
                       refinement_rounds=args.refinement_rounds)
    repo_dir, work = args.output_dir, args.output_dir / ".work" / run_id
    checkpoints = Checkpoints(work / "batches")
    checkpoints.discard_incomplete()
    todo = [item for item in items if item["item_id"] not in checkpoints.done]
    print(f"orca3_mix: {len(skills)} skills, {len(seeds)} seeds, {len(items)} work items "
          f"({len(items) - len(todo)} already done), run {run_id}")
    started = time.time()
    if todo:
        work.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(todo), work / "plan.parquet")
        turns = max(skill.turns for skill in skills)
        pipeline = build_pipeline(args, work / "plan.parquet", work, run_id, turns)
        with watch("work items", len(items), lambda: len(Checkpoints(work / "batches").done)):
            pipeline.run(use_cache=False)
    summary = Checkpoints(work / "batches").assemble(repo_dir)
    if magpie_rows:  # Magpie conversations from the teacher, mixed in as config `magpie`
        magpie = make_magpie_rows(
            magpie_rows, engine=args.teacher, seed=args.seed, run_id=run_id,
            batch_size=args.batch_size,
            instruction=Sampling(temperature=1.0, top_p=1.0, max_new_tokens=256),  # Magpie's
            response=Sampling(temperature=args.teacher_temperature, top_p=1.0,
                              max_new_tokens=args.teacher_max_tokens))
        repo_folder.write_config(repo_dir, "magpie", magpie.rows)
        repo_folder.add_generation_results(repo_dir, magpie.failures, magpie.funnel)
        summary["rows"]["magpie"] = magpie.rows.num_rows
    wall = time.time() - started
    if summary["rows"] and not args.no_curate:  # (nothing to curate if every item failed)
        curate(repo_dir, repo_dir, CurationConfig(benchmarks=args.benchmarks))
    write_run_record(repo_dir, {
        "run_id": run_id, "config": config, "seed": args.seed, "wall_time_s": round(wall, 1),
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "taxonomy_version": taxonomy.version,
        "flows": ["agentinstruct", *(["magpie"] if magpie_rows else [])],
        "engines": {role: {"spec": spec, "model_id": EngineSpec.parse(spec).model_id}
                    for role, spec in (("agent", args.agent_llm), ("teacher", args.teacher))},
        "seeds": {"source": args.seeds, "files": len(seeds)}, **summary,
    }, resumed=todo != items)
    print(f"wrote {sum(summary['rows'].values())} rows in {len(summary['rows'])} configs and "
          f"{summary['failures']} failure records to {repo_dir}")
    write_card(repo_dir, repo_id=args.push_to_hub)
    if args.push_to_hub:
        print(f"pushed: {push_folder(repo_dir, args.push_to_hub, private=args.private)}")
    return repo_dir


if __name__ == "__main__":
    main()
