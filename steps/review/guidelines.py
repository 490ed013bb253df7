"""Annotation guidelines for one review queue, written from the skill's taxonomy entry.

Annotators judge a row against what its skill is meant to teach, so the guidelines open with the
skill's description and its task types (the taxonomy's instruction agents). A config whose skill
is not in the taxonomy (Magpie rows, a skill added later) gets the general criteria only.
"""

from __future__ import annotations

from steps.taxonomy import Skill

MAX_CHARS = 10_000  # argilla-server rejects longer guidelines
TASK_TYPE_CHARS = 160  # each task type's instructions are cut to one short line

QUALITY_SCALE = {
    1: "wrong, unsafe or off-task, and not worth fixing",
    2: "major errors or omissions",
    3: "usable only after a real correction",
    4: "good, with minor issues",
    5: "correct, complete and well written",
}

HOW_TO_REVIEW = """## How to review a row
1. Read the whole conversation; judge the **last assistant reply** against the user's request.
2. **Quality** (1-5): {scale}.
3. **Keep or discard**: discard a row that is wrong beyond repair, off-task for this queue,
   unsafe, or that repeats its source passage instead of doing the task. Argilla's own Discard
   button counts as a discard too.
4. **Corrected response** (optional): rewrite the last assistant reply when a fix is small enough
   to make by hand. A kept row ships with your correction instead of the original reply.

Suggested ratings, where shown, come from an LLM judge: a hint, not the answer.
Rows with several reviewers are decided by majority; a tie discards the row."""


def guidelines(config: str, skill: Skill | None) -> str:
    """Markdown guidelines for the queue of `config`; `skill` is None when the taxonomy has none."""
    scale = "; ".join(f"{score} = {meaning}" for score, meaning in QUALITY_SCALE.items())
    how = HOW_TO_REVIEW.format(scale=scale)
    if skill is None:
        head = (f"# Review queue `{config}`\n\nThis config's skill is not in the taxonomy "
                "(taxonomies/agentinstruct/): review each row with the general criteria below.")
        return f"{head}\n\n{how}"[:MAX_CHARS]
    head = (f"# Review queue: {skill.name} (`{config}`)\n\n"
            f"Rows of this queue teach a model to {skill.description}.")
    task_types = "\n".join(f"- **{agent.name}**: {_one_line(agent.instructions)}"
                           for agent in skill.instruction_agents)
    text = f"{head}\n\n{how}\n\n## Task types (the `subcategory` metadata)\n{task_types}"
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= TASK_TYPE_CHARS else flat[: TASK_TYPE_CHARS - 1] + "…"
