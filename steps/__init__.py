"""genteach: synthetic post-training data as Hugging Face datasets.

The library lives here, grouped by role (datatrove style): `engines` turns an engine spec into a
distilabel LLM, `agentinstruct/` holds the three AgentInstruct flows as distilabel Tasks,
`taxonomy` loads the skill YAML in `taxonomies/`, `rows` fixes the row format every flow writes.
Pipelines in `pipelines/` are thin scripts wiring these pieces together.
"""

import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# distilabel 1.5.3's own models trip a pydantic ≥ 2.12 warning at import; it says nothing to our
# users and would bury the one-line errors our CLIs print.
warnings.filterwarnings("ignore", message="The 'default' attribute with value None")
