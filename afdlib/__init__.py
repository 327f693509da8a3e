"""afdlib: provisioning Attention-FFN disaggregated (AFD) LLM decoding.

Modules, in the order data flows (each imports only those before it):

* :mod:`afdlib.errors`, :mod:`afdlib.validate` -- input errors and the checks every layer uses;
* :mod:`afdlib.traces` -- read request traces, fetch the public ones;
* :mod:`afdlib.workload` -- length laws and the slot-load statistics theta and sigma;
* :mod:`afdlib.model` -- the step model: coefficients, stage and step times, the objective,
  the operating point;
* :mod:`afdlib.costs` -- where the coefficients come from (roofline, measured fits, presets);
* :mod:`afdlib.provision` -- mean-field, barrier and exact-load provisioning rules;
* :mod:`afdlib.sim` -- the simulator that referees the rules (it never imports them);
* :mod:`afdlib.study` -- the rules against the simulator over traces, batches and presets;
* :mod:`afdlib.book`, :mod:`afdlib.plots`, :mod:`afdlib.widgets` -- numbers, figures and
  widgets for the book;
* :mod:`afdlib.cli` -- the ``afd`` command line.
"""

__version__ = "0.1.0"
