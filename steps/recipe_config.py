"""One config object per recipe, read from a YAML file, from flags, or both.

The pattern is open-r1's (`TrlParser(...).parse_args_and_config()`, recipes/*.yaml) on pydantic:
a recipe's options are one `RecipeConfig` subclass whose field descriptions are the help text and
whose defaults are written once. `parse_config(Config, argv)` builds the command line from the
fields, reads `--config recipe.yaml` and lets flags override the file.

Fields that do not change the data (output folder, push target, threads, batch sizes,
concurrency) are declared with `run_option(...)`; `run_id()` hashes every other field, so every
recipe names its run by the same rule and a new cosmetic option can never break resume.

Flag names come from field names (`max_new_tokens` -> `--max-new-tokens`, one letter -> `-k`);
a nested model's fields get its name as prefix (`instruction.temperature` ->
`--instruction-temperature`) unless the recipe lists it in `flat`; `flags` renames a flag.
Booleans are switches (`--tag`, or `--no-newline-stop` when on by default), lists take several
values or commas (`--skills rc,mcq`), dicts take `key=value` pairs (`--mix rc=2,code_=0.5`), and a
dict of models (per-skill settings) takes a YAML file.
"""

from __future__ import annotations

import argparse
import math
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from steps import storage
from steps.errors import UserError
from steps.rows import stable_id

RUN_OPTION = "run_option"  # json_schema_extra key of fields that do not change the data


def run_option(default: Any = None, **kwargs: Any) -> Any:
    """A `Field` that does not change the data (left out of the run id).

    Args:
        default: The field's default.
        **kwargs: Any other `pydantic.Field` argument (description, ge, …).
    """
    return Field(default, json_schema_extra={RUN_OPTION: True}, **kwargs)


def is_run_option(info: FieldInfo) -> bool:
    """Whether a field was declared with `run_option`."""
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get(RUN_OPTION))


class RecipeConfig(BaseModel):
    """What every recipe takes besides its own options: where the run goes, and where it is pushed.

    Subclasses set `recipe` (the default output folder is `outputs/<recipe>`, relative to the
    working directory) and may set `positional`, `flat` and `flags` (see the module docstring).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    recipe: ClassVar[str] = "run"
    positional: ClassVar[tuple[str, ...]] = ()
    flat: ClassVar[frozenset[str]] = frozenset()
    flags: ClassVar[dict[str, str]] = {}

    output_dir: Path | str | None = run_option(
        None, validate_default=True,
        description="the repository folder the run writes (default: outputs/<recipe>); a URL "
        "(s3://…, hf://…) is staged locally and copied there at the end")
    push_to_hub: str | None = run_option(
        None, description="upload the finished folder to this Hub dataset repo, NAMESPACE/NAME "
        "(created if needed; token from HF_TOKEN or `hf auth login`)")
    private: bool = run_option(
        False, description="create the Hub repo private (an existing repo keeps its visibility)")

    @field_validator("output_dir", mode="after")
    @classmethod
    def _default_output_dir(cls, value: Path | str | None) -> Path | str:
        if value is None:
            return Path("outputs") / cls.recipe
        return Path(value) if storage.is_local(value) else str(value)  # a URL keeps its `//`

    @model_validator(mode="after")
    def _finite_floats(self) -> Self:
        # Nested models of other modules may allow NaN/inf; no option of any recipe means them.
        for where, value in _leaves(self.model_dump()):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{where}: {value} is not a finite number")
        return self

    @property
    def repo_dir(self) -> Path:
        """The local folder the run assembles the repository in.

        The output folder, or for a URL a staging folder `outputs/.staging/<hash of the URL>`
        (copied there by `finish_run`).
        """
        assert self.output_dir is not None
        if self.output_url is None:
            return Path(self.output_dir)
        return Path("outputs") / ".staging" / stable_id(self.output_url)

    @property
    def output_url(self) -> str | None:
        """The output folder's URL when it is not a local path (`s3://…`), else None."""
        return None if isinstance(self.output_dir, Path) else self.output_dir

    def data_fields(self) -> dict[str, Any]:
        """The fields that change the data, as JSON values (what `run_id` hashes)."""
        return _data_fields(self)

    def run_id(self) -> str:
        """The run's id: a hash of the recipe name and the fields that change the data."""
        return stable_id(self.recipe, self.data_fields())


def _data_fields(model: BaseModel) -> dict[str, Any]:
    dumped = {}
    for name, info in type(model).model_fields.items():
        if is_run_option(info):
            continue
        value = getattr(model, name)
        dumped[name] = (_data_fields(value) if isinstance(value, BaseModel)
                        else model.__pydantic_serializer__.to_python(
                            model, mode="json", include={name})[name])
    return dumped


def _leaves(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item, where)
    else:
        yield where, value


# --- the command line, generated from the fields ---------------------------------------------

C = TypeVar("C", bound=RecipeConfig)

Kind = Literal["switch", "negated", "value", "list", "mapping", "file"]


@dataclass(frozen=True)
class Option:
    """One command-line option: the field path it sets, its flag and how it reads values."""

    path: tuple[str, ...]
    flag: str
    kind: Kind
    help: str
    choices: tuple[str, ...] | None = None
    positional: bool = False
    required: bool = False

    @property
    def dest(self) -> str:
        """The argparse destination: the field path joined by `__`."""
        return "__".join(self.path)


def _unwrap(annotation: Any) -> Any:
    """`X | None` and `Annotated[X, ...]` as X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def options(config: type[RecipeConfig]) -> list[Option]:
    """Every option of `config`, in field order (nested models expanded)."""
    return list(_options(config, config, (), ""))


def _options(root: type[RecipeConfig], model: type[BaseModel], path: tuple[str, ...],
             prefix: str, parent: str = "", defaults: BaseModel | None = None) -> Iterator[Option]:
    for name, info in model.model_fields.items():
        annotation = _unwrap(info.annotation)
        here = (*path, name)
        dotted = ".".join(here)
        if _is_model(annotation):
            inner = "" if name in root.flat else f"{prefix}{name.replace('_', '-')}-"
            default = info.get_default(call_default_factory=True)
            yield from _options(root, annotation, here, inner, info.description or name,
                                default if isinstance(default, BaseModel) else None)
            continue
        positional = not path and name in root.positional
        flag = root.flags.get(dotted) or (
            name if positional else f"-{name}" if len(name) == 1 and not prefix
            else f"--{prefix}{name.replace('_', '-')}")
        kind, choices = _kind(annotation, info)
        if kind == "negated":
            flag = f"--no-{flag.removeprefix('--')}"
        # A nested model of another module may leave its fields undescribed: name the part.
        text = info.description or (f"{parent}: {name.replace('_', ' ')}" if parent else "")
        help_text = _help(info, kind, text, getattr(defaults, name, None))
        if choices:
            help_text += f" {{{', '.join(choices)}}}"
        yield Option(here, flag, kind, help_text, choices, positional,
                     required=info.is_required() and not path)


def _kind(annotation: Any, info: FieldInfo) -> tuple[Kind, tuple[str, ...] | None]:
    origin = get_origin(annotation)
    if annotation is bool:
        return ("negated" if info.default is True else "switch"), None
    if origin is Literal:
        return "value", tuple(str(a) for a in get_args(annotation))
    if origin in (list, tuple, set, frozenset):
        return "list", None
    if origin is dict:
        value_type = _unwrap(get_args(annotation)[1])
        return ("file" if _is_model(value_type) else "mapping"), None
    return "value", None


def _help(info: FieldInfo, kind: Kind, text: str, default: Any = None) -> str:
    if default is None and not info.is_required():
        default = info.get_default(call_default_factory=True)
    if kind not in ("switch", "negated") and default not in (None, [], {}, ()):
        shown = default.model_dump() if isinstance(default, BaseModel) else default
        text = f"{text} (default: {shown})" if text else f"default: {shown}"
    if kind == "negated":
        text += " (on by default; this flag turns it off)"
    if kind == "mapping":
        text += " [KEY=VALUE,…]"
    if kind == "file":
        text += " [a YAML file]"
    return text.replace("%", "%%")  # argparse formats help with %


class CliParser(argparse.ArgumentParser):
    """argparse whose usage errors are one `UserError` line like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Raise the usage error as a `UserError` (one line, exit status 2 under `cli_main`)."""
        raise UserError(f"{message} (see --help)")


def build_parser(config: type[RecipeConfig], description: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser of `config`: `--config FILE` plus one option per field.

    Every option defaults to "not given" (argparse.SUPPRESS), so that only the flags a user typed
    override the YAML file.
    """
    parser = CliParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="a recipe YAML file (keys are the option names with underscores, "
                             "e.g. recipes/); flags given as well override it")
    for option in options(config):
        kwargs: dict[str, Any] = {"help": option.help}
        if option.kind == "switch":
            kwargs["action"] = "store_true"
        elif option.kind == "negated":
            kwargs["action"] = "store_false"
        elif option.kind in ("list", "mapping"):
            kwargs |= {"action": "extend", "nargs": "+"}
        if option.choices:
            kwargs["choices"] = option.choices
        if option.positional:  # optional here: a recipe file may give it
            parser.add_argument(option.dest, metavar=option.flag.upper(),
                                **(kwargs | {"nargs": "*"}))
            continue
        if option.kind not in ("switch", "negated"):
            kwargs["metavar"] = option.path[-1].upper()
        parser.add_argument(option.flag, dest=option.dest, **kwargs)
    return parser


def parse_config(config: type[C], argv: list[str] | None = None,
                 description: str | None = None) -> C:
    """The recipe config from `--config FILE` and flags (flags win).

    Raises:
        UserError: one line naming the option (or the YAML file) and what is wrong: an unknown
            flag, an unreadable file, a value the field refuses (NaN/inf included).
    """
    given = vars(build_parser(config, description).parse_args(argv))
    path = given.pop("config", None)
    values: dict[str, Any] = read_recipe(path) if path else {}
    by_dest = {option.dest: option for option in options(config)}
    for dest, raw in given.items():
        option = by_dest[dest]
        if option.positional and not raw:  # not typed: the recipe file may give it
            continue
        _set(values, option.path, _cli_value(option, raw))
    return validate(config, values, source=f"--config {path}" if path else None)


def read_recipe(path: Path) -> dict[str, Any]:
    """A recipe YAML file as a mapping of option names to values.

    Raises:
        UserError: the file is missing, not YAML, or not a mapping.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(f"--config {path}: cannot read it ({error.strerror})") from None
    except yaml.YAMLError as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        at = f" (line {line + 1})" if line is not None else ""
        raise UserError(f"--config {path}: not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of option: value")
    return data


def validate(config: type[C], values: dict[str, Any], source: str | None = None) -> C:
    """`config` from plain values (YAML, flags, code), errors as one line naming the option.

    Raises:
        UserError: the first value the config refuses, e.g. `--mix rc: Input should be a finite
            number`.
    """
    try:
        return config.model_validate(_with_defaults(config, values))
    except ValidationError as error:
        raise UserError(describe_error(config, error, source)) from None


def _with_defaults(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """`values` with each partly given nested model completed from the field's default.

    So `--instruction-temperature 0.5` keeps the other instruction settings.
    """
    merged = dict(values)
    for name, info in model.model_fields.items():
        given, default = merged.get(name), info.get_default(call_default_factory=True)
        inner = _unwrap(info.annotation)
        if isinstance(given, dict) and _is_model(inner):
            base = default.model_dump() if isinstance(default, BaseModel) else {}
            merged[name] = _with_defaults(inner, {**base, **given})
    return merged


def describe_error(config: type[RecipeConfig], error: ValidationError,
                   source: str | None = None) -> str:
    """The first error of `error` as `--flag [key]: message`."""
    first = error.errors()[0]
    loc = tuple(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        where = f"{source}: " if source else ""
        return f"{where}unknown option {'.'.join(loc)!r} (see --help)"
    if not loc:  # a model-level check names its field path first ("mix.rc: …")
        head, sep, rest = message.partition(": ")
        if sep and " " not in head:
            loc, message = tuple(head.split(".")), rest
    match = max((o for o in options(config) if loc[:len(o.path)] == o.path),
                key=lambda o: len(o.path), default=None)
    if match is None:
        return f"options: {message}"
    rest = " ".join(loc[len(match.path):])
    name = match.flag if not match.positional else match.flag.upper()
    return f"{name}{' ' + rest if rest else ''}: {message}"


def _set(values: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        inner = values.get(key)
        values[key] = inner = dict(inner) if isinstance(inner, dict) else {}
        values = inner
    values[path[-1]] = value


def _cli_value(option: Option, raw: Any) -> Any:
    """A flag's strings as the field's value: lists split on commas, KEY=VALUE pairs as a dict."""
    if option.kind == "list":
        return [part.strip() for item in raw for part in str(item).split(",") if part.strip()]
    if option.kind == "mapping":
        pairs = [part.strip() for item in raw for part in str(item).split(",") if part.strip()]
        mapping = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise UserError(f"{option.flag} {pair!r}: expected KEY=VALUE")
            mapping[key.strip()] = value.strip()
        return mapping
    return raw
