"""Step-time models: the linear coefficients the provisioning rules use, and where they come from.

Data flows workload -> model -> **costs** -> provision -> sim. The step model itself
(:class:`afdlib.model.StepCoefficients`, stage and step times, the objective) is
:mod:`afdlib.model`'s; this package produces its coefficients and owns

* the coefficient file (:func:`load_coefficients`, :func:`save_coefficients`);
* model and hardware specifications (:mod:`afdlib.costs.specs`) and their presets
  (:mod:`afdlib.costs.presets`, files in ``data/``);
* the roofline derivation of the coefficients (:mod:`afdlib.costs.roofline`);
* reading measured kernel tables (:mod:`afdlib.costs.kerneldb`), least-squares fits with
  diagnostics (:mod:`afdlib.costs.fit`) and the committed fits (:mod:`afdlib.costs.measured`);
* KV-cache memory feasibility (:mod:`afdlib.costs.memory`);
* MoE routing imbalance: presets under balanced or power-law routing and how far it moves
  the FFN coefficients and the ratio (:mod:`afdlib.costs.routing`).
"""

from afdlib.costs.coefficients import (
                              CoefficientFile,
                              StepCoefficients,
                              load_coefficient_file,
                              load_coefficients,
                              save_coefficients,
)
from afdlib.costs.fit import (
                              FitQuality,
                              LinearFit,
                              PlateauLineFit,
                              fit_linear,
                              fit_plateau_line,
                              fit_quality,
                              linearize,
)
from afdlib.costs.measured import ROUTING_ALIASES, ROUTINGS, check_routing
from afdlib.costs.memory import KVFeasibility, kv_feasibility, max_feasible_batch
from afdlib.costs.presets import (
                              DEFAULT_BATCH,
                              DEFAULT_THETA,
                              BundleCurves,
                              PresetResult,
                              build_preset,
                              bundle_curves,
                              hardware_names,
                              load_gpu,
                              load_model,
                              model_names,
                              parse_hardware,
                              preset_coefficients,
                              preset_dir,
                              resolve_hardware_name,
)
from afdlib.costs.roofline import Efficiency, attention_roofline, comm_roofline, ffn_roofline_time
from afdlib.costs.routing import RoutingCase, RoutingImbalance, routing_imbalance
from afdlib.costs.specs import Deployment, GPUSpec, ModelSpec

__all__ = [
    "StepCoefficients", "CoefficientFile", "load_coefficients", "load_coefficient_file",
    "save_coefficients", "ROUTINGS", "ROUTING_ALIASES", "check_routing", "RoutingCase",
    "RoutingImbalance", "routing_imbalance", "resolve_hardware_name",
    "ModelSpec", "GPUSpec", "Deployment",
    "Efficiency", "attention_roofline", "ffn_roofline_time", "comm_roofline",
    "FitQuality", "LinearFit", "PlateauLineFit", "fit_linear", "fit_plateau_line",
    "fit_quality", "linearize",
    "KVFeasibility", "kv_feasibility", "max_feasible_batch",
    "DEFAULT_BATCH", "DEFAULT_THETA", "BundleCurves", "PresetResult", "build_preset",
    "bundle_curves", "hardware_names", "load_gpu", "load_model", "model_names",
    "parse_hardware", "preset_coefficients", "preset_dir",
]
