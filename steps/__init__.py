"""genteach: synthetic post-training data as Hugging Face datasets.

The library lives here, grouped by role (datatrove style): `engines` turns an engine spec into a
distilabel LLM, `agentinstruct/` holds the three AgentInstruct flows as distilabel Tasks,
`taxonomy` loads the skill YAML in `taxonomies/`, `rows` fixes the row format every flow writes.
Pipelines in `pipelines/` are thin scripts wiring these pieces together.
"""

import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout this package runs from (or, installed, the folder that holds it)."""

_INSTALLED_DATA = Path(__file__).resolve().parent / "data"
DATA_ROOT = _INSTALLED_DATA if _INSTALLED_DATA.is_dir() else REPO_ROOT
"""The folder that holds `taxonomies/`, `cards/` and `seeds/sample/`: the checkout's own, or
their copy under `steps/data/` in an installed package (setup.py copies them at build time)."""

# distilabel 1.5.3's own models trip a pydantic ≥ 2.12 warning at import; it says nothing to our
# users and would bury the one-line errors our CLIs print.
warnings.filterwarnings("ignore", message="The 'default' attribute with value None")
