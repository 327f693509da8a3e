"""The study's table of settings as a self-contained HTML table (for the chapter).

One row per simulated setting; each rule's cell shows its ratio and its regret with the
interval's half-width, in percent, on a green ground when the ratio is in the equivalence
set and in bold when the whole interval lies above 1%. Settings where every rule agrees
(trivially decided) are greyed.
"""

from __future__ import annotations

import html

from afdlib.study.rules import RULES

__all__ = ["settings_table_html", "headline_table_html", "headline_rows", "ratio_set_text"]

_SHORT = {"azure2023_code": "code", "azure2023_conv": "conv",
          "mooncake_conversation": "mooncake", "sharegpt_8k": "sharegpt"}
_RULE_HEAD = {"paper": "paper (E[P]+E[D])", "mean field": "mean field (θ)",
              "Gaussian barrier": "Gaussian", "exact-load barrier": "exact load",
              "pipeline-aware": "pipeline-aware"}


def ratio_set_text(ratios) -> str:
    """A set of integers as runs, e.g. ``(3, 4, 5, 9)`` -> ``"3-5, 9"``."""
    values = sorted(int(r) for r in ratios)
    if not values:
        return ""
    runs, start, prev = [], values[0], values[0]
    for r in values[1:] + [None]:
        if r is not None and r == prev + 1:
            prev = r
            continue
        runs.append(f"{start}" if start == prev else f"{start}–{prev}")
        if r is not None:
            start = prev = r
    return ", ".join(runs)


def _rule_cell(cell: dict | None) -> str:
    if cell is None:
        return "<td></td>"
    half = 0.5 * (cell["high"] - cell["low"])
    style = []
    if cell["in_set"]:
        style.append("background:#e3f4e1")
    if cell["low"] > 0.01:
        style.append("font-weight:bold")
    attr = f' style="{";".join(style)}"' if style else ""
    return (f"<td{attr}>{cell['ratio']} <small>{100 * cell['regret']:.2f}"
            f"±{100 * half:.2f}</small></td>")


def settings_table_html(study, *, max_height: str = "36em") -> str:
    """The table of all simulated settings of a :class:`~afdlib.study.StudyResult`.

    Parameters
    ----------
    study : StudyResult
    max_height : str
        CSS height of the scrolling box around the table.

    Returns
    -------
    str
        An HTML fragment (a scrolling ``div`` holding a ``table``).
    """
    head = ["#", "workload", "B", "coefficients", "regime", "referee", "runs", "best",
            "equivalent"] + [_RULE_HEAD[r] for r in RULES] + ["coarse grid", "80% trace"]
    out = [f'<div style="max-height:{max_height};overflow:auto;font-size:80%">',
           '<table class="study-table" style="border-collapse:collapse;white-space:nowrap">',
           "<thead><tr>" + "".join(f'<th style="position:sticky;top:0;background:#fff">'
                                   f"{html.escape(h)}</th>" for h in head) + "</tr></thead>",
           "<tbody>"]
    for i, row in enumerate(study.rows(), start=1):
        grey = ' style="color:#888"' if row["trivial"] else ""
        eq = ratio_set_text(row["equivalent"]) + ("" if row["resolved"] else " (u)")
        cells = [str(i), _SHORT.get(row["workload"], row["workload"]), str(row["batch"]),
                 html.escape(row["coeffs"].removesuffix(".json")), row["regime"],
                 html.escape(row["referee"]), f"{row['replications']}×{row['steps']:,}",
                 str(row["best"]), eq]
        tds = [f"<td>{c}</td>" for c in cells]
        tds += [_rule_cell(row["rules"].get(name)) for name in RULES]
        c = row["coarse"]
        tds.append(f"<td>{c['best']} <small>{100 * c['regret']:.2f}</small></td>")
        f = row["finite"]
        if f["best"] is None:
            tds.append("<td></td>")
        else:
            gap = f["gap_at_best"]
            gap_text = "" if gap != gap else f"{round(100 * gap, 1) + 0.0:+.1f}"
            tds.append(f"<td>{f['best']} <small>{gap_text}</small></td>")
        out.append(f"<tr{grey}>" + "".join(tds) + "</tr>")
    out += ["</tbody></table></div>"]
    return "\n".join(out)


def _pct(x: float, digits: int = 2) -> str:
    if x != x:  # NaN
        return "–"
    return f"{round(100 * x, digits) + 0.0:.{digits}f}%"


def headline_table_html(study, *, rules_differ: bool = True) -> str:
    """Per referee and rule: settings, worst regret with its interval, worst regret where
    the rule's regret is resolved, the largest lower end of a regret interval, mean regret,
    share in the equivalence set, and settings whose whole regret interval lies above 1%.

    Parameters
    ----------
    study : StudyResult
    rules_differ : bool
        Over the settings where the rules differ (default) or all.

    Returns
    -------
    str
        An HTML table.
    """
    head = ["referee", "rule", "settings", "worst regret (95% interval)",
            "worst where resolved (±0.5%)", "largest lower bound", "mean regret",
            "in equivalence set", "surely > 1%"]
    out = ['<table class="study-headline" style="border-collapse:collapse">',
           "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
           + "</tr></thead>", "<tbody>"]
    for kind, block in study.headline(rules_differ=rules_differ).items():
        for rule, s in block.items():
            cells = [kind, _RULE_HEAD[rule], str(s.settings),
                     f"{_pct(s.worst_regret)} ({_pct(s.worst_low)} to {_pct(s.worst_high)})",
                     f"{_pct(s.worst_resolved_regret)} <small>of {s.regret_resolved}</small>",
                     _pct(s.largest_lower_bound), _pct(s.mean_regret), _pct(s.in_set, 0), str(s.over_1pct_resolved)]
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def headline_rows(study, *, rules_differ: bool = True) -> list[dict]:
    """The headline figures as rows for :func:`afdlib.plots.tables.table` (percent).

    Keys: ``referee, rule, settings, worst, worst_low, worst_high, worst_resolved,
    resolved, lower_bound, mean, in_set, sure_over_1pct`` (regrets and shares in percent;
    ``worst_resolved`` is None where no regret is resolved).
    """
    out = []
    for kind, block in study.headline(rules_differ=rules_differ).items():
        for rule, s in block.items():
            tight = s.worst_resolved_regret
            out.append({"referee": kind, "rule": _RULE_HEAD[rule], "settings": s.settings,
                        "worst": 100 * s.worst_regret, "worst_low": 100 * s.worst_low,
                        "worst_high": 100 * s.worst_high,
                        "worst_resolved": None if tight != tight else 100 * tight,
                        "resolved": s.regret_resolved,
                        "lower_bound": 100 * s.largest_lower_bound,
                        "mean": 100 * s.mean_regret, "in_set": 100 * s.in_set,
                        "sure_over_1pct": s.over_1pct_resolved})
    return out
