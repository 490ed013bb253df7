"""The server reads a review needs, all answered from Argilla's database, never its search engine.

Listing a dataset's records with `GET /api/v1/datasets/{id}/records` (what the SDK's record
iterator uses when no query or filter is given) reads the database page by page; search, filters,
progress and similarity go through Elasticsearch/OpenSearch, so push, pull and status avoid them.
"""

from __future__ import annotations

from collections.abc import Iterator

import argilla as rg
from argilla._models import RecordModel  # the SDK's record as the server sends it
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from steps.errors import UserError

PAGE_SIZE = 1000  # argilla-server's largest page for record listing


def workspace(client: rg.Argilla, name: str | None) -> rg.Workspace:
    """The workspace called `name`, or the key user's first one when `name` is None."""
    workspaces = {ws.name: ws for ws in client.workspaces}
    if name is None:
        if not workspaces:
            raise UserError("the API key's user is in no Argilla workspace; pass --workspace or "
                            "add the user to one")
        return next(iter(workspaces.values()))
    if name not in workspaces:
        known = ", ".join(sorted(workspaces)) or "none"
        raise UserError(f"--workspace {name!r}: not on the server or not open to this API key's "
                        f"user (workspaces: {known})")
    return workspaces[name]


def find_dataset(ws: rg.Workspace, name: str) -> rg.Dataset | None:
    """The dataset `name` in `ws` with its settings loaded, or None."""
    found = next((dataset for dataset in ws.datasets if dataset.name == name), None)
    return found.get() if found else None


def records(client: rg.Argilla, dataset: rg.Dataset, with_responses: bool) -> Iterator[RecordModel]:
    """Every record of `dataset`, page by page (the server orders them by insertion)."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}: {task.completed} records"),
                  TimeElapsedColumn(), transient=False) as progress:
        task = progress.add_task(f"reading {dataset.name}", total=None)
        offset = 0
        while page := client.api.records.list(dataset_id=dataset.id, offset=offset,
                                              limit=PAGE_SIZE, with_responses=with_responses,
                                              with_suggestions=False, with_vectors=False):
            yield from page
            offset += len(page)
            progress.update(task, completed=offset)
