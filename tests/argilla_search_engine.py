"""TEST ONLY: run argilla-server 2.8 (or its rq worker) with a do-nothing search engine.

argilla-server needs Elasticsearch or OpenSearch, and neither can be installed on these machines
(they are on neither PyPI, Debian nor npm). Records, responses and suggestions live in the
server's database; the search engine is only a secondary index. This module registers an engine
named `test-null` that accepts every index write and refuses every query, then starts the server
or the worker in this process so that the registration is in effect.

What the real server still covers: users, workspaces, dataset/field/question/metadata/vector
settings, record upserts, responses, record status, the worker's jobs, and record listing
(`GET .../records`, which reads the database). What it leaves uncovered: text search, filters,
sorting, similarity search, metadata metrics and progress, whose answers come from the engine.
Each of them answers HTTP 501 naming this module, so a test that strays onto one fails instead
of passing on fake data.

Run with the server venv's Python, never from the project's venv and never in production:
`.venv-argilla-server/bin/python -P tests/argilla_search_engine.py server HOST PORT | worker`.
"""

from __future__ import annotations

import sys
from typing import Any

from argilla_server.errors.base_errors import BadRequestError
from argilla_server.search_engine import SearchEngine

ENGINE_NAME = "test-null"


class SearchNotAvailable(BadRequestError):
    """Answered as HTTP 501 with this message, through the server's own error handler."""

    HTTP_STATUS = 501

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} needs a real search engine; the test-only '{ENGINE_NAME}' "
                         "engine has none (tests/argilla_search_engine.py)")


@SearchEngine.register(engine_name=ENGINE_NAME)
class NullSearchEngine(SearchEngine):
    """Index writes are accepted and dropped; queries raise `SearchNotAvailable`."""

    @classmethod
    async def new_instance(cls) -> NullSearchEngine:
        return cls()

    async def close(self) -> None:
        pass

    async def ping(self) -> bool:  # the server refuses to start until this answers True
        return True

    async def info(self) -> dict:
        return {"distribution": ENGINE_NAME, "number": "0"}

    async def create_index(self, *args: Any) -> None:
        pass

    async def delete_index(self, *args: Any) -> None:
        pass

    async def configure_metadata_property(self, *args: Any) -> None:
        pass

    async def configure_index_vectors(self, *args: Any) -> None:
        pass

    async def index_records(self, *args: Any) -> None:
        pass

    async def partial_record_update(self, *args: Any, **update: Any) -> None:
        pass

    async def delete_records(self, *args: Any) -> None:
        pass

    async def update_record_response(self, *args: Any) -> None:
        pass

    async def delete_record_response(self, *args: Any) -> None:
        pass

    async def update_record_suggestion(self, *args: Any) -> None:
        pass

    async def delete_record_suggestion(self, *args: Any) -> None:
        pass

    async def get_dataset_progress(self, *args: Any) -> dict:
        raise SearchNotAvailable("dataset progress")

    async def get_dataset_user_progress(self, *args: Any) -> dict:
        raise SearchNotAvailable("user progress")

    async def search(self, *args: Any, **kwargs: Any) -> Any:
        raise SearchNotAvailable("record search, filters and sorting")

    async def compute_metrics_for(self, *args: Any) -> Any:
        raise SearchNotAvailable("metadata metrics")

    async def similarity_search(self, *args: Any, **kwargs: Any) -> Any:
        raise SearchNotAvailable("similarity search")


def main(argv: list[str]) -> None:
    """`server HOST PORT` runs the API with uvicorn; `worker` runs one rq worker on both queues."""
    if argv[:1] == ["server"] and len(argv) == 3:
        import uvicorn
        from argilla_server import app

        uvicorn.run(app, host=argv[1], port=int(argv[2]), access_log=False, log_level="warning")
    elif argv == ["worker"]:
        from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION
        from rq import Worker

        Worker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION).work()
    else:
        raise SystemExit("usage: argilla_search_engine.py server HOST PORT | worker")


if __name__ == "__main__":
    main(sys.argv[1:])
