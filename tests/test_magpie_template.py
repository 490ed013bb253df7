"""Magpie prompts from chat templates: byte-exact against independent renderings, the family
table of magpie.md, stops, template resolution, and the generator's batches (the hang defect)."""

import json
from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from steps.engines import EngineSpec, embedded_gguf
from steps.errors import UserError
from steps.magpie.chat_template import ChatTemplate, from_family, from_gguf, resolve_template
from steps.magpie.sampling import end_of_turn_stops, instruction_stops
from steps.magpie.steering import load_steering
from steps.magpie.turns import MagpieConversations

# Meta-Llama-3-8B-Instruct's tokenizer_config.json chat_template, carried by the test.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = ChatTemplate(source=LLAMA3, bos_token="<|begin_of_text|>",
                               eos_token="<|eot_id|>", origin="test:llama3")
# magpie.md §2 (Magpie's configs/model_configs.json).
PRE_QUERY = {
    "llama3": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n",
    "chatml": "<|im_start|>user\n",  # Magpie's "qwen2" entry
    "qwen2.5": "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
               "assistant.<|im_end|>\n<|im_start|>user\n",
    "phi3": "<s> <|user|>\n",
    "gemma2": "<bos><start_of_turn>user\n\n",
    "mistral": "<s> [INST] ",
}
LLAMA3_MT_APPEND = "<|start_header_id|>user<|end_header_id|>\n\n"
LLAMA3_WITH_SYSTEM = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}"
                      "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n")
SYSTEM = "You are an AI assistant designed to help with math."
TURN_1 = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."}]


def reference_render(template: ChatTemplate, messages: list[dict], add_generation_prompt: bool
                     = False) -> str:
    """transformers' apply_chat_template rendering, written independently of steps.magpie."""

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template.source).render(
        messages=messages, bos_token=template.bos_token, eos_token=template.eos_token,
        add_generation_prompt=add_generation_prompt, raise_exception=raise_exception)


def reference_pre_query(template: ChatTemplate, history: list[dict]) -> str:
    marker = "@@USER-TEXT@@"
    rendered = reference_render(template, [*history, {"role": "user", "content": marker}])
    return rendered[:rendered.index(marker)]


@pytest.fixture(scope="module")
def chatml() -> ChatTemplate:
    """The embedded SmolLM2's own template, read from its GGUF."""
    return resolve_template(EngineSpec.parse("embedded"))


def history(system: str | None, turn: int) -> list[dict]:
    return [*([{"role": "system", "content": system}] if system else []),
            *(TURN_1 if turn == 2 else [])]


@pytest.mark.parametrize("system", [None, SYSTEM])
@pytest.mark.parametrize("turn", [1, 2])
@pytest.mark.parametrize("name", ["chatml", "llama3"])
def test_pre_query_prompt_is_the_templates_own_rendering(
    chatml: ChatTemplate, name: str, system: str | None, turn: int
) -> None:
    template = chatml if name == "chatml" else LLAMA3_TEMPLATE
    prompt = template.pre_query_prompt(history(system, turn))
    assert prompt == reference_pre_query(template, history(system, turn))
    if history(system, turn):  # = render(history) + the next user header, nothing in between
        header = "<|im_start|>user\n" if name == "chatml" else LLAMA3_MT_APPEND
        assert prompt == reference_render(template, history(system, turn)) + header
    if name == "llama3":  # one BOS, and no assistant header opened after the history
        assert prompt.count("<|begin_of_text|>") == 1
        assert not prompt.endswith("assistant<|end_header_id|>\n\n" + LLAMA3_MT_APPEND)


def test_llama3_prompts_match_magpie() -> None:
    assert LLAMA3_TEMPLATE.pre_query_prompt([]) == PRE_QUERY["llama3"]
    with_system = LLAMA3_TEMPLATE.pre_query_prompt(history(SYSTEM, 1))
    assert with_system == LLAMA3_WITH_SYSTEM.format(system=SYSTEM)
    second = LLAMA3_TEMPLATE.pre_query_prompt(TURN_1)
    assert second == reference_render(LLAMA3_TEMPLATE, TURN_1) + LLAMA3_MT_APPEND
    assert LLAMA3_TEMPLATE.response_prompt(TURN_1[:1]) == reference_render(
        LLAMA3_TEMPLATE, TURN_1[:1], add_generation_prompt=True)


def test_chatml_embedded_prompt(chatml: ChatTemplate) -> None:
    """SmolLM2's template adds its default system prompt when there is none."""
    assert chatml.pre_query_prompt([]) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\n")
    assert chatml.pre_query_prompt(history(SYSTEM, 1)) == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert not chatml.engine_adds_bos and chatml.family.name == "chatml"


@pytest.mark.parametrize("name", sorted(PRE_QUERY))
def test_canonical_templates_against_magpie_table(name: str) -> None:
    """Magpie's strings, except where they are not what the template renders: a space after <s>
    (SentencePiece decoding) for phi3/mistral, a second newline Magpie adds for gemma2."""
    ours = from_family(name).pre_query_prompt([])
    expected = {"phi3": PRE_QUERY["phi3"].replace("<s> ", "<s>"),
                "mistral": PRE_QUERY["mistral"].replace("<s> ", "<s>"),
                "gemma2": PRE_QUERY["gemma2"].removesuffix("\n")}.get(name, PRE_QUERY[name])
    assert ours == expected


def test_system_prompt_placement_of_other_families() -> None:
    mistral = from_family("mistral")
    assert mistral.pre_query_prompt(history(SYSTEM, 1)) == f"<s>[INST] {SYSTEM}\n\n"
    assert mistral.pre_query_prompt(history(SYSTEM, 2)) == (
        f"<s>[INST] What is 2+2?[/INST] 4.</s>[INST] {SYSTEM}\n\n")
    with pytest.raises(UserError, match="System role not supported"):
        from_family("gemma2").pre_query_prompt(history(SYSTEM, 1))


def test_bos_left_to_the_engine_that_adds_it() -> None:
    prompt = LLAMA3_TEMPLATE.pre_query_prompt([])
    assert LLAMA3_TEMPLATE.for_engine(prompt) == prompt
    adding = LLAMA3_TEMPLATE.model_copy(update={"engine_adds_bos": True})
    assert adding.for_engine(prompt) == prompt.removeprefix("<|begin_of_text|>")


def test_reading_a_gguf_template_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    """A vocabulary-only Llama made llama.cpp warn `n_ctx_seq (512) > n_ctx_train (0)`."""
    template = from_gguf(embedded_gguf())
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("", "")
    assert (template.bos_token, template.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert not template.engine_adds_bos


def test_stops(chatml: ChatTemplate) -> None:
    assert end_of_turn_stops(chatml) == ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    assert instruction_stops(chatml)[-1] == "\n"
    assert "\n" not in instruction_stops(chatml, newline=False)
    assert "<|eot_id|>" in end_of_turn_stops(LLAMA3_TEMPLATE)
    unknown = ChatTemplate(source="{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}"
                           "</s>{% endfor %}", bos_token="", eos_token="</s>", origin="test")
    assert unknown.family is None and end_of_turn_stops(unknown) == ["<user>", "</s>"]


def test_resolve_template_errors_and_overrides(tmp_path: Path) -> None:
    server = EngineSpec.parse("openai:m@http://127.0.0.1:1/v1")
    with pytest.raises(UserError, match="--template"):
        resolve_template(server)
    with pytest.raises(UserError, match="does not say its chat template; pass --template"):
        resolve_template(EngineSpec.parse("vllm:some/model"))
    with pytest.raises(UserError, match="unknown family"):
        resolve_template(server, "nope")
    assert resolve_template(server, "qwen2.5").pre_query_prompt([]) == PRE_QUERY["qwen2.5"]
    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({"chat_template": [{"name": "default", "template": LLAMA3}],
                                  "bos_token": {"content": "<|begin_of_text|>"},
                                  "eos_token": "<|eot_id|>"}))
    assert resolve_template(server, str(config)).pre_query_prompt([]) == PRE_QUERY["llama3"]
    jinja = tmp_path / "plain.jinja"
    jinja.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(UserError, match="BOS/EOS"):
        resolve_template(server, str(jinja))


@pytest.mark.parametrize(("rows", "batch"), [(7, 3), (10, 4), (3, 5), (6, 3), (1, 1), (11, 2)])
def test_generator_flags_the_last_batch(rows: int, batch: int) -> None:
    """distilabel's MagpieGenerator hangs when rows is not a multiple of the batch size."""
    generator = MagpieConversations(num_rows=rows, domains=["default", "math"], batch_size=batch)
    batches = list(generator.process())
    assert [last for _, last in batches] == [False] * (len(batches) - 1) + [True]
    ids = [row["conversation_id"] for data, _ in batches for row in data]
    assert ids == list(range(rows))
    assert all(len(data) <= batch for data, _ in batches)
    domains = [row["domain"] for data, _ in batches for row in data]
    assert domains == [["default", "math"][i % 2] for i in range(rows)]


def test_steering_prompts() -> None:
    steering = load_steering()
    assert steering.system_prompt("default", 1) is None  # Magpie's neutral default
    assert steering.system_prompt("default", 2) == steering.multi_turn
    assert "helpful Al assistant" in steering.multi_turn  # verbatim, typos included
    assert "thorough,relevant" in steering.multi_turn
    math = steering.system_prompt("math", 1)
    assert math.startswith("You are an AI assistant designed to provide helpful, step-by-step "
                           "guidance on solving math problems.")
    assert steering.system_prompt("math", 2) == math
    assert {"math", "coding", "writing", "reasoning"} <= set(steering.domains)
    assert steering.resolve(None) == ["default"]
    with pytest.raises(UserError, match="--domain 'astrology'"):
        steering.resolve(["math", "astrology"])
