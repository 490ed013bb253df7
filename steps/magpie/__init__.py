"""Magpie (arXiv 2406.08464): conversations from an aligned model's chat template, no seeds.

One module per role: `chat_template` (the model's template, rendered as transformers does, and
the pre-query / response prompts it implies), `families` (stops and canonical templates per
family, taxonomies/magpie/chat_templates.yaml), `steering` (domain system prompts,
taxonomies/magpie/system_prompts.yaml), `sampling` (instruction vs response settings), `task`
(seeded per-row engine calls), `turns` (generator, instruction and response steps), `tagging`
(LLM judge), `language` (lingua), `reward` (reward-model hook), `rows` (ROW_SCHEMA + tags,
failures), `filters` (release presets), `config` (options, checked), `pipeline` (the distilabel
pipeline, `make_magpie_rows`).
"""
