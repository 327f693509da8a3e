"""A study's results: the table of settings and the figures the book quotes.

:class:`StudyResult` holds the settings' raw results (:class:`~afdlib.study.run.
SettingResult`), the plan and seed that made them and the coverage check, and derives
everything from the raw step times:

* :meth:`StudyResult.rows` -- one row per setting: simulated best, equivalence set, each
  rule's ratio, regret with its interval and membership of the set, the ratio error where
  the optimum is resolved, the coarse-grid answer and the finite-trace answer;
* :meth:`StudyResult.headline` -- per referee kind and rule: worst and mean regret and the
  share of settings whose ratio is in the equivalence set, over the settings where the
  rules differ (or all);
* :meth:`StudyResult.coarse_grid` -- the paper's "within 10%" on its grid ``{1, 2, 4, 8,
  16, 24, 32}`` next to the fine-grid answer;
* :meth:`StudyResult.finite_trace` -- the first-80%-of-completions throughput next to the
  stationary one.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.study.compare import RatioComparison
from afdlib.study.coverage import CoverageResult
from afdlib.study.grid import REFEREE_KINDS
from afdlib.study.rules import RULES, rules_for
from afdlib.study.run import RunPlan, SettingResult

__all__ = ["CACHE_FORMAT", "StudyResult", "RuleSummary", "save_study", "load_study",
           "within", "breakdown", "referee_gap"]

#: Version of the cache file's layout.
CACHE_FORMAT = 1


def within(ratio: float, target: float, tolerance: float = 0.10) -> bool:
    """``|ratio - target| <= tolerance * target``: the paper's "within 10%"."""
    return abs(ratio - target) <= tolerance * target


@dataclass(frozen=True)
class RuleSummary:
    """One rule under one referee kind, over a set of settings.

    Attributes
    ----------
    settings : int
        Settings summarized.
    worst_regret : float
        Largest regret (fraction), and ``worst_low``, ``worst_high`` its interval,
        ``worst_key`` its setting.
    mean_regret : float
        Mean regret (fraction).
    in_set : float
        Share of settings whose ratio is in the equivalence set.
    over_1pct : int
        Settings whose regret estimate exceeds 1%; ``over_1pct_resolved``: whose interval
        lies above 1% entirely.
    resolved : int
        Settings where the optimum is resolved; ``within_10pct`` the share of them whose
        ratio is within 10% of the simulated best, ``worst_ratio_error`` the largest
        relative ratio error among them (NaN if none).
    regret_resolved : int
        Settings where the rule's regret is resolved (its interval's half-width at most
        the plan's target, 0.5%); ``worst_resolved_regret`` the largest regret among them
        (NaN if none) and ``worst_resolved_key`` its setting.
    largest_lower_bound : float
        The largest lower end of a regret interval: in some setting the rule surely gives
        up at least this much (fraction).
    """

    settings: int
    worst_regret: float
    worst_low: float
    worst_high: float
    worst_key: str
    mean_regret: float
    in_set: float
    over_1pct: int
    over_1pct_resolved: int
    resolved: int
    within_10pct: float
    worst_ratio_error: float
    regret_resolved: int = 0
    worst_resolved_regret: float = math.nan
    worst_resolved_key: str = ""
    largest_lower_bound: float = math.nan


@dataclass(frozen=True, eq=False)
class StudyResult:
    """A study's raw results and what the book derives from them.

    Attributes
    ----------
    results : tuple of SettingResult
        In the order of the settings.
    plan : RunPlan
    seed : int
    coverage : CoverageResult or None
        The coverage check of the equivalence set and regret intervals.
    meta : dict
        How the results were made (command, wall time); not compared.
    """

    results: tuple
    plan: RunPlan = field(default_factory=RunPlan)
    seed: int = 0
    coverage: CoverageResult | None = None
    meta: dict = field(default_factory=dict)

    # -- access ------------------------------------------------------------------------
    @property
    def ran(self) -> list[SettingResult]:
        """Settings that were simulated (not skipped)."""
        return [r for r in self.results if r.skipped is None]

    @property
    def skipped(self) -> list[SettingResult]:
        """Settings skipped (a preset that fits no instance)."""
        return [r for r in self.results if r.skipped is not None]

    def of_kind(self, kind: str) -> list[SettingResult]:
        """Simulated settings refereed by ``kind`` (``"step"``, ``"pipeline"``, ``"replay"``)."""
        return [r for r in self.ran if r.setting.referee.kind == kind]

    def result(self, key: str) -> SettingResult:
        """The result of the setting with :attr:`~afdlib.study.grid.Setting.key` ``key``."""
        for r in self.results:
            if r.key == key:
                return r
        raise AfdInputError(f"no setting {key!r} in the study", parameter="key")

    def find(self, workload: str, batch: int, coeffs: str, kind: str) -> SettingResult:
        """The simulated setting of a workload, batch, coefficient source and referee kind."""
        for r in self.ran:
            s = r.setting
            if (s.workload, s.batch, s.coeffs, s.referee.kind) == (workload, batch, coeffs,
                                                                    kind):
                return r
        raise AfdInputError(f"no {kind} setting for {workload}, B = {batch}, {coeffs}",
                            parameter="setting")

    @functools.cached_property
    def _comparisons(self) -> dict:
        return {r.key: r.comparison(self.plan.confidence) for r in self.ran}

    def comparison(self, key: str) -> RatioComparison:
        """The :class:`~afdlib.study.compare.RatioComparison` of a setting (cached)."""
        return self._comparisons[key]

    # -- the table ---------------------------------------------------------------------
    def row(self, res: SettingResult) -> dict:
        """One setting's row (see :meth:`rows`)."""
        cmp = self.comparison(res.key)
        best = cmp.best_ratio
        s = res.setting
        row = {"key": res.key, "workload": s.workload, "batch": s.batch,
               "coeffs": res.coeffs_label, "regime": res.regime, "formula": res.formula,
               "comm": res.coefficients.get("comm_scales_with", "B"), "referee": s.referee.label,
               "kind": s.referee.kind, "replications": res.replications, "steps": res.steps,
               "best": best, "equivalent": cmp.equivalent_ratios, "resolved": cmp.resolved,
               "trivial": res.trivial, "r_star_paper": res.r_star_paper, "rules": {}}
        for name in rules_for(s.referee):
            r = res.rules[name]
            g = cmp.regret(r)
            row["rules"][name] = {
                "ratio": r, "regret": g.estimate, "low": g.low, "high": g.high,
                "in_set": cmp.in_equivalence_set(r),
                "ratio_error": abs(r - best) / best if cmp.resolved else math.nan}
        coarse = [r for r in self.plan.coarse_grid if r in set(cmp.ratios.tolist())]
        r_c = cmp.best_of(coarse)
        row["coarse"] = {"best": r_c, "regret": cmp.regret(r_c).estimate,
                         "in_set": cmp.in_equivalence_set(r_c),
                         "paper_within_coarse": within(res.r_star_paper, r_c),
                         "paper_within_fine": within(res.r_star_paper, best),
                         "best_within_coarse": within(best, r_c)}
        row["finite"] = self._finite_row(res, cmp)
        return row

    def _finite_row(self, res: SettingResult, cmp: RatioComparison) -> dict:
        ok = np.isfinite(res.finite)
        stationary = res.throughput()
        i = cmp.column(cmp.best_ratio)
        if not ok.any():
            return {"best": None, "gap_at_best": math.nan, "regret": math.nan,
                    "in_set": False, "mark": -1}
        j = int(np.flatnonzero(ok)[np.argmax(res.finite[ok])])
        r80 = int(res.ratios[j])
        return {"best": r80,
                "gap_at_best": (float(res.finite[i] / stationary[i] - 1.0) if ok[i]
                                else math.nan),
                "regret": cmp.regret(r80).estimate, "in_set": cmp.in_equivalence_set(r80),
                "mark": int(res.finite_marks[i])}

    @functools.cached_property
    def _rows(self) -> list[dict]:
        return [self.row(r) for r in self.ran]

    def rows(self) -> list[dict]:
        """The table: one row per simulated setting (dicts; fractions, not percent).

        Keys: ``key, workload, batch, coeffs, regime, referee, kind, replications, steps,
        best, equivalent, resolved, trivial, r_star_paper``; ``rules`` (name ->
        ``ratio, regret, low, high, in_set, ratio_error``); ``coarse`` (``best`` on the
        coarse grid, its ``regret`` and ``in_set``, and whether the paper's ``r*`` is
        within 10% of the coarse best, ``paper_within_coarse``, and of the fine best,
        ``paper_within_fine``); ``finite`` (``best`` ratio of the finite-trace
        measurement, ``gap_at_best`` its throughput over the stationary one at the
        simulated best minus 1, the stationary ``regret`` of following it, ``in_set``).
        """
        return list(self._rows)

    # -- headline figures ------------------------------------------------------------
    def headline(self, *, rules_differ: bool = True) -> dict:
        """Per referee kind and rule, a :class:`RuleSummary`.

        Parameters
        ----------
        rules_differ : bool
            Only the settings where the rules asked give different ratios (default), or
            all simulated settings.

        Returns
        -------
        dict of kind -> dict of rule -> RuleSummary
        """
        out: dict = {}
        for kind in REFEREE_KINDS:
            rows = [r for r in self._rows if r["kind"] == kind
                    and (not rules_differ or not r["trivial"])]
            if not rows:
                continue
            out[kind] = {}
            for name in RULES:
                cells = [(r, r["rules"][name]) for r in rows if name in r["rules"]]
                if not cells:
                    continue
                reg = np.array([c["regret"] for _, c in cells])
                k = int(np.argmax(reg))
                res_err = np.array([c["ratio_error"] for r, c in cells if r["resolved"]])
                tight = [i for i, (_, c) in enumerate(cells)
                         if 0.5 * (c["high"] - c["low"]) <= self.plan.target_halfwidth]
                kt = max(tight, key=lambda i: reg[i]) if tight else None
                out[kind][name] = RuleSummary(
                    settings=len(cells), worst_regret=float(reg[k]),
                    worst_low=cells[k][1]["low"], worst_high=cells[k][1]["high"],
                    worst_key=cells[k][0]["key"], mean_regret=float(reg.mean()),
                    in_set=float(np.mean([c["in_set"] for _, c in cells])),
                    over_1pct=int(np.sum(reg > 0.01)),
                    over_1pct_resolved=int(sum(c["low"] > 0.01 for _, c in cells)),
                    resolved=int(res_err.size),
                    within_10pct=(float(np.mean(res_err <= 0.10 + 1e-12)) if res_err.size
                                  else math.nan),
                    worst_ratio_error=float(res_err.max()) if res_err.size else math.nan,
                    regret_resolved=len(tight),
                    worst_resolved_regret=math.nan if kt is None else float(reg[kt]),
                    worst_resolved_key="" if kt is None else cells[kt][0]["key"],
                    largest_lower_bound=float(max(c["low"] for _, c in cells)))
        return out

    def counts(self) -> dict:
        """Settings per referee kind: ``total``, ``trivial`` (every rule agrees),
        ``differ``, ``resolved`` (optimum resolved) and ``skipped``."""
        out = {}
        for kind in REFEREE_KINDS:
            rows = [r for r in self._rows if r["kind"] == kind]
            out[kind] = {"total": len(rows), "trivial": sum(r["trivial"] for r in rows),
                         "differ": sum(not r["trivial"] for r in rows),
                         "resolved": sum(r["resolved"] for r in rows),
                         "skipped": sum(r.setting.referee.kind == kind
                                        for r in self.skipped)}
        return out

    # -- the paper's measurements ------------------------------------------------------
    def coarse_grid(self) -> dict:
        """The paper's coarse grid against the fine one, over all simulated settings.

        Returns
        -------
        dict
            ``settings``; ``paper_within_coarse`` and ``paper_within_fine`` (shares of
            settings where the paper's ``r*`` is within 10% of the coarse-grid best and,
            among settings whose optimum is resolved, of the fine-grid best;
            ``resolved`` counts those); ``coarse_in_set`` (share whose coarse-grid best is
            in the equivalence set); ``coarse_regret_mean``, ``coarse_regret_worst`` (the
            regret of trusting the coarse grid's best) and ``coarse_over_1pct``.
        """
        rows = self._rows
        resolved = [r for r in rows if r["resolved"]]
        reg = np.array([r["coarse"]["regret"] for r in rows])
        return {"settings": len(rows),
                "paper_within_coarse": float(np.mean([r["coarse"]["paper_within_coarse"]
                                                      for r in rows])),
                "resolved": len(resolved),
                "paper_within_fine": (float(np.mean([r["coarse"]["paper_within_fine"]
                                                     for r in resolved]))
                                      if resolved else math.nan),
                "paper_within_fine_all": float(np.mean([r["coarse"]["paper_within_fine"]
                                                        for r in rows])),
                "coarse_in_set": float(np.mean([r["coarse"]["in_set"] for r in rows])),
                "coarse_regret_mean": float(reg.mean()),
                "coarse_regret_worst": float(reg.max()),
                "coarse_over_1pct": int(np.sum(reg > 0.01))}

    def finite_trace(self) -> dict:
        """The finite-trace (first 80% of completions) measurement against the stationary
        one, over the simulated settings where it is defined.

        Returns
        -------
        dict
            ``settings``; ``gap_mean``, ``gap_min``, ``gap_max`` (finite over stationary
            throughput minus 1 at the simulated best); ``gap_over_1pct`` (settings where
            ``|gap|`` exceeds 1%); ``best_differs`` (share where the finite measurement's
            best ratio is not the stationary best); ``regret_mean``, ``regret_worst`` (the
            stationary regret of following the finite measurement's best) and ``in_set``.
        """
        rows = [r for r in self._rows if r["finite"]["best"] is not None
                and math.isfinite(r["finite"]["gap_at_best"])]
        gap = np.array([r["finite"]["gap_at_best"] for r in rows])
        reg = np.array([r["finite"]["regret"] for r in rows])
        return {"settings": len(rows), "gap_mean": float(gap.mean()),
                "gap_min": float(gap.min()), "gap_max": float(gap.max()),
                "gap_over_1pct": int(np.sum(np.abs(gap) > 0.01)),
                "best_differs": float(np.mean([r["finite"]["best"] != r["best"]
                                               for r in rows])),
                "regret_mean": float(reg.mean()), "regret_worst": float(reg.max()),
                "in_set": float(np.mean([r["finite"]["in_set"] for r in rows]))}

    # -- the cache ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The cache file's object."""
        return {"format": CACHE_FORMAT, "seed": self.seed, "plan": self.plan.to_dict(),
                "coverage": None if self.coverage is None else self.coverage.to_dict(),
                "meta": self.meta, "settings": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, data: dict) -> StudyResult:
        """Inverse of :meth:`to_dict`."""
        if data.get("format") != CACHE_FORMAT:
            raise AfdInputError(f"study cache format {data.get('format')!r}, expected "
                                f"{CACHE_FORMAT}: regenerate it with scripts/run_study.py",
                                parameter="cache")
        cov = data.get("coverage")
        return cls(tuple(SettingResult.from_dict(x) for x in data["settings"]),
                   RunPlan.from_dict(data["plan"]), int(data["seed"]),
                   None if cov is None else CoverageResult.from_dict(cov),
                   dict(data.get("meta", {})))


def save_study(study: StudyResult, path) -> Path:
    """Write a study to a JSON cache file (floats at full precision: they read back exactly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(study.to_dict(), separators=(",", ":"), allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def load_study(path=None) -> StudyResult:
    """Read a study cache (default: the book's, ``data/study/study.json``).

    Raises
    ------
    AfdInputError
        If the file is missing or not a study cache.
    """
    if path is None:
        from afdlib.study.grid import study_data_dir
        path = study_data_dir() / "study.json"
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AfdInputError(f"{path}: no study cache; run scripts/run_study.py",
                            parameter="cache") from None
    except (OSError, ValueError) as exc:
        raise AfdInputError(f"{path}: not a study cache ({exc})", parameter="cache") from None
    return StudyResult.from_dict(data)


# -- breakdowns and referee against referee ---------------------------------------------------


def _group_value(row: dict, by: str):
    if by in ("microbatches", "intercepts"):
        ref = row["referee"].split()
        return (int(ref[1][2:]) if by == "microbatches" else ref[2]) if len(ref) == 3 else None
    return row[by]


def breakdown(study: StudyResult, kind: str, rule: str, by: str, *,
              rules_differ: bool = True) -> dict:
    """Worst and mean regret of ``rule`` under referee ``kind``, grouped by a row field.

    Parameters
    ----------
    study : StudyResult
    kind : str
        Referee kind.
    rule : str
        One of :data:`afdlib.study.RULES`.
    by : str
        A key of :meth:`StudyResult.rows` (``"regime"``, ``"workload"``, ``"batch"``,
        ``"comm"``) or ``"microbatches"`` / ``"intercepts"`` (pipelined referees).
    rules_differ : bool
        Only settings where the rules differ.

    Returns
    -------
    dict of group -> {"settings", "worst", "mean", "in_set"}
        In the groups' sorted order (regrets as fractions).
    """
    groups: dict = {}
    for row in study.rows():
        if row["kind"] != kind or (rules_differ and row["trivial"]) or rule not in row["rules"]:
            continue
        groups.setdefault(_group_value(row, by), []).append(row["rules"][rule])
    out = {}
    for g in sorted(groups, key=str):
        cells = groups[g]
        reg = np.array([c["regret"] for c in cells])
        out[g] = {"settings": len(cells), "worst": float(reg.max()), "mean": float(reg.mean()),
                  "in_set": float(np.mean([c["in_set"] for c in cells]))}
    return out


def referee_gap(study: StudyResult, kind: str, base: str = "step") -> list[dict]:
    """Settings refereed by ``kind`` next to the same workload, batch and coefficients
    refereed by ``base``.

    Returns
    -------
    list of dict
        Per pair: ``key`` (of the ``kind`` setting), ``best`` and ``base_best`` (the two
        simulated best ratios), ``throughput_gap`` (best throughput under ``kind`` over
        that under ``base``, minus 1), ``throughput_gap_halfwidth`` (its 95% half-width:
        the two sides are independent replications, so their variances add; a normal
        quantile on the log scale) and ``base_best_regret`` (the regret under ``kind`` of
        following ``base``'s best ratio; NaN when ``kind`` did not simulate it).
    """
    twins = {}
    for res in study.ran:
        s = res.setting
        twins[(s.workload, s.batch, s.coeffs, s.referee.kind)] = res
    out = []
    for res in study.of_kind(kind):
        s = res.setting
        other = twins.get((s.workload, s.batch, s.coeffs, base))
        if other is None:
            continue
        a, b = study.comparison(res.key), study.comparison(other.key)
        lam_a, lam_b = a.throughput(), b.throughput()
        r_b = b.best_ratio
        regret = a.regret(r_b).estimate if r_b in set(a.ratios.tolist()) else math.nan
        xa, xb = a.table[:, a.column(a.best_ratio)], b.table[:, b.column(r_b)]
        se = math.sqrt(xa.var(ddof=1) / xa.size + xb.var(ddof=1) / xb.size)
        gap = float(lam_a[a.column(a.best_ratio)] / lam_b[b.column(r_b)] - 1.0)
        out.append({"key": res.key, "best": a.best_ratio, "base_best": r_b,
                    "throughput_gap": gap,
                    "throughput_gap_halfwidth": float((1.0 + gap) * 1.959964 * se),
                    "base_best_regret": regret})
    return out
