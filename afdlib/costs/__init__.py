"""Step-time models: the linear coefficients the provisioning rules use.

Data flows workload -> **costs** -> provision -> sim. This package owns the linear
step-time model (:class:`StepCoefficients` and its JSON file).
"""

from afdlib.costs.coefficients import StepCoefficients, load_coefficients, save_coefficients

__all__ = ["StepCoefficients", "load_coefficients", "save_coefficients"]
