"""Human review in Argilla: push rows to annotation queues, pull the answers back as `reviewed`.

One Argilla dataset per row config (one per skill for AgentInstruct), named `<name>-<config>`, so
that each queue carries its own guidelines written from the skill's taxonomy entry and annotators
pick a skill without needing metadata filters (which Argilla answers from its search engine).
Record ids hash the row's provenance id and its messages, so pushing again adds only rows that are
new or changed, and an interrupted push resumes where it stopped.
"""
