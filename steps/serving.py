"""Run options of every recipe that can talk to a served teacher (vLLM, SGLang, TGI, an API).

None of them changes the data, so none is in the run id (`steps.recipe_config.run_option`):
a rerun with a higher concurrency, another timeout, a price or a higher cap continues the same run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Self

from pydantic import BaseModel, model_validator

from steps.errors import UserError
from steps.recipe_config import run_option

if TYPE_CHECKING:
    from steps.estimate import TokenBudget


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
    max_tokens_total: int | None = run_option(None, ge=1, description="stop cleanly once the run "
                                              "has used this many tokens (input + output); what "
                                              "was made is written")
    max_cost: float | None = run_option(None, gt=0, description="stop cleanly once the run has "
                                        "cost this much at --price-in/--price-out")
    # What a rerun of a capped run does, for the stop line (a recipe without checkpoints says so).
    cap_rerun: ClassVar[str] = "rerun with a higher cap to continue"
    # Whether the caps work with --ray (steps.cluster): not where the steps report tokens through
    # a file on the driver's machine.
    caps_on_ray: ClassVar[bool] = True

    @model_validator(mode="after")
    def _check_caps(self) -> Self:
        # TokenBudget checks the caps and prices: a bad one fails before any work
        if self.budget.capped and not self.caps_on_ray and getattr(self, "ray", False):
            raise UserError("--max-tokens-total / --max-cost do not work with --ray in "
                            f"{getattr(self, 'recipe', 'this recipe')}; drop the cap or --ray")
        return self

    @property
    def budget(self) -> TokenBudget:
        """The run's caps (`--max-tokens-total`, `--max-cost`) at its prices.

        Raises:
            UserError: a cost cap without prices.
        """
        from steps.estimate import TokenBudget  # (imports distilabel)

        return TokenBudget(self.max_tokens_total, self.max_cost, self.price_in, self.price_out,
                           rerun=self.cap_rerun)

    def concurrency(self, *specs: str | None) -> int:
        """Requests in flight per server: --max-concurrency, else the engines' default.

        The default is 64 when one of `specs` is a server, else 1 (local engines); a None spec is
        an engine the run does not use.
        """
        from steps.llms.concurrency import default_concurrency  # (imports distilabel)

        return self.max_concurrency or max(default_concurrency(s) for s in specs if s is not None)
