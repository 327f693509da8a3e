"""What a study setting is: a workload, a batch, coefficients and a referee.

A :class:`Setting` names everything that defines one experiment, in plain strings and
integers (so it pickles to any executor and prints as a key); :func:`resolve` turns it
into numbers: the workload's requests, their load statistics, the step-time coefficients
and the operating point the rules see.

Workloads (:data:`WORKLOADS`)
    The four public traces (:data:`afdlib.traces.PUBLIC_TRACES`: ``azure2023_code``,
    ``azure2023_conv``, ``mooncake_conversation``, ``sharegpt_8k``, read with
    :func:`afdlib.traces.load_trace`, decode steps = recorded output tokens); ``paper``,
    the paper's setting (geometric prompt with mean 100 from 0, geometric decode with mean
    500); ``heavy``, heavy-tailed prompt and decode (clipped lognormals); ``correlated``,
    40,000 rows whose log prompt and log decode have correlation 0.6.

Coefficients (``Setting.coeffs``)
    ``"plain:KIND"``: a plain coefficient file (the format ``afd provision --coeffs``
    reads) in ``data/study/coefficients/``, written by :func:`write_plain_coefficients`
    from the recipe :func:`plain_coefficients` for the setting's workload and batch, so
    that each file sits in its intended regime (:data:`PLAIN_KINDS`); ``"preset:K"``:
    the first of :data:`PRESETS`, from the ``K``-th on, whose KV cache fits at the
    setting's batch, linearized at the workload's theta
    (:func:`afdlib.costs.preset_coefficients`); ``"preset:MODEL@HARDWARE"``: that preset;
    ``"file:PATH"``: any coefficient file.

Referees (:class:`Referee`)
    The simulator engines that judge the rules; :data:`REFEREE_DROPS` says which of the
    rules' assumptions each one drops.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from afdlib.costs import load_coefficients, preset_coefficients
from afdlib.errors import AfdInputError, DoesNotFit
from afdlib.model import INTERCEPTS, OperatingPoint, StepCoefficients
from afdlib.traces import load_trace
from afdlib.validate import check_choice, check_int
from afdlib.workload import (
    DiscretizedLognormal,
    Geometric,
    IndependentLengths,
    JointLengths,
    LoadStats,
    load_stats,
)

__all__ = ["TRACES", "LAWS", "WORKLOADS", "PLAIN_KINDS", "PRESETS", "REFEREE_KINDS",
           "REFEREE_DROPS", "Referee", "Setting", "Resolved", "build_workload", "finite_rows",
           "residual_steps", "plain_coefficients", "coefficient_path", "study_data_dir",
           "write_plain_coefficients", "resolve", "setting_seed", "BATCHES", "COEFFS",
           "PIPELINE_MODES", "REPLAY_COEFFS", "default_settings", "workload_stats"]

#: The public traces, in the book's order.
TRACES = ("azure2023_code", "azure2023_conv", "mooncake_conversation", "sharegpt_8k")
#: Parametric workloads.
LAWS = ("paper", "heavy", "correlated")
WORKLOADS = TRACES + LAWS
#: Regimes of the plain coefficient files (see :func:`plain_coefficients`).
PLAIN_KINDS = ("paper", "attention", "ffn", "commB", "commrB", "balanced")
#: Presets tried by ``"preset:K"`` (model, hardware), from the ``K``-th on, cyclically.
PRESETS = (("deepseek-v3", "h200"), ("llama-3.1-70b", "h100-sxm"), ("qwen3-235b-a22b", "h20"),
           ("deepseek-v3", "h20/h800"), ("llama-3.1-70b", "b200"), ("qwen3-235b-a22b", "h800"))
#: Rows of the finite trace drawn from a parametric law (for the finite-trace measurement).
LAW_ROWS = 20_000

#: Referee kinds, in the order the book shows them.
REFEREE_KINDS = ("step", "pipeline", "replay")
#: Which of the rules' assumptions each referee drops (the chapter and the docstrings
#: quote these).
REFEREE_DROPS = {
    "step": ("the mean field (each worker's load at its mean)",
             "the normal law of a worker's load"),
    "pipeline": ("the ideal overlap of the stages (tau = max of attention, communication and "
                 "FFN): micro-batches queue at separate resources, each pays a round trip, "
                 "and with per-micro-batch intercepts pays every fixed cost m times",
                 "the mean field and the normal law, as the step engine"),
    "replay": ("independent, identically distributed request lengths: the trace's rows are "
               "handed out in arrival order, so lengths drift and all workers see the same "
               "stretch of the trace at once",
               "the mean field and the normal law, as the step engine"),
}


# -- workloads ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def build_workload(name: str):
    """The requests of a workload by name (cached per process).

    Parameters
    ----------
    name : str
        One of :data:`WORKLOADS`.

    Returns
    -------
    JointLengths or IndependentLengths
        Traces keep their rows in file order (arrival order for the Azure and Mooncake
        traces, which carry timestamps; ShareGPT's statistics have none, so their order is
        the file's).
    """
    check_choice("workload", name, WORKLOADS)
    if name in TRACES:
        return JointLengths.from_trace(load_trace(name))
    if name == "paper":
        return IndependentLengths(Geometric(100, start=0), Geometric(500))
    if name == "heavy":
        return IndependentLengths(DiscretizedLognormal(800, 1.2, min_value=1, max_value=60_000),
                                  DiscretizedLognormal(60, 0.8, min_value=1, max_value=1500))
    rng = np.random.default_rng(2024)  # "correlated": a fixed table of 40,000 rows
    z = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.6], [0.6, 1.0]], size=40_000)
    prompt = np.clip(np.rint(np.exp(np.log(1200.0) + 1.0 * z[:, 0])), 1, 60_000)
    decode = np.clip(np.rint(np.exp(np.log(80.0) + 0.8 * z[:, 1])), 1, 1_500)
    return JointLengths(prompt.astype(np.int64), decode.astype(np.int64), name="correlated")


@functools.lru_cache(maxsize=16)
def finite_rows(name: str) -> JointLengths:
    """A finite list of requests in order, for the finite-trace measurement.

    A trace's own rows; for a parametric law, :data:`LAW_ROWS` independent requests drawn
    with a seed fixed by the name (the ``correlated`` table is used as it is).
    """
    workload = build_workload(name)
    if isinstance(workload, JointLengths):
        return workload
    digest = hashlib.sha256(f"finite rows {name}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    prompt, decode = workload.sample_requests(rng, LAW_ROWS)
    return JointLengths(prompt, decode, name=name)


@functools.lru_cache(maxsize=16)
def workload_stats(name: str) -> LoadStats:
    """Exact stationary load statistics of a workload (cached)."""
    return load_stats(build_workload(name))


def residual_steps(workload) -> float:
    """Mean remaining decode steps of the request in a stationary slot (steps).

    ``(E[D^2] / E[D] + 1) / 2``: the time scale on which a slot's load forgets its past,
    used to size the runs.
    """
    if isinstance(workload, JointLengths):
        d = workload.decode.astype(float)
        m1, m2 = d.mean(), (d * d).mean()
    else:
        m1, m2 = workload.decode.raw_moment(1), workload.decode.raw_moment(2)
    return float((m2 / m1 + 1.0) / 2.0)


# -- coefficients --------------------------------------------------------------------------


def plain_coefficients(kind: str, theta: float, batch: int) -> StepCoefficients:
    """A plain coefficient set in a chosen regime, scaled to a workload and batch.

    At the mean load ``B theta`` attention takes ``t_A = 20 ms`` (10% of it fixed); the
    FFN time ``alpha_F r B + beta_F`` catches it at ``r = 8``; communication is
    ``0.3 t_A`` per step plus ``0.1 t_A`` fixed, constant in r, unless said otherwise.

    * ``attention``: FFN intercept ``0.3 t_A`` (optimum at the attention crossing);
    * ``ffn``: FFN intercept ``0.95 t_A`` (the FFN-bound peak, ``r_peak`` about 12);
    * ``commB``: communication constant in r, ``1.3 t_A`` (communication-bound);
    * ``commrB``: communication growing with r, crossing ``t_A`` at ``r = 6``;
    * ``balanced``: the FFN and growing communication both cross ``t_A`` at ``r = 8``;
    * ``paper``: attention-bound with the crossing at ``r = 9.3`` *for the paper's own
      rule*, i.e. with ``theta`` the caller's ``E[P] + E[D]`` (the paper's coefficients,
      fitted to DeepSeek-V3 on Ascend 910C, are not public; these are chosen so that its
      mean-field ``r*`` is 9.3).

    Parameters
    ----------
    kind : str
        One of :data:`PLAIN_KINDS`.
    theta : float
        Per-slot mean load the recipe is scaled to (tokens).
    batch : int
        Slots per worker B.

    Returns
    -------
    StepCoefficients
    """
    check_choice("kind", kind, PLAIN_KINDS)
    t_a = 0.02
    alpha_a, beta_a = 0.9 * t_a / (batch * theta), 0.1 * t_a
    cross, beta_f = 8.0, 0.3 * t_a
    comm = dict(alpha_C=0.3 * t_a / batch, beta_C=0.1 * t_a, comm_scales_with="B")
    if kind == "ffn":
        beta_f = 0.95 * t_a
    elif kind == "commB":
        comm = dict(alpha_C=1.1 * t_a / batch, beta_C=0.2 * t_a, comm_scales_with="B")
    elif kind == "commrB":
        comm = dict(alpha_C=0.8 * t_a / (6 * batch), beta_C=0.2 * t_a, comm_scales_with="rB")
    elif kind == "balanced":
        comm = dict(alpha_C=0.8 * t_a / (cross * batch), beta_C=0.2 * t_a,
                    comm_scales_with="rB")
    elif kind == "paper":
        cross = 9.3
    alpha_f = (t_a - beta_f) / (cross * batch)
    return StepCoefficients(alpha_A=alpha_a, beta_A=beta_a, alpha_F=alpha_f, beta_F=beta_f,
                            **comm)


def study_data_dir() -> Path:
    """The folder of the study's files, ``data/study`` of the repository.

    Raises
    ------
    AfdInputError
        If it is not there (an installed package without the repository).
    """
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_data" / "study", here.parent / "data" / "study"):
        if candidate.is_dir():
            return candidate
    raise AfdInputError("the study's data folder (data/study of the repository) is not "
                        "there; run from a clone of the repository", parameter="data")


def coefficient_path(kind: str, workload: str, batch: int) -> Path:
    """Path of the plain coefficient file of ``kind`` for ``workload`` at ``batch``."""
    check_choice("kind", kind, PLAIN_KINDS)
    return study_data_dir() / "coefficients" / f"{kind}-{workload}-b{batch}.json"


def _recipe_theta(kind: str, workload: str) -> float:
    stats_ = workload_stats(workload)
    return stats_.naive_theta if kind == "paper" else stats_.theta


def write_plain_coefficients(settings) -> list[Path]:
    """Write the plain coefficient files that ``settings`` name (from the recipe).

    Each file holds the coefficient object plus ``_about`` (the recipe, the workload,
    batch and theta it was scaled to). Returns the paths written.
    """
    out = []
    for s in {(s.coeffs[len("plain:"):], s.workload, s.batch) for s in settings
              if s.coeffs.startswith("plain:")}:
        kind, workload, batch = s
        theta = _recipe_theta(kind, workload)
        coeffs = plain_coefficients(kind, theta, batch)
        data = {"_about": (f"afdlib.study.grid.plain_coefficients({kind!r}, theta, batch) "
                           f"for workload {workload} at B = {batch}, theta = {theta:.6g} "
                           "tokens" + (" (E[P] + E[D], the paper's rule)"
                                       if kind == "paper" else "")),
                **coeffs.to_dict()}
        path = coefficient_path(kind, workload, batch)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        out.append(path)
    return sorted(out)


# -- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Referee:
    """The simulator run that judges the rules.

    Parameters
    ----------
    engine : {"step", "pipeline"}
        :func:`afdlib.sim.simulate_step` or :func:`afdlib.sim.simulate_pipeline`.
    order : {"resample", "replay"}
        Request lengths drawn i.i.d. (from the law, or the trace's rows with replacement),
        or the trace's rows handed out in arrival order (``replay``, traces only).
    microbatches : int
        Micro-batches per worker (pipeline: 2 to 4; step: 1).
    intercepts : {"per_microbatch", "per_step"}
        How micro-batches pay the intercepts (pipeline only).

    Notes
    -----
    What each referee drops of the rules' assumptions (:data:`REFEREE_DROPS`): the
    *step* engine drops the mean field and the normal law of a worker's load (exact slot
    renewals, the exact maximum over workers at every step) and keeps everything else the
    exact-load rule assumes, so it checks that rule's mathematics rather than the model;
    the *pipelined* engine also drops the ideal overlap of the stages (micro-batches
    queue at separate resources and each pays a round trip); the *replay* referee (the
    step engine fed the trace in arrival order) drops independent, identically
    distributed lengths (real traces drift).
    """

    engine: str = "step"
    order: str = "resample"
    microbatches: int = 1
    intercepts: str = "per_microbatch"

    def __post_init__(self) -> None:
        check_choice("engine", self.engine, ("step", "pipeline"))
        check_choice("order", self.order, ("resample", "replay"))
        check_choice("intercepts", self.intercepts, INTERCEPTS)
        if self.engine == "pipeline":
            check_int("microbatches", self.microbatches, minimum=2, maximum=4)
            if self.order == "replay":
                raise AfdInputError("the replay referee runs the step engine",
                                    parameter="order")
        elif self.microbatches != 1 or self.intercepts != "per_microbatch":
            raise AfdInputError("the step engine has one micro-batch", parameter="microbatches")

    @property
    def kind(self) -> str:
        """``"step"``, ``"pipeline"`` or ``"replay"``."""
        return "replay" if self.order == "replay" else self.engine

    @property
    def label(self) -> str:
        """Short label, e.g. ``"pipeline m=2 per_step"``."""
        if self.engine == "pipeline":
            return f"pipeline m={self.microbatches} {self.intercepts}"
        return self.kind


@dataclass(frozen=True)
class Setting:
    """One setting of the study.

    Parameters
    ----------
    workload : str
        One of :data:`WORKLOADS`.
    batch : int
        Slots per Attention worker B.
    coeffs : str
        Where the coefficients come from (see the module docstring).
    referee : Referee
    """

    workload: str
    batch: int
    coeffs: str
    referee: Referee

    def __post_init__(self) -> None:
        check_choice("workload", self.workload, WORKLOADS)
        object.__setattr__(self, "batch", check_int("batch", self.batch, minimum=1))
        if not isinstance(self.coeffs, str) or not self.coeffs.startswith(
                ("plain:", "preset:", "file:")):
            raise AfdInputError(f"coeffs must start with plain:, preset: or file:, got "
                                f"{self.coeffs!r}", parameter="coeffs")
        if not isinstance(self.referee, Referee):
            raise AfdInputError("referee must be an afdlib.study.Referee", parameter="referee")
        if self.referee.order == "replay" and self.workload not in TRACES:
            raise AfdInputError(f"replay needs a trace, not {self.workload!r}",
                                parameter="referee")
        if self.referee.microbatches > self.batch:
            raise AfdInputError("microbatches must be <= batch", parameter="microbatches")

    @property
    def key(self) -> str:
        """The setting's identity as text: its seed and its row in the cache derive from it."""
        return f"{self.workload}|B={self.batch}|{self.coeffs}|{self.referee.label}"

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        r = self.referee
        return {"workload": self.workload, "batch": self.batch, "coeffs": self.coeffs,
                "engine": r.engine, "order": r.order, "microbatches": r.microbatches,
                "intercepts": r.intercepts}

    @classmethod
    def from_dict(cls, data: dict) -> Setting:
        """Inverse of :meth:`to_dict`."""
        return cls(data["workload"], data["batch"], data["coeffs"],
                   Referee(data["engine"], data["order"], data["microbatches"],
                           data["intercepts"]))


def setting_seed(study_seed: int, setting: Setting) -> np.random.SeedSequence:
    """The setting's root seed: the study seed and a hash of :attr:`Setting.key`.

    Independent of the order in which settings run, of the executor and of the other
    settings, so a setting gives the same numbers alone, serially or on a cluster.
    """
    study_seed = check_int("seed", study_seed, minimum=0)
    words = np.frombuffer(hashlib.sha256(setting.key.encode()).digest()[:16], dtype="<u4")
    return np.random.SeedSequence([study_seed, *(int(w) for w in words)])


@dataclass(frozen=True, eq=False)
class Resolved:
    """A setting in numbers.

    Attributes
    ----------
    setting : Setting
    workload : JointLengths or IndependentLengths
        The requests the referee draws.
    stats : LoadStats
        Exact stationary load statistics (theta, sigma, E[P], E[D]).
    coeffs : StepCoefficients
    coeffs_label : str
        Where they came from (a file name, or ``model@hardware``).
    point : OperatingPoint
        Coefficients, theta, sigma and batch: what the rules see (per instance).
    """

    setting: Setting
    workload: object
    stats: LoadStats
    coeffs: StepCoefficients
    coeffs_label: str
    point: OperatingPoint


def _coefficients(setting: Setting, theta: float) -> tuple[StepCoefficients, str]:
    spec = setting.coeffs
    if spec.startswith("plain:"):
        path = coefficient_path(spec[len("plain:"):], setting.workload, setting.batch)
        return load_coefficients(path), path.name
    if spec.startswith("file:"):
        path = Path(spec[len("file:"):])
        return load_coefficients(path), path.name
    name = spec[len("preset:"):]
    if "@" in name:
        model, hardware = name.split("@", 1)
        return (preset_coefficients(model, hardware, batch=setting.batch, theta=theta),
                f"{model}@{hardware}")
    first = check_int("preset index", int(name) if name.isdigit() else name, minimum=0)
    for j in range(len(PRESETS)):
        model, hardware = PRESETS[(first + j) % len(PRESETS)]
        try:
            return (preset_coefficients(model, hardware, batch=setting.batch, theta=theta),
                    f"{model}@{hardware}")
        except DoesNotFit:
            continue
    raise DoesNotFit(f"no preset fits batch {setting.batch} at theta {theta:.0f}")


def resolve(setting: Setting) -> Resolved:
    """The numbers behind a setting (workload, statistics, coefficients, operating point)."""
    workload = build_workload(setting.workload)
    stats_ = workload_stats(setting.workload)
    coeffs, label = _coefficients(setting, stats_.theta)
    point = OperatingPoint(coeffs=coeffs, theta=stats_.theta, load_std=stats_.load_std,
                           batch=setting.batch)
    return Resolved(setting, workload, stats_, coeffs, label, point)


# -- the book's grid -----------------------------------------------------------------------

#: Batches per workload (8 to 256 slots).
BATCHES = {"azure2023_code": (8, 64, 256), "azure2023_conv": (16, 128),
           "mooncake_conversation": (16, 64), "sharegpt_8k": (16, 128), "paper": (256, 32),
           "heavy": (8, 64), "correlated": (16, 128)}
#: Coefficient sources of every (workload, batch): five plain files and two presets.
COEFFS = ("plain:attention", "plain:ffn", "plain:commB", "plain:commrB", "plain:balanced",
          "preset:0", "preset:3")
#: Micro-batches and intercept modes of the pipelined referees, taken in turn.
PIPELINE_MODES = ((2, "per_microbatch"), (3, "per_step"), (4, "per_microbatch"),
                  (2, "per_step"), (3, "per_microbatch"), (4, "per_step"))
#: Coefficient sources also refereed by trace replay.
REPLAY_COEFFS = ("plain:attention", "plain:commB", "plain:balanced", "preset:0")


def default_settings() -> list[Setting]:
    """The book's study: every workload x batch x coefficient source, refereed by the step
    engine and by the pipelined engine (cycling through :data:`PIPELINE_MODES`), and the
    traces also by replay in arrival order (:data:`REPLAY_COEFFS`).

    The paper's setting (``paper`` at B = 256) takes the ``plain:paper`` file (mean-field
    ``r*`` 9.3 for the paper's rule) in place of ``plain:attention``.
    """
    out = []
    i = 0
    for workload, batches in BATCHES.items():
        for batch in batches:
            for coeffs in COEFFS:
                if workload == "paper" and batch == 256 and coeffs == "plain:attention":
                    coeffs = "plain:paper"
                m, mode = PIPELINE_MODES[i % len(PIPELINE_MODES)]
                i += 1
                out.append(Setting(workload, batch, coeffs, Referee()))
                out.append(Setting(workload, batch, coeffs, Referee("pipeline", "resample",
                                                                    m, mode)))
                if workload in TRACES and coeffs in REPLAY_COEFFS:
                    out.append(Setting(workload, batch, coeffs, Referee("step", "replay")))
    return out
