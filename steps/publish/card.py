"""The dataset card: README.md (Hub YAML header + Markdown) and plots/, rendered from the folder.

The card is built only from what the repository folder holds (data configs, `run.json`,
`funnel.parquet`, `review.json`), so `pipelines/publish.py` can re-render it for any folder. The
prose lives in the Jinja template `cards/dataset_card.md`; this module computes its context.
The YAML header is written by huggingface_hub's `DatasetCardData` and the result is parsed back
with `DatasetCard` before it is written, so a card the Hub cannot parse is never saved.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
import pyarrow.parquet as pq
import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from steps import DATA_ROOT
from steps.errors import UserError
from steps.publish import plots, stats
from steps.publish.scrub import portable, scrub_secrets, scrub_text
from steps.publish.tokens import token_counter
from steps.repo_folder import (
    FAILURES,
    REVIEW_FILE,
    REVIEWED,
    RUN_FILE,
    STATS_FILE,
    config_file,
    configs,
)
from steps.rows import ROW_SCHEMA

TEMPLATE_DIR = DATA_ROOT / "cards"
TEMPLATE = "dataset_card.md"
README = "README.md"
REVIEW_COUNTS = ("rows", "reviewed", "kept", "corrected", "discarded", "pending")
PLACEHOLDER_REPO_ID = "<namespace>/<dataset-name>"
FLOW_NAMES = {"agentinstruct": "AgentInstruct", "magpie": "Magpie", "rest_em": "ReST-EM"}
FLOW_TAGS = {"agentinstruct": "agentinstruct", "magpie": "magpie", "rest_em": "rest-em"}
EXTRA_CONFIGS = {
    "magpie": "Magpie: instructions the model wrote from its bare chat-template prefix, and answers",
    "rest_em": "ReST-EM: sampled solutions that passed the binary check",
    FAILURES: "Items that failed before becoming rows: stage, agent, reason and raw output",
    REVIEWED: "Rows after Argilla human review (kept and corrected)",
}
EMBEDDED_SPEC = "embedded"  # the engine spec of the embedded SmolLM2 (steps.engines)
RESPONSE_ROLES = ("teacher", "response", "sampler")  # engine roles that write the responses
SIZE_CATEGORIES = [(10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"),
                   (10**6, "100K<n<1M"), (10**7, "1M<n<10M"), (10**8, "10M<n<100M")]


def write_card(repo_dir: Path, repo_id: str | None = None, license: str | None = None) -> Path:
    """Render README.md and plots/ from what `repo_dir` holds; return the README's path.

    `repo_id` only fills the card's `load_dataset(...)` snippet; `license` overrides the one in
    run.json's config (default `other`: the seeds' and models' terms apply).
    """
    if not configs(repo_dir):
        raise UserError(f"{repo_dir}: no data/<config>/*.parquet here; run a pipeline first")
    check_config_files(repo_dir)
    context = card_context(repo_dir, repo_id, license)
    content = _environment().get_template(TEMPLATE).render(**context)
    card = DatasetCard(scrub_text(content))  # parses the YAML header: fails here, not on the Hub
    path = repo_dir / README
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(card), encoding="utf-8")
    os.replace(tmp, path)
    return path


def check_config_files(repo_dir: Path) -> None:
    """Every config folder holds its one readable Parquet file, before anything is rendered.

    Raises:
        UserError: naming the config folder or file and what to do.
    """
    for config in configs(repo_dir):
        path = config_file(repo_dir, config)
        where = f"data/{config}/"
        if not path.is_file():
            raise UserError(f"{where}: a config is one {path.name}; rename the Parquet file there "
                            "or remove the folder")
        try:
            pq.read_metadata(path)
        except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
            raise UserError(f"{where}{path.name}: not a Parquet file; remove it or rerun the "
                            "pipeline that wrote it") from None


def card_context(repo_dir: Path, repo_id: str | None, license: str | None) -> dict[str, Any]:
    """Everything the template shows, computed from the folder (and the plots written)."""
    run = portable(_read_json(repo_dir / RUN_FILE))  # (run.json of older runs held local paths)
    config = run.get("config") or {}
    rows = {c: pq.read_metadata(config_file(repo_dir, c)).num_rows for c in configs(repo_dir)}
    default = stats.default_configs(repo_dir)
    counter = token_counter()
    lengths = stats.row_lengths(repo_dir, stats.row_configs(repo_dir), counter)
    mix = lengths.filter(pl.col("config").is_in(default)) if default else lengths
    flows = sorted(set(run.get("flows") or []) | set(mix["flow"].drop_nulls().to_list()))
    funnel = stats.funnel_summary(repo_dir, rows)
    curation = " ".join(f"{r['stage']} {r['reason']}" for r in (funnel or {}).get("by_reason", []))
    curated = (_read_json(repo_dir / STATS_FILE) or {}).get("config") or {}  # curation's settings
    engines = _engines(run.get("engines") or {}, mix["generation_params"].drop_nulls().unique())
    embedded = any(e["spec"] == EMBEDDED_SPEC for e in engines)
    responder = next((e for e in engines if e["role"] in RESPONSE_ROLES), None)
    teacher_max = responder["generation"].get("max_new_tokens") if responder else None
    # Only where the counts are the model's own tokens: SmolLM2's tokenizer on SmolLM2 output.
    truncated = (mix.filter(pl.col("response_tokens") >= teacher_max).height
                 if responder and responder["spec"] == EMBEDDED_SPEC and counter.is_tokenizer
                 and teacher_max else None)
    partial = [c for c in default if stats.extra_columns(repo_dir, c)]

    plots.rows_per_config(rows, repo_dir / plots.ROWS_PLOT)
    plots.token_lengths(mix, counter.unit, repo_dir / plots.LENGTHS_PLOT)
    data = _card_data(
        rows, default, flows, shared_columns=bool(partial),
        license=license or config.get("license") or "other",
        pretty_name=config.get("pretty_name") or _pretty_name(flows),
    )
    return {
        "card_data": data.to_yaml(),
        "pretty_name": data.pretty_name,
        "license": data.license,
        "repo_id": repo_id or PLACEHOLDER_REPO_ID,
        "total_rows": sum(rows[c] for c in default),
        "default_configs": default,
        "default_partial": partial,
        "config_rows": _config_rows(rows, default, lengths, repo_dir),
        "example_config": (default or list(rows))[0],
        "flows": flows,
        "flow_names": [FLOW_NAMES.get(f, f) for f in flows],
        "has_run": bool(run),
        "run": {key: run.get(key) for key in
                ("run_id", "seed", "taxonomy_version", "wall_time_s", "started_at")},
        "tokens": run["tokens"] if isinstance(run.get("tokens"), dict) else None,
        "engines": engines,
        "embedded": embedded,
        "truncated": truncated,
        "teacher_max": teacher_max,
        "seeds": _seeds(run.get("seeds") or {}),
        "composition": stats.composition(mix),
        "skill_count": mix.filter(pl.col("flow") == "agentinstruct")["skill"].n_unique(),
        "rows_plot": plots.ROWS_PLOT,
        "lengths_plot": plots.LENGTHS_PLOT,
        "funnel": funnel,
        "funnel_consistent": all(f["consistent"] for f in (funnel or {}).get("configs", [])),
        # what curation ran (stats.json), not only what it removed: a stage that found nothing
        # still ran
        "decontaminated": "decontam" in curation or bool(curated.get("benchmarks")),
        "deduplicated": "dedup" in curation or "duplicate" in curation
        or bool(curated.get("exact_dedup") or curated.get("near_dup")),
        "failures": stats.failure_counts(repo_dir),
        "lengths": stats.length_table(lengths),
        "token_unit": counter.unit,
        "token_description": counter.description,
        "examples": [{"config": c, "rows": stats.examples(repo_dir, c)}
                     for c in stats.row_configs(repo_dir)],
        "review": _review(repo_dir / REVIEW_FILE),
        "has_reviewed": REVIEWED in rows,
        "command": scrub_text(run.get("command") or ""),
        "config_yaml": yaml.safe_dump(scrub_secrets(config), sort_keys=True) if config else "",
        "packages": run.get("packages") or {},
    }


def _card_data(rows: dict[str, int], default: list[str], flows: list[str], license: str,
               pretty_name: str, shared_columns: bool) -> DatasetCardData:
    """The Hub metadata: one `configs` entry per config, plus `default` (the SFT mix).

    When a config of the mix has columns beyond ROW_SCHEMA's (Magpie's tags), `default` lists the
    shared columns, which `datasets`' Parquet builder then reads alone from every file.
    """
    mix = {"config_name": "default",
           "data_files": [{"split": "train", "path": [stats.data_glob(c) for c in default]}]}
    entries = [{**mix, "columns": ROW_SCHEMA.names} if shared_columns else mix]
    entries = (entries if default else []) + [
        {"config_name": c, "data_files": [{"split": "train", "path": stats.data_glob(c)}]}
        for c in rows
    ]
    total = sum(rows[c] for c in default)
    return DatasetCardData(
        pretty_name=pretty_name,
        license=license,
        language=["en"],
        task_categories=["text-generation"],
        size_categories=[next((label for bound, label in SIZE_CATEGORIES if total < bound),
                              "n>100M")],
        tags=["synthetic", "distilabel", "genteach", *(FLOW_TAGS.get(f, f) for f in flows)],
        configs=entries,
    )


def _pretty_name(flows: list[str]) -> str:
    return " + ".join(FLOW_NAMES.get(f, f) for f in flows or ["genteach"]) + " synthetic SFT data"


def _config_rows(rows: dict[str, int], default: list[str], lengths: pl.DataFrame,
                 repo_dir: Path) -> list[dict[str, Any]]:
    left_out = [c for c in rows if c not in default and c not in (FAILURES, REVIEWED)]
    mix = "The SFT mix: every config below except `failures`/`reviewed`"
    if left_out:  # configs without the shared row columns (e.g. a curated plain-text input)
        mix += ", " + ", ".join(f"`{c}`" for c in left_out) + " (other columns)"
    partial = [c for c in default if stats.extra_columns(repo_dir, c)]
    if partial:
        mix += "; the columns every config shares (" + ", ".join(
            f"`{c}`'s own columns" for c in partial) + " are in its own config)"
    described = [{"name": "default", "rows": sum(rows[c] for c in default), "description": mix}]
    for config, count in rows.items():
        part = lengths.filter(pl.col("config") == config)
        skills = ", ".join(sorted(part["skill"].drop_nulls().unique().to_list())) if len(part) else ""
        description = EXTRA_CONFIGS.get(config) or f"AgentInstruct skill `{skills or config}`"
        described.append({"name": config, "rows": count, "description": description})
    return described if default else described[1:]


def _engines(engines: dict[str, Any], row_params: pl.Series) -> list[dict[str, Any]]:
    """run.json's engines as table rows, secrets removed.

    Generation parameters run.json lacks come from the rows' `generation_params` when all rows
    share them.
    """
    shared = json.loads(row_params[0]) if len(row_params) == 1 else {}
    table = []
    for role, engine in sorted(scrub_secrets(engines).items()):
        from_rows = shared.get(role) if isinstance(shared.get(role), dict) else {}
        generation = engine.get("generation") or {k: v for k, v in from_rows.items() if k != "engine"}
        table.append({
            "role": role,
            "spec": str(engine.get("spec") or ""),
            "model_id": str(engine.get("model_id") or ""),
            "generation": generation,
        })
    return table


def _seeds(seeds: dict[str, Any]) -> dict[str, Any]:
    """run.json's seeds; `files` may be the list of files or just their number."""
    files = seeds.get("files")
    return {"source": seeds.get("source"), "sha256": seeds.get("sha256"),
            "file_count": len(files) if isinstance(files, list) else files}


def _review(path: Path) -> dict[str, Any] | None:
    """review.json (written by the review pull): totals, and the same counts per config."""
    review = _read_json(path)
    if not review:
        return None

    def counts(part: dict[str, Any]) -> dict[str, Any]:
        return {key: part.get(key, "—") for key in REVIEW_COUNTS}

    return {"total": counts(review), "agreement": review.get("agreement"),
            "configs": {c: counts(part) for c, part in sorted((review.get("configs") or {}).items())}}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
                             keep_trailing_newline=True, autoescape=False)
    env.filters["cell"] = _table_cell
    env.filters["fence"] = _fenced
    env.filters["code"] = lambda text: f"`{text}`"
    env.filters["dash"] = lambda value: "—" if value is None else value
    env.filters["params"] = lambda params: ", ".join(f"{k}={json.dumps(v)}"
                                                     for k, v in sorted(params.items()))
    return env


def _table_cell(value: Any) -> str:
    """A value that stays inside one Markdown table cell."""
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _fenced(text: str) -> str:
    """`text` in a code block whose fence is longer than any backtick run inside it."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}text\n{text}\n{fence}"
