"""A model's chat template, rendered as transformers renders it, and the Magpie prompts it implies.

Magpie's instruction prompt is everything the chat template renders before the text of the next
user message. We take it from the template itself: render the conversation with a sentinel as the
next user message and cut at the sentinel. For append-only templates (ChatML, Llama-3, Phi-3,
Gemma) that is `render(history) + next user header`; it stays right for templates that move the
system prompt into the next user turn (Mistral), where `render(history) + header` would drop it.
It never has the stray assistant header and second BOS that distilabel 1.5.3's
Magpie mixin adds with a system prompt or on turns >= 2 (it renders the history with
`add_generation_prompt=True`, then appends the whole pre-query template).

Rendering uses llama-cpp-python's `Jinja2ChatFormatter`, which mirrors `apply_chat_template`
(sandboxed Jinja, `trim_blocks`, `lstrip_blocks`, `raise_exception`, `bos_token`/`eos_token`).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict

from steps.engines import EngineSpec
from steps.errors import UserError
from steps.magpie.families import (
    TemplateFamily,
    family_of,
    load_chat_templates,
    template_family,
)

# Private-use code points: no chat template or model text contains them.
SENTINEL = "\ue000next user turn\ue001"

Message = dict[str, str]


@cache
def _formatter(source: str, bos_token: str, eos_token: str, add_generation_prompt: bool) -> Any:
    """Compiled once per template (kept out of ChatTemplate so that it pickles to step processes).

    llama_cpp is imported here, not at the top: importing it loads OpenMP, which reads its wait
    policy once, and steps.engines sets that policy (OMP_WAIT_POLICY) on import.
    """
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(source, eos_token=eos_token, bos_token=bos_token,
                               add_generation_prompt=add_generation_prompt)


class ChatTemplate(BaseModel):
    """A Jinja chat template with the special tokens it is rendered with."""

    model_config = ConfigDict(frozen=True)

    source: str
    bos_token: str
    eos_token: str
    origin: str  # where it came from, recorded with each run: gguf:FILE, family:NAME, file:PATH
    engine_adds_bos: bool = False  # llama.cpp prepends BOS itself for this model

    def render(self, messages: list[Message], add_generation_prompt: bool = False) -> str:
        """What `tokenizer.apply_chat_template(messages, tokenize=False, ...)` returns."""
        try:
            formatter = _formatter(self.source, self.bos_token, self.eos_token,
                                   add_generation_prompt)
            return formatter(messages=messages).prompt
        except (TemplateError, ValueError) as error:  # raise_exception() raises ValueError
            roles = "/".join(m["role"] for m in messages)
            raise UserError(
                f"chat template ({self.origin}) refuses a {roles} conversation: {error}; "
                "pick a domain without a system prompt or another --template"
            ) from None

    def pre_query_prompt(self, history: list[Message]) -> str:
        """The instruction prompt: `history` rendered, then the header of the next user turn."""
        rendered = self.render([*history, {"role": "user", "content": SENTINEL}])
        if rendered.count(SENTINEL) != 1:
            raise UserError(f"chat template ({self.origin}) does not render user messages as is; "
                            "Magpie needs a template that does (pass --template)")
        return rendered.split(SENTINEL)[0]

    def response_prompt(self, conversation: list[Message]) -> str:
        """The response prompt: the conversation rendered with the assistant header opened."""
        return self.render(conversation, add_generation_prompt=True)

    def for_engine(self, prompt: str) -> str:
        """The text to send.

        Without the leading BOS when the engine adds it as a token itself (llama.cpp does for Llama-3
        GGUFs), so the model sees one BOS, as the template meant.
        """
        if self.engine_adds_bos and self.bos_token:
            return prompt.removeprefix(self.bos_token)
        return prompt

    @property
    def family(self) -> TemplateFamily | None:
        """The family this template belongs to, by its marker, or None."""
        return family_of(self.source)

    @property
    def user_header(self) -> str:
        """The text that opens a user turn after an assistant turn (a fallback stop string)."""
        history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
        prompt = self.pre_query_prompt(history)
        return prompt.removeprefix(self.render(history))


def from_family(name: str) -> ChatTemplate:
    """The canonical template of a known family (`--template NAME`).

    Raises:
        UserError: `name` is not a known family.
    """
    templates = load_chat_templates()
    if name not in templates:
        raise UserError(f"--template {name!r}: unknown family; known: {', '.join(templates)}, "
                        "or a tokenizer_config.json / .jinja file")
    known = templates[name]
    tokens = template_family(known.family)
    return ChatTemplate(source=known.template, bos_token=tokens.bos_token,
                        eos_token=tokens.eos_token, origin=f"family:{name}")


def _token_text(value: Any) -> str:
    """A tokenizer_config special token: a string, an AddedToken dict, or absent."""
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return value or ""


def from_tokenizer_config(path: Path) -> ChatTemplate:
    """An HF `tokenizer_config.json` (its `chat_template`, `bos_token`, `eos_token`)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"--template {path}: not a readable JSON file ({error})") from None
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: Magpie wants the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    if not isinstance(template, str):
        raise UserError(f"--template {path}: no (default) chat_template in this tokenizer config")
    return ChatTemplate(source=template, bos_token=_token_text(config.get("bos_token")),
                        eos_token=_token_text(config.get("eos_token")), origin=f"file:{path}")


def from_gguf(path: Path) -> ChatTemplate:
    """The template in a GGUF's `tokenizer.chat_template` metadata, with its BOS/EOS tokens.

    Only the vocabulary is loaded, through llama-cpp-python's model wrapper: `Llama` would also
    create a context, and llama.cpp warns on stderr that its 512 tokens exceed the training
    context of a vocabulary-only model (0), a line no user should see.

    Raises:
        UserError: the GGUF has no chat template.
    """
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = LlamaModel(path_model=str(path), params=params, verbose=False)
    try:
        source = model.metadata().get("tokenizer.chat_template")
        if not source:
            raise UserError(f"{path}: the GGUF has no tokenizer.chat_template; pass --template")

        def text(token_id: int) -> str:
            return model.detokenize([token_id], special=True).decode() if token_id >= 0 else ""

        return ChatTemplate(
            source=source,
            bos_token=text(model.token_bos()),
            eos_token=text(model.token_eos()),
            origin=f"gguf:{path.name}",
            engine_adds_bos=model.add_bos_token(),
        )
    finally:
        model.close()


def resolve_template(engine: EngineSpec, override: str | None = None) -> ChatTemplate:
    """The chat template Magpie prompts `engine` with.

    `override` is a family name from taxonomies/magpie/chat_templates.yaml, an HF
    tokenizer_config.json, or a .jinja file (its BOS/EOS tokens then come from the GGUF, or from
    the family its markers name). Without one, llama.cpp engines use the GGUF's own template.
    """
    if not engine.engine_kind.raw_prompts:
        raise UserError(f"engine {engine.kind}:…: it applies a chat template to every input, so "
                        "Magpie cannot send raw prompts; serve the model (e.g. `vllm serve MODEL`)"
                        " and use openai:MODEL@http://HOST:PORT/v1 with --template")
    gguf = from_gguf(engine.gguf_path) if engine.gguf_path else None
    if override is None:
        if gguf is None:
            raise UserError(f"--engine {engine.model!r}: an OpenAI-compatible server does not say "
                            "its chat template; pass --template (a family name, a "
                            "tokenizer_config.json or a .jinja file)")
        return gguf
    path = Path(override)
    if path.suffix == ".json":
        chosen = from_tokenizer_config(path)
    elif path.suffix in (".jinja", ".j2"):
        if not path.is_file():
            raise UserError(f"--template {path}: file not found")
        source = path.read_text(encoding="utf-8")
        tokens = gguf or family_of(source)
        if tokens is None:
            raise UserError(f"--template {path}: unknown template family, so its BOS/EOS tokens "
                            "are unknown; pass a tokenizer_config.json instead")
        chosen = ChatTemplate(source=source, bos_token=tokens.bos_token,
                              eos_token=tokens.eos_token, origin=f"file:{path}")
    else:
        chosen = from_family(override)
    # The override changes the text, not how the engine tokenizes it.
    return chosen.model_copy(update={"engine_adds_bos": bool(gguf and gguf.engine_adds_bos)})

