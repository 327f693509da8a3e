"""``afd report``: one self-contained HTML page that sizes a bundle and says why.

The page shows the inputs and where each coefficient came from, the GPU counts, theta and
sigma with their intervals, the ratio under each rule (per instance and under the chosen
objective), the objective and the p99 step time against the ratio, the latency-feasible
choice, and, when asked, a confirming simulation sweep (common random numbers) with its
statistically equivalent ratios.

Everything is in the one file: figures are SVG images embedded as ``data:`` URIs, styles
inline, no script, no font, no link to anything outside. The page only *shows* results:
the rules come from :func:`afdlib.provision.provision`, the simulation from
:func:`afdlib.sim.sweep`, and the numbers are formatted here.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field, fields

import numpy as np

from afdlib.model import PER_INSTANCE
from afdlib.provision import ProvisionResult
from afdlib.validate import check_type

__all__ = ["Report", "simulated_quantile", "simulation_options", "render_html", "write_report",
           "ratios_to_simulate"]

#: Names of the rules as the page writes them.
RULE_LABELS = {"mean_field": "mean field", "barrier": "Gaussian barrier",
               "exact_load": "exact-load barrier"}
_COLORS = {"mean_field": "#1f77b4", "barrier": "#9467bd", "exact_load": "#d62728",
           "sim": "#000000", "target": "#2ca02c"}


def simulation_options() -> dict:
    """Extra options a sweep needs for per-step quantiles: ``record=True`` while the
    simulator's results do not report ``step_time_p99`` themselves, else none."""
    from afdlib.sim import SimResult

    names = {f.name for f in fields(SimResult)}
    return {} if "step_time_p99" in names else {"record": True}


def simulated_quantile(result, q: float) -> float:
    """A simulation's step-time ``q``-quantile (s): the result's own ``step_time_p50`` /
    ``step_time_p99`` where it reports them, else from its per-step records (after the
    warm-up); NaN when neither is there."""
    name = {0.5: "step_time_p50", 0.99: "step_time_p99"}.get(q)
    value = getattr(result, name, None) if name else None
    if value is not None:
        return float(value)
    records = getattr(result, "records", None)
    if records is None:
        return math.nan
    return float(np.quantile(records.step_time[result.warmup:], q))


def ratios_to_simulate(result: ProvisionResult, *, limit: int = 24) -> range:
    """Ratios a confirming sweep covers: 1 to a few beyond the largest choice of any rule
    (and of the latency target), at most ``limit`` and the table's end."""
    picks = [result.r_int(rule) for rule in result.rules]
    if result.slo is not None and result.slo.r_int is not None:
        picks.append(result.slo.r_int)
    top = min(result.max_ratio, max(limit, 1), max(picks) + max(3, math.ceil(0.3 * max(picks))))
    return range(1, top + 1)


@dataclass(frozen=True)
class Report:
    """What the page shows.

    Attributes
    ----------
    result : ProvisionResult
        Every rule at the operating point (with the latency target, if any).
    workload : dict
        ``description``, ``kind`` (trace, laws), ``requests`` and, for traces, the intervals
        ``theta_ci95`` and ``load_std_ci95`` (tokens).
    costs : dict
        ``source`` (one line), ``roles`` (role -> source), ``gpus_source``, and for presets
        ``model``, ``hardware``, ``linearized_at``, ``kv_memory``.
    warnings : tuple of str
        Warnings of the estimate.
    sweep : SweepResult or None
        A confirming simulation sweep at the same operating point.
    sweep_settings : dict
        Steps, seed, engine of the sweep.
    command : str
        The command line that made the report (shown, not run).
    """

    result: ProvisionResult
    workload: dict
    costs: dict
    warnings: tuple = ()
    sweep: object = None
    sweep_settings: dict = field(default_factory=dict)
    command: str = ""

    def __post_init__(self) -> None:
        check_type("result", self.result, ProvisionResult, "an afdlib.provision.ProvisionResult")


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def _svg_data_uri(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    data = base64.b64encode(buf.getvalue().encode("utf-8")).decode("ascii")
    return f"data:image/svg+xml;base64,{data}"


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.4), dpi=100)
    ax = fig.add_subplot()
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _objective_figure(report: Report) -> str:
    res = report.result
    point = res.point
    goal = point.objective.per_gpu() or point.objective
    table = res.objective_table(goal)
    fig, ax = _figure()
    for rule in res.rules:
        ax.plot(res.ratios, table[rule], color=_COLORS[rule], lw=1.5, label=RULE_LABELS[rule])
        ax.plot(res.r_int(rule), table[rule][res.r_int(rule) - 1], "v", color=_COLORS[rule],
                ms=7)
    if report.sweep is not None:
        sw = report.sweep
        tau = sw.column("mean_step_time")
        lam = goal.throughput(sw.ratios, point.batch, tau)
        lo = goal.throughput(sw.ratios, point.batch, np.array([r.step_time_ci95[1]
                                                               for r in sw.results]))
        hi = goal.throughput(sw.ratios, point.batch, np.array([r.step_time_ci95[0]
                                                               for r in sw.results]))
        ax.errorbar(sw.ratios, lam, yerr=[lam - lo, hi - lam], fmt="o", ms=3,
                    color=_COLORS["sim"], label="simulated (95% interval)")
    if res.slo is not None and res.slo.r_int is not None:
        ax.axvline(res.slo.r_int, color=_COLORS["target"], ls="--", lw=1,
                   label=f"best within p99 {1e3 * res.slo.target:.4g} ms")
    top = _shown_ratio(report)
    ax.set_xlim(0.5, top + 0.5)
    ax.set_xlabel("ratio r (Attention workers per FFN worker)")
    ax.set_ylabel(goal.unit)
    ax.legend(fontsize=8)
    return _svg_data_uri(fig)


def _shown_ratio(report: Report) -> int:
    res = report.result
    top = max(ratios_to_simulate(res, limit=res.max_ratio))
    if report.sweep is not None:
        top = max(top, int(report.sweep.ratios[-1]))
    return min(top, res.max_ratio)


def _latency_figure(report: Report) -> str:
    res = report.result
    rule = res.best_rule
    fig, ax = _figure()
    ms = 1e3
    ax.plot(res.ratios, ms * res.mean_step_times[rule], color="#7f7f7f", lw=1.2,
            label=f"mean ({RULE_LABELS[rule]})")
    ax.plot(res.ratios, ms * res.step_time_p99, color=_COLORS["exact_load"]
            if res.quantile_method == "exact" else _COLORS["barrier"], lw=1.6,
            label=f"p99, {res.quantile_method} law")
    if res.quantile_method == "exact":
        ax.plot(res.ratios, ms * res.step_time_p99_gaussian, color=_COLORS["barrier"], lw=1,
                ls=":", label="p99, Gaussian law")
    if report.sweep is not None:
        sim = np.array([simulated_quantile(r, 0.99) for r in report.sweep.results])
        if np.isfinite(sim).any():
            ax.plot(report.sweep.ratios, ms * sim, "o", ms=3, color=_COLORS["sim"],
                    label="p99, simulated")
    if res.slo is not None:
        ax.axhline(ms * res.slo.target, color=_COLORS["target"], ls="--", lw=1,
                   label="target")
    top = _shown_ratio(report)
    ax.set_xlim(0.5, top + 0.5)
    shown = res.step_time_p99[:top]
    low = float(res.mean_step_times[rule][:top].min())
    ax.set_ylim(0.9 * ms * low, 1.1 * ms * max(float(shown.max()),
                                               res.slo.target if res.slo is not None else 0.0))
    ax.set_xlabel("ratio r (Attention workers per FFN worker)")
    ax.set_ylabel("step time = time per output token (ms)")
    ax.legend(fontsize=8)
    return _svg_data_uri(fig)


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.2rem .5rem;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}
tr.pick td{background:#fff6d5}
.note{color:#555;font-size:.9rem}.warn{color:#8a4b00}
code{background:#f4f4f4;padding:0 .2rem}
img{max-width:100%;height:auto}
figure{margin:1rem 0}figcaption{font-size:.9rem;color:#444}
"""


def _e(value) -> str:
    return html.escape(str(value))


def _num(value, fmt: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    return _e(format(value, fmt))


def _ms(seconds) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "&ndash;"
    return f"{1e3 * seconds:.2f} ms"


def _table(head: list[str], rows: list[list[str]], *, left: int = 1,
           picks: set[int] | None = None) -> str:
    cls = ['class="l"' if i < left else "" for i in range(len(head))]
    out = ["<table><thead><tr>"]
    out += [f"<th {c}>{h}</th>" for c, h in zip(cls, head, strict=True)]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        mark = ' class="pick"' if picks and i in picks else ""
        out.append(f"<tr{mark}>" + "".join(f"<td {c}>{v}</td>" for c, v in
                                           zip(cls, row, strict=True)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _inputs_section(report: Report) -> str:
    res, w, c = report.result, report.workload, report.costs
    point = res.point
    co = point.coeffs
    rows = [["workload", _e(w.get("description", ""))],
            ["batch B", f"{point.batch} slots per Attention worker"],
            ["coefficients from", _e(c.get("source", ""))]]
    for role, text in c.get("roles", {}).items():
        rows.append([f"&nbsp;&nbsp;{_e(role)}", _e(text)])
    if "linearized_at" in c:
        lin = c["linearized_at"]
        rows.append(["linearized at", f"B = {lin['batch']}, theta = {lin['theta']:.0f} tokens, "
                                      f"r = {lin['ratio']:g}"])
    if "kv_memory" in c:
        kv = c["kv_memory"]
        rows.append(["KV memory", f"B = {point.batch} {'fits' if kv['fits'] else 'does NOT fit'}"
                                  f" (largest feasible B: {kv['max_batch']})"])
    g = point.objective.gpus
    rows.append(["GPU counts", (f"{g.attention} per Attention instance, {g.ffn} in the FFN "
                                f"instance" if g is not None else "unknown")
                 + f" <span class='note'>({_e(c.get('gpus_source', ''))})</span>"])
    rows.append(["objective", _e(point.objective.unit)])
    coeff_rows = [["alpha_A", _num(co.alpha_A), "s per cached token read"],
                  ["beta_A", _num(co.beta_A), "s"],
                  ["alpha_F", _num(co.alpha_F), "s per token of the bundle"],
                  ["beta_F", _num(co.beta_F), "s"],
                  ["alpha_C", _num(co.alpha_C), f"s per token ({co.comm_scales_with})"],
                  ["beta_C", _num(co.beta_C), "s"]]
    return ("<h2>Inputs</h2>" + _table(["input", "value"], rows, left=2)
            + "<h3>Step-time coefficients</h3>"
            + _table(["coefficient", "value", "unit"], coeff_rows, left=1))


def _workload_section(report: Report) -> str:
    w, point = report.workload, report.result.point
    rows = []
    if w.get("kind") == "trace":
        lo, hi = w["theta_ci95"]
        slo, shi = w["load_std_ci95"]
        rows.append(["theta", f"{point.theta:.2f}", f"{lo:.2f} .. {hi:.2f}"])
        rows.append(["sigma (load std)", f"{point.load_std:.2f}", f"{slo:.2f} .. {shi:.2f}"])
        note = (f"Estimated from {w.get('requests')} requests (ratio estimator, delta-method "
                "95% intervals).")
    else:
        rows.append(["theta", f"{point.theta:.2f}", "exact"])
        rows.append(["sigma (load std)", f"{point.load_std:.2f}", "exact"])
        note = "Exact for the length laws (no sampling error)."
    text = "".join(f"<p class='warn'>warning: {_e(m)}</p>" for m in report.warnings)
    return ("<h2>Workload</h2>" + _table(["statistic (tokens)", "value", "95% interval"], rows)
            + f"<p class='note'>{_e(note)}</p>" + text)


def _rules_section(report: Report) -> str:
    res = report.result
    point = res.point
    mf = res.mean_field
    per_inst = res.best_ratios(PER_INSTANCE)
    goal = point.objective
    chosen = {rule: res.r_int(rule) for rule in res.rules}
    table = res.objective_table()
    rows = []
    for rule in res.rules:
        r = chosen[rule]
        rows.append([RULE_LABELS[rule], str(r), _num(float(table[rule][r - 1]), ".1f"),
                     str(per_inst[rule]), _ms(float(res.step_time_p99[r - 1]))])
    head = ["rule", f"best r ({_e(goal.unit)})", _e(goal.unit), "best r per instance",
            "p99 step time at best r"]
    text = (f"<p>Mean-field optimum r* = {mf.r_star:.3f} ({_e(mf.formula)}, "
            f"{_e(mf.regime)}-bound regime); barrier optimum r* = {res.barrier.r_star:.3f}. "
            f"Ratios compared: 1..{res.max_ratio}.</p>")
    if not goal.per_instance and any(per_inst[r] != chosen[r] for r in res.rules):
        text += ("<p class='note'>The ratio per instance (the paper's objective, every instance "
                 "counted alike) differs from the ratio under the chosen objective: an FFN "
                 "instance of more GPUs than an Attention instance makes its idle time dearer, "
                 "so more Attention workers pay.</p>")
    return "<h2>The ratio under each rule</h2>" + text + _table(head, rows)


def _latency_section(report: Report) -> str:
    res = report.result
    slo = res.slo
    if slo is None:
        body = ("<p>No latency target was given (<code>--tpot-p99 SECONDS</code>). The p99 "
                f"step time at r = 1 is {_ms(float(res.step_time_p99[0]))}.</p>")
    elif slo.met:
        body = (f"<p><strong>Best ratio within the target:</strong> r = {slo.r_int} "
                f"(p99 step time {_ms(float(slo.step_time_quantile[slo.r_int - 1]))} &le; "
                f"{_ms(slo.target)}, {_e(slo.method)} law; {_num(slo.throughput, '.1f')} "
                f"{_e(res.point.objective.unit)}).</p>")
    else:
        body = (f"<p><strong>No ratio meets the target</strong> of {_ms(slo.target)}: the "
                f"smallest achievable p99 step time is {_ms(slo.smallest_target)}, at r = "
                f"{slo.smallest_at}.</p>")
    return "<h2>Latency</h2>" + body


def _table_section(report: Report) -> str:
    res = report.result
    point = res.point
    top = _shown_ratio(report)
    per_gpu = point.objective.per_gpu()
    best = res.best_rule
    per_inst = res.objective_table(PER_INSTANCE)[best]
    gpu = res.objective_table(per_gpu)[best] if per_gpu is not None else None
    picks = {res.r_int(r) - 1 for r in res.rules}
    if res.slo is not None and res.slo.r_int is not None:
        picks.add(res.slo.r_int - 1)
    rows = []
    for i in range(top):
        rows.append([str(i + 1), _num(float(per_inst[i]), ".1f"),
                     _num(None if gpu is None else float(gpu[i]), ".1f"),
                     _ms(float(res.mean_step_times[best][i])),
                     _ms(float(res.step_time_p50[i])), _ms(float(res.step_time_p99[i]))])
    head = ["r", "tokens/s per instance", "tokens/s per GPU", "mean step", "p50 step",
            "p99 step"]
    window = (f" Ratios 1..{top} of 1..{res.max_ratio} are shown." if top < res.max_ratio
              else "")
    return (f"<h2>Throughput and step time against r</h2><p class='note'>{_e(RULE_LABELS[best])}"
            f" rule; quantiles from the {_e(res.quantile_method)} law of the slowest worker. "
            f"Highlighted: the rules' choices.{_e(window)}</p>" + _table(head, rows, picks=picks))


def _sweep_section(report: Report) -> str:
    if report.sweep is None:
        return ("<h2>Simulation</h2><p class='note'>Not run (add <code>--simulate</code> for a "
                "confirming sweep).</p>")
    sw, res = report.sweep, report.result
    goal = res.point.objective
    equivalent = getattr(sw, "equivalent_ratios", None)
    rule_used = getattr(sw, "equivalence_rule", None)
    rows, picks = [], set()
    for i, (r, x) in enumerate(zip(sw.ratios, sw.results, strict=True)):
        lo, hi = x.objective_ci95
        rows.append([str(int(r)), _num(x.throughput, ".1f"), f"{lo:.1f} .. {hi:.1f}",
                     _ms(x.mean_step_time), _ms(simulated_quantile(x, 0.99)),
                     _ms(float(res.step_time_p99[int(r) - 1]))])
        if int(r) == sw.best_ratio:
            picks.add(i)
    s = report.sweep_settings
    text = (f"<p>{_e(s.get('steps', ''))} steps per ratio, seed {_e(s.get('seed', ''))}, "
            f"{_e(s.get('engine', 'step'))} engine, common random numbers across ratios. "
            f"Simulated best ratio: <strong>{sw.best_ratio}</strong>.")
    if equivalent is not None:
        text += (f" Statistically equivalent ratios: {', '.join(str(int(r)) for r in equivalent)}"
                 + (f" ({_e(rule_used)})" if rule_used else "") + ".")
    else:
        text += " (This simulator version does not report equivalent ratios.)"
    text += ("</p><p class='note'>A run's p99 is the sample quantile of its steps; loads change "
             "slowly (a request lasts hundreds of steps), so one run's p99 carries a sampling "
             "error of a few tenths of a percent or more. Common random numbers make the "
             "runs of different ratios share their first workers' requests.</p>")
    head = ["r", _e(goal.unit), "95% interval", "mean step", "p99 step (simulated)",
            "p99 step (predicted)"]
    return "<h2>Confirming simulation</h2>" + text + _table(head, rows, picks=picks)


def render_html(report: Report) -> str:
    """The report as one self-contained HTML document (a string)."""
    check_type("report", report, Report, "an afdlib.report.Report")
    res = report.result
    title = "AFD provisioning report"
    fig1 = _objective_figure(report)
    fig2 = _latency_figure(report)
    cap1 = ("Throughput under each rule against the ratio (triangles: each rule's best ratio)"
            + ("; dots: the simulation with 95% intervals" if report.sweep is not None else ""))
    cap2 = ("Mean and p99 step time against the ratio: the p99 grows with r even where the mean "
            "does not, because the step waits for the slowest of r workers")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p class='note'>{_e(report.workload.get('description', ''))}, B = {res.point.batch}"
        + (f"; made by <code>{_e(report.command)}</code>" if report.command else "") + "</p>",
        _summary(report),
        _inputs_section(report),
        _workload_section(report),
        _rules_section(report),
        _latency_section(report),
        f"<figure><img src='{fig1}' alt='{_e(cap1)}' width='640'><figcaption>{_e(cap1)}"
        "</figcaption></figure>",
        f"<figure><img src='{fig2}' alt='{_e(cap2)}' width='640'><figcaption>{_e(cap2)}"
        "</figcaption></figure>",
        _table_section(report),
        _sweep_section(report),
        "<p class='note'>Made by afdlib (<code>afd report</code>). Step model: one decode step "
        "lasts max(slowest worker's attention, communication, FFN); every request in the "
        "bundle gets one token per step, so the step time is the time per output token.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _summary(report: Report) -> str:
    res = report.result
    rule = res.best_rule
    r = res.r_int(rule)
    if res.slo is not None:
        r = res.slo.r_int
    goal = res.point.objective
    if r is None:
        return ("<p><strong>Recommendation:</strong> no ratio meets the latency target of "
                f"{_ms(res.slo.target)} at this batch; the smallest achievable p99 step time is "
                f"{_ms(res.slo.smallest_target)} (r = {res.slo.smallest_at}). A smaller batch "
                "lowers it (<code>afd provision --batches LO:HI</code> searches both).</p>")
    lam = float(res.objective_table()[rule][r - 1])
    why = "best within the latency target" if res.slo is not None else \
        f"best under the {RULE_LABELS[rule]} rule"
    return (f"<p><strong>Recommendation: r = {r}</strong> Attention workers per FFN worker "
            f"({_e(why)}): {lam:.1f} {_e(goal.unit)}, p99 step time "
            f"{_ms(float(res.step_time_p99[r - 1]))}.</p>")


def write_report(path, report: Report) -> None:
    """Write :func:`render_html` of ``report`` to ``path`` (UTF-8)."""
    from pathlib import Path

    Path(path).write_text(render_html(report), encoding="utf-8")
