"""afdlib: provisioning Attention-FFN disaggregated (AFD) LLM decoding.

Modules, in the order data flows:

* :mod:`afdlib.traces` -- read request traces, fetch the public ones;
* :mod:`afdlib.workload` -- length laws and the slot-load statistics theta and sigma;
* :mod:`afdlib.costs` -- the step-time model (coefficients, roofline, fits);
* :mod:`afdlib.provision` -- mean-field and barrier-aware provisioning rules;
* :mod:`afdlib.sim` -- the simulator that referees the rules;
* :mod:`afdlib.plots`, :mod:`afdlib.widgets` -- figures and widgets for the book;
* :mod:`afdlib.cli` -- the ``afd`` command line.
"""

__version__ = "0.1.0"
