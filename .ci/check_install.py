"""Run by .ci/run with a non-editable install: the package finds its data without the checkout.

Loads the taxonomy and plans a tiny run from the bundled seeds (no model), writes the planned
items as a repository folder, and renders and parses its card. Run from outside the checkout so
that `steps` can only come from site-packages.
"""

import sys
import tempfile
from pathlib import Path

from huggingface_hub import DatasetCard

import steps
from steps.agentinstruct.config import SAMPLE_SEEDS
from steps.agentinstruct.plan import plan_items
from steps.publish import write_card
from steps.repo_folder import write_config
from steps.rows import stable_id, to_table
from steps.seeds import load_seeds
from steps.taxonomy import load_taxonomy

package = Path(steps.__file__).resolve().parent
assert "site-packages" in package.parts, f"steps imported from {package}, not an installed package"
taxonomy = load_taxonomy()
skills = taxonomy.resolve(["rc", "code_"])
seeds = load_seeds(str(SAMPLE_SEEDS), None)
items = plan_items(skills, seeds, 4, {s.id: 1.0 for s in skills}, seed=7, tasks_per_item=1,
                   refinement_rounds=0)
with tempfile.TemporaryDirectory() as tmp:
    folder = Path(tmp)
    for config in {item["config"] for item in items}:
        rows = [{"id": stable_id(item["item_id"]), "flow": "agentinstruct", "config": config,
                 "skill": item["skill"], "subcategory": item["instruction_agent"],
                 "messages": [{"role": "user", "content": item["seed_text"][:200]},
                              {"role": "assistant", "content": "planned, not generated"}]}
                for item in items if item["config"] == config]
        write_config(folder, config, to_table(rows))
    card = DatasetCard.load(write_card(folder))
print(f"installed package OK: {len(taxonomy.skills)} skills, {len(seeds)} bundled seeds, "
      f"{len(items)} planned items, card configs {[c['config_name'] for c in card.data.configs]}")
sys.exit(0)
