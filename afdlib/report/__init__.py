"""What an operator sees: the HTML provisioning report and the checks behind it.

This layer sits on top (with :mod:`afdlib.study`, the plots and the command line): it sees
the costs, the rules and the simulator, and computes nothing of its own but their
combination.

* :mod:`afdlib.report.page`: ``afd report``'s self-contained HTML page
  (:class:`Report`, :func:`render_html`, :func:`write_report`);
* :mod:`afdlib.report.checks`: preset operating points at any batch
  (:func:`preset_points`), predicted step-time quantiles against the simulator's
  (:func:`quantile_check`), used by the latency chapter and the report.
"""

from afdlib.report.checks import QuantileCheck, preset_points, quantile_check
from afdlib.report.page import (
    Report,
    ratios_to_simulate,
    render_html,
    simulated_quantile,
    simulation_options,
    write_report,
)

__all__ = ["Report", "render_html", "write_report", "simulated_quantile", "simulation_options",
           "ratios_to_simulate", "QuantileCheck", "preset_points", "quantile_check"]
