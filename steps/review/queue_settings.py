"""What an Argilla review queue looks like: its field, questions, metadata, vectors and guidelines.

Every queue has the conversation as a chat field and the same three questions. Metadata come from
provenance and lengths; judge scores and embeddings are optional extra columns of the config:
numeric `judge_*` columns become float metadata (`judge_score`, on the 1-5 scale, is also the
suggested quality rating) and a list-of-floats `embedding` column becomes a vector.
"""

from __future__ import annotations

import argilla as rg
import pyarrow as pa

from steps.review.guidelines import QUALITY_SCALE, guidelines
from steps.taxonomy import Skill

MESSAGES = "messages"
QUALITY = "quality"
KEEP = "keep"
DISCARD = "discard"
CORRECTION = "corrected_response"

# metadata name -> the row column it is read from
TERMS_METADATA = {"skill": "skill", "subcategory": "subcategory", "flow": "flow",
                  "agent": "transformation_agent"}
LENGTH_METADATA = ("turns", "prompt_chars", "response_chars")
JUDGE_PREFIX = "judge_"
JUDGE_SCORE = "judge_score"
JUDGE_MODEL = "judge_model"  # optional string column: the suggestion's agent
EMBEDDING = "embedding"


def judge_columns(schema: pa.Schema) -> list[str]:
    """The config's numeric judge score columns (`judge_*`)."""
    return [field.name for field in schema
            if field.name.startswith(JUDGE_PREFIX)
            and (pa.types.is_floating(field.type) or pa.types.is_integer(field.type))]


def embedding_dimensions(table: pa.Table) -> int | None:
    """Length of the `embedding` vectors, or None when the config has none."""
    if EMBEDDING not in table.column_names:
        return None
    first = next((vector for vector in table.column(EMBEDDING).to_pylist() if vector), None)
    return len(first) if first else None


def queue_settings(config: str, table: pa.Table, skill: Skill | None,
                   min_submitted: int) -> rg.Settings:
    """Settings of the queue for `config`; `min_submitted` reviews complete a record."""
    metadata: list = [rg.TermsMetadataProperty(name=name, title=name.capitalize())
                      for name in TERMS_METADATA]
    metadata += [rg.IntegerMetadataProperty(name=name, title=name.replace("_", " "))
                 for name in LENGTH_METADATA]
    metadata += [rg.FloatMetadataProperty(name=name, title=name.replace("_", " "))
                 for name in judge_columns(table.schema)]
    dimensions = embedding_dimensions(table)
    return rg.Settings(
        guidelines=guidelines(config, skill),
        fields=[rg.ChatField(name=MESSAGES, title="Conversation")],
        questions=[
            rg.RatingQuestion(name=QUALITY, title="Quality of the last reply", values=[1, 2, 3, 4, 5],
                              description="; ".join(f"{k} = {v}" for k, v in QUALITY_SCALE.items())),
            rg.LabelQuestion(name=KEEP, title="Keep this row in the dataset?",
                             labels={KEEP: "Keep", DISCARD: "Discard"}),
            rg.TextQuestion(name=CORRECTION, title="Corrected last reply (optional)", required=False,
                            use_markdown=True,
                            description="Leave empty if the reply is fine or the row is discarded."),
        ],
        metadata=metadata,
        vectors=[rg.VectorField(name=EMBEDDING, dimensions=dimensions)] if dimensions else [],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )
