"""The rules the study referees, each asked for an integer ratio at a setting.

* ``paper``: the paper's first rule, the mean-field optimum with theta replaced by
  ``E[P] + E[D]`` (its best integer ratio, comparing ``floor`` and ``ceil`` of ``r*``);
* ``mean field``: the same with the renewal-reward theta (:func:`afdlib.provision.
  best_integer_mean_field`);
* ``Gaussian barrier``: :func:`afdlib.provision.barrier_ratio` (normal worker loads);
* ``exact-load barrier``: :func:`afdlib.provision.exact_ratio` (the exact law of a worker's
  load, the step model's exact stationary mean step time);
* ``pipeline-aware``: :func:`afdlib.provision.pipelined.pipelined_ratio` (the micro-batch
  pipeline's quasi-static maximum cycle mean), for pipelined referees only.

Every rule searches the integer ratios ``1 .. max_ratio`` under the point's objective.
"""

from __future__ import annotations

import functools

from afdlib.provision import (
    barrier_ratio,
    best_integer_mean_field,
    exact_ratio,
    mean_field_ratio,
    worker_load_law,
)
from afdlib.provision.pipelined import microbatch_load_laws, pipelined_ratio
from afdlib.study.grid import Referee, Resolved, build_workload

__all__ = ["RULES", "STEP_RULES", "rules_for", "rule_ratios", "paper_r_star"]

#: Every rule, in the order the book shows them.
RULES = ("paper", "mean field", "Gaussian barrier", "exact-load barrier", "pipeline-aware")
#: The rules of the step model (asked under every referee).
STEP_RULES = RULES[:4]


def rules_for(referee: Referee) -> tuple[str, ...]:
    """The rules asked under ``referee``: all five for a pipelined one, else the step rules."""
    return RULES if referee.engine == "pipeline" else STEP_RULES


@functools.lru_cache(maxsize=128)
def _law(workload: str, batch: int):
    return worker_load_law(build_workload(workload), batch)


@functools.lru_cache(maxsize=128)
def _microbatch_laws(workload: str, batch: int, microbatches: int):
    return microbatch_load_laws(build_workload(workload), batch, microbatches=microbatches)


def paper_r_star(res: Resolved) -> float:
    """The paper's continuous mean-field ``r*`` (theta replaced by ``E[P] + E[D]``)."""
    return float(mean_field_ratio(res.point.replace(theta=res.stats.naive_theta)).r_star)


def rule_ratios(res: Resolved, *, max_ratio: int = 64) -> dict[str, int]:
    """Each rule's best integer ratio in ``1 .. max_ratio`` at a resolved setting.

    Returns
    -------
    dict of str -> int
        Keys :func:`rules_for` of the setting's referee, in :data:`RULES` order.
    """
    s, point = res.setting, res.point
    out = {
        "paper": best_integer_mean_field(point.replace(theta=res.stats.naive_theta),
                                         max_ratio=max_ratio),
        "mean field": best_integer_mean_field(point, max_ratio=max_ratio),
        "Gaussian barrier": barrier_ratio(point, max_ratio=max_ratio).r_int,
        "exact-load barrier": exact_ratio(point, _law(s.workload, s.batch),
                                          max_ratio=max_ratio).r_int,
    }
    ref = s.referee
    if ref.engine == "pipeline":
        laws = _microbatch_laws(s.workload, s.batch, ref.microbatches)
        out["pipeline-aware"] = pipelined_ratio(point, laws, max_ratio=max_ratio,
                                                microbatches=ref.microbatches,
                                                intercepts=ref.intercepts).r_int
    return {k: int(v) for k, v in out.items()}
