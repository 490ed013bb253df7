"""Run options of every recipe that can talk to a served teacher (vLLM, SGLang, TGI, an API).

None of them changes the data, so none is in the run id (`steps.recipe_config.run_option`):
a rerun with a higher concurrency, another timeout or a price continues the same run.
"""

from __future__ import annotations

from pydantic import BaseModel

from steps.recipe_config import run_option


class ServingOptions(BaseModel):
    """Concurrency, timeouts, retries and the cost estimate of server engines (issue 11)."""

    max_concurrency: int | None = run_option(None, ge=1, description="requests in flight per "
                                             "server engine (default 64; local engines run 1)")
    request_timeout: float = run_option(120.0, gt=0, description="seconds a server has to answer "
                                        "one request before it is retried")
    request_retries: int = run_option(6, ge=0, description="retries per request on server "
                                      "errors, 429s and timeouts (with backoff)")
    estimate: bool = run_option(False, description="print the run's requests, tokens, time and "
                                "cost, then exit without generating")
    throughput: float | None = run_option(None, gt=0, description="generated tokens/s for "
                                          "--estimate (default: what the last run measured)")
    price_in: float | None = run_option(None, ge=0, description="price per million input tokens")
    price_out: float | None = run_option(None, ge=0, description="price per million output "
                                         "tokens")

    def concurrency(self, *specs: str | None) -> int:
        """Requests in flight per server: --max-concurrency, else the engines' default.

        The default is 64 when one of `specs` is a server, else 1 (local engines); a None spec is
        an engine the run does not use.
        """
        from steps.llms.concurrency import default_concurrency  # (imports distilabel)

        return self.max_concurrency or max(default_concurrency(s) for s in specs if s is not None)
