"""Recipe configs: flags generated from the fields, `--config` YAML with flags on top, one run-id
rule (data-changing fields only), and one-line errors naming the option."""

from pathlib import Path

import pytest
import yaml

from steps import REPO_ROOT
from steps.agentinstruct.config import Orca3MixConfig
from steps.curation.recipe_config import CurateConfig
from steps.errors import UserError
from steps.magpie.config import MagpieConfig
from steps.recipe_config import RecipeConfig, is_run_option, options, parse_config
from steps.rest_em.config import RestEmConfig

CONFIGS: dict[str, type[RecipeConfig]] = {
    "orca3_mix": Orca3MixConfig, "magpie": MagpieConfig, "rest_em": RestEmConfig,
    "curate": CurateConfig}
RECIPES = sorted((REPO_ROOT / "recipes").glob("*/*.yaml"))


def test_every_recipe_folder_names_a_config() -> None:
    assert {p.parent.name for p in RECIPES} == set(CONFIGS)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_file_loads(path: Path) -> None:
    config = parse_config(CONFIGS[path.parent.name], ["--config", str(path)])
    written = yaml.safe_load(path.read_text())
    dumped = config.model_dump(mode="json")
    for key, value in written.items():  # every key of the file reached the config
        assert key in dumped, key
        if not isinstance(value, dict):
            assert dumped[key] == value or str(dumped[key]) == str(value), key


def test_quickstart_recipe_is_the_default_run() -> None:
    path = REPO_ROOT / "recipes" / "orca3_mix" / "quickstart.yaml"
    assert (parse_config(Orca3MixConfig, ["--config", str(path)]).run_id()
            == parse_config(Orca3MixConfig, []).run_id())


def test_yaml_and_flags_give_the_same_run_id(tmp_path: Path) -> None:
    flags = ["--rows", "12", "--turns", "2", "--domain", "math", "--domain", "default",
             "--instruction-temperature", "0.9", "--tag", "--no-newline-stop", "--seed", "5"]
    recipe = tmp_path / "magpie.yaml"
    recipe.write_text(yaml.safe_dump({"rows": 12, "turns": 2, "domains": ["math", "default"],
                                      "instruction": {"temperature": 0.9}, "tag": True,
                                      "newline_stop": False, "seed": 5}))
    from_flags = parse_config(MagpieConfig, flags)
    from_yaml = parse_config(MagpieConfig, ["--config", str(recipe)])
    assert from_yaml == from_flags and from_yaml.run_id() == from_flags.run_id()
    assert from_yaml.instruction.max_new_tokens == 2048  # the rest of the nested default kept


def test_flags_override_the_file(tmp_path: Path) -> None:
    recipe = tmp_path / "orca.yaml"
    recipe.write_text("rows: 10\nmix: {rc: 2}\nskills: [rc, mcq]\n")
    config = parse_config(Orca3MixConfig, ["--config", str(recipe), "--rows", "20"])
    assert config.rows == 20 and config.mix == {"rc": 2.0} and config.skills == ["rc", "mcq"]


@pytest.mark.parametrize(("config", "base", "cosmetic"), [
    (Orca3MixConfig, [], ["--output-dir", "/elsewhere", "--batch-size", "9", "--private",
                          "--push-to-hub", "org/x"]),
    (MagpieConfig, ["--rows", "3"], ["--batch-size", "7", "--threads", "2", "--output-dir", "o"]),
    (RestEmConfig, [], ["--output-dir", "somewhere/else"]),
    (CurateConfig, ["in/"], ["--out", "x", "--batch-rows", "10", "--token-sample", "0"]),
])
def test_fields_that_do_not_change_the_data_leave_the_run_id(
        config: type[RecipeConfig], base: list[str], cosmetic: list[str]) -> None:
    assert parse_config(config, base).run_id() == parse_config(config, base + cosmetic).run_id()
    assert parse_config(config, base).run_id() != parse_config(config, [*base, "--seed", "99"]
                                                               if config is not CurateConfig
                                                               else [*base, "--jaccard", "0.9"]
                                                               ).run_id()


def test_run_options_are_declared_once() -> None:
    """The same fields are run options in every recipe, declared by the shared marker."""
    for config in CONFIGS.values():
        marked = {name for name, info in config.model_fields.items() if is_run_option(info)}
        assert {"output_dir", "push_to_hub", "private"} <= marked
        assert not marked & {"seed", "rows", "engine", "k", "jaccard"}


@pytest.mark.parametrize(("config", "argv", "needle"), [
    (Orca3MixConfig, ["--mix", "rc=nan"], "--mix rc: Input should be a finite number"),
    (Orca3MixConfig, ["--agent-temperature", "inf"], "--agent-temperature: Input should be a finite"),
    (MagpieConfig, ["--rows", "2", "--instruction-temperature", "inf"],
     "--instruction-temperature"),
    (RestEmConfig, ["--heldout-fraction", "nan"], "--heldout-fraction"),
    (CurateConfig, ["x", "--jaccard", "nan"], "--jaccard"),
    (Orca3MixConfig, ["--rows", "many"], "--rows: Input should be a valid integer"),
    (Orca3MixConfig, ["--mix", "rc"], "--mix 'rc': expected KEY=VALUE"),
    (Orca3MixConfig, ["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (RestEmConfig, ["-k", "0"], "-k: Input should be greater than or equal to 1"),
    (MagpieConfig, ["--rows", "2", "--filter", "best"], "--filter: unknown preset 'best'"),
])
def test_bad_values_are_one_line_naming_the_option(config: type[RecipeConfig], argv: list[str],
                                                   needle: str) -> None:
    with pytest.raises(UserError) as error:
        parse_config(config, argv)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_unknown_key_in_a_recipe_file_is_named(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("rows: 3\nrowz: 4\n")
    with pytest.raises(UserError, match=r"--config .*r.yaml: unknown option 'rowz'"):
        parse_config(Orca3MixConfig, ["--config", str(recipe)])
    recipe.write_text("- not a mapping\n")
    with pytest.raises(UserError, match="expected a mapping"):
        parse_config(Orca3MixConfig, ["--config", str(recipe)])


def test_every_option_has_help() -> None:
    for config in CONFIGS.values():
        for option in options(config):
            assert option.help.strip(), f"{config.__name__} {option.flag}"
