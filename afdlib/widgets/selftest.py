"""Self-test questions for the end of each part of the book, and a checker for answers.

Every numerical answer is computed here with :mod:`afdlib` (never typed by hand), so the
book's self-test pages (rendered by the book's extension from :data:`QUESTIONS`) and the
live notebook agree with the library. In a notebook::

    from afdlib.widgets.selftest import check
    check("foundations-1", 1499)      # -> Correct (or a hint)

Answers are numbers (checked to a relative tolerance) or the letter of a choice.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from afdlib.errors import AfdInputError

__all__ = ["Question", "QUESTIONS", "PARTS", "check", "questions", "Verdict"]


@dataclass(frozen=True)
class Question:
    """One self-test question.

    Attributes
    ----------
    key : str
        ``"<part>-<n>"``, what :func:`check` is called with.
    part : str
        The toc part the question closes (``"foundations"``, ``"costs"``, ...).
    text : str
        The question, MyST markdown (``$...$`` math allowed).
    answer : callable
        Returns the expected answer: a float (with ``unit``) or a choice letter.
    explanation : str
        Why, in a sentence or two; ``{answer}`` is replaced by the formatted answer
        (plain text replacement: TeX braces need no escaping).
    choices : tuple of str
        For multiple choice: the options, lettered a, b, c, ...
    unit : str
        Unit of a numerical answer.
    rel_tol : float
        Relative tolerance of a numerical answer.
    fmt : str
        Format spec of a numerical answer in the explanation.
    """

    key: str
    part: str
    text: str
    answer: Callable[[], float | str]
    explanation: str
    choices: tuple[str, ...] = ()
    unit: str = ""
    rel_tol: float = 0.01
    fmt: str = ".4g"
    chapters: tuple[str, ...] = field(default=())

    def expected(self) -> float | str:
        """The expected answer (computed with afdlib)."""
        return self.answer()

    def explain(self) -> str:
        """The explanation with the computed answer filled in."""
        return self.explanation.replace("{answer}", self.answer_text())

    def answer_text(self) -> str:
        """The expected answer as the book prints it."""
        value = self.expected()
        if self.choices:
            return f"({value}) {self.choices[ord(value) - ord('a')]}"
        return f"{format(value, self.fmt)} {self.unit}".strip()


@dataclass(frozen=True)
class Verdict:
    """The result of :func:`check`; displays as one line in Jupyter."""

    key: str
    correct: bool
    message: str

    def __bool__(self) -> bool:
        return self.correct

    def __repr__(self) -> str:
        return self.message

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.correct else "#b35900"
        return f'<p style="color:{color};font-weight:600">{html.escape(self.message)}</p>'


# -- the answers, computed ------------------------------------------------------------------

def _theta_geometric() -> float:
    from afdlib.workload import Geometric, IndependentLengths, load_stats
    return load_stats(IndependentLengths(Geometric(1000, start=0), Geometric(500))).theta


def _theta_deterministic() -> float:
    from afdlib.workload import Deterministic, IndependentLengths, load_stats
    return load_stats(IndependentLengths(Deterministic(100), Deterministic(200))).theta


#: The self-tests' coefficients: the mean-field chapter's illustrative ones [s, s/token].
COEFFICIENTS = {"alpha_A": 2.5e-8, "beta_A": 1.0e-3, "alpha_F": 2.0e-6, "beta_F": 1.6e-2,
                "alpha_C": 2.0e-7, "beta_C": 1.0e-3}


def _point(theta: float, batch: int, load_std: float = 0.0):
    """The self-tests' operating point: :data:`COEFFICIENTS` at ``theta`` and ``batch``
    (tokens, slots), with a per-slot load spread ``load_std`` (tokens)."""
    from afdlib.model import OperatingPoint, StepCoefficients
    coeffs = StepCoefficients(**COEFFICIENTS, comm_scales_with="B")
    return OperatingPoint(coeffs=coeffs, theta=theta, batch=batch, load_std=load_std)


def _c(name: str, scale: float) -> str:
    """A coefficient of :data:`COEFFICIENTS` in a unit (``scale`` per second), for the text."""
    return format(COEFFICIENTS[name] * scale, "g")


def _attention_time_ms() -> float:
    from afdlib.provision import step_components
    parts = step_components(_point(2000, 128), 4)
    return float(parts["attention"]) * 1e3


def _r_peak() -> float:
    from afdlib.provision import mean_field_ratio
    return float(mean_field_ratio(_point(1000, 128)).r_star)


def _regime() -> str:
    from afdlib.provision import mean_field_ratio
    regime = mean_field_ratio(_point(1000, 128)).regime
    return {"attention": "a", "communication": "b", "ffn": "c"}[regime]


def _best_integer() -> float:
    from afdlib.provision import best_integer_mean_field
    return float(best_integer_mean_field(_point(1000, 128)))


def _expected_max_8() -> float:
    from afdlib.provision import expected_max_normal
    return float(expected_max_normal(8))


#: The latency question's bundle: B slots of mean load theta and spread sigma [tokens], and
#: a p99 target LATENCY_Z standard deviations of one worker's attention time above its mean.
LATENCY_POINT = {"theta": 20000.0, "batch": 64, "load_std": 15000.0}
LATENCY_Z = 3.0


def _latency_ratio() -> float:
    from afdlib.provision import attention_bound_slo_ratio
    point = _point(**LATENCY_POINT)
    target = point.mean_attention_time + LATENCY_Z * point.attention_std
    return float(attention_bound_slo_ratio(point, target, q=0.99))


def _throughput() -> float:
    from afdlib.model import PER_INSTANCE
    return float(PER_INSTANCE.throughput(4, 64, 0.05))  # r = 4, B = 64, E[tau] = 50 ms


QUESTIONS: tuple[Question, ...] = (
    Question(
        "foundations-1", "foundations",
        "Prompts have a geometric length with mean 1000 tokens (support from 0) and decode "
        "lengths a geometric law with mean 500 steps (support from 1), independent. What is "
        "the mean load $\\theta$ of a slot, in tokens?",
        _theta_geometric,
        "With a geometric decode law, $\\theta = E[P] + E[D] - 1$ = {answer} "
        "(memorylessness: the request in service has, on average, as far to go as a fresh one).",
        unit="tokens", chapters=("slots_renewal",)),
    Question(
        "foundations-2", "foundations",
        "Every request has $P = 100$ and $D = 200$ exactly. What is $\\theta$?",
        _theta_deterministic,
        "A deterministic decode law gives $\\theta = E[P] + (D - 1)/2$ = {answer}: the slot "
        "reads 100 to 299 tokens, on average the middle.", unit="tokens",
        chapters=("slots_renewal",)),
    Question(
        "foundations-3", "foundations",
        "Why is $\\theta$ on a real trace usually larger than $E[P] + E[D]$?",
        lambda: "b",
        "A slot spends time in proportion to a request's decode length, so long requests are "
        "over-represented at a random step (the inspection paradox); $\\theta$ is a "
        "length-biased mean.",
        choices=("because the traces record output tokens, not decode steps",
                 "because long requests occupy a slot for more steps (length bias)",
                 "because prefill adds tokens to every step"),
        chapters=("slots_renewal", "theta_traces")),
    Question(
        "costs-1", "costs",
        "With the mean-field chapter's illustrative coefficients ($\\alpha_A$ = "
        f"{_c('alpha_A', 1e9)} ns/token, $\\beta_A$ = {_c('beta_A', 1e3)} ms), what is the "
        "attention time of one step for $B = 128$ slots of mean load $\\theta = 2000$ "
        "tokens, in milliseconds?",
        _attention_time_ms,
        "$t_A = \\alpha_A B\\theta + \\beta_A$ = {answer}.", unit="ms",
        chapters=("step_costs",)),
    Question(
        "costs-2", "costs",
        "Which cost grows with the number $r$ of Attention workers in a bundle?",
        lambda: "b",
        "The FFN runs on the aggregated batch of $rB$ tokens: $t_F = \\alpha_F rB + "
        "\\beta_F$. Attention on a worker reads only its own $B$ slots.",
        choices=("the attention time of one worker", "the FFN time",
                 "the KV cache of one worker"),
        chapters=("step_costs", "afd_one_step")),
    Question(
        "provisioning-1", "provisioning",
        "With the mean-field chapter's illustrative coefficients ($\\alpha_C$ = "
        f"{_c('alpha_C', 1e6)} µs/token, $\\beta_C$ = {_c('beta_C', 1e3)} ms, $\\alpha_F$ = "
        f"{_c('alpha_F', 1e6)} µs/token, $\\beta_F$ = {_c('beta_F', 1e3)} ms), "
        "$\\theta = 1000$ tokens and $B = 128$: what is the mean-field optimal ratio $r^*$ "
        "(a real number)?",
        _r_peak,
        "$r^* = \\max\\{r_A, r_C, r_{\\text{peak}}\\}$ = {answer}.", fmt=".3f",
        chapters=("mean_field_ratio",)),
    Question(
        "provisioning-2", "provisioning",
        "In the same case, which term attains the maximum, that is, which regime is it?",
        _regime,
        "Both crossings are negative here (attention and communication are fast next to the "
        "FFN's intercept), so the optimum is the FFN-bound stationary point "
        "$r_{\\text{peak}} = \\sqrt{\\beta_F/(\\alpha_F B)}$.",
        choices=("attention-bound", "communication-bound", "FFN-bound"),
        chapters=("mean_field_ratio",)),
    Question(
        "provisioning-3", "provisioning",
        "And the best integer ratio (compare the two neighbours of $r^*$, do not round)?",
        _best_integer,
        "Throughput is unimodal in $r$, so the best integer is one of the neighbours of "
        "$r^*$: {answer}.", fmt=".0f", rel_tol=0.0, chapters=("mean_field_ratio",)),
    Question(
        "provisioning-4", "provisioning",
        "The barrier model: what is the expected maximum of 8 independent standard normals?",
        _expected_max_8,
        "$m_8$ = {answer}; it grows like $\\sqrt{2\\ln r}$, slowly.", fmt=".4f",
        rel_tol=0.002, chapters=("barrier",)),
    Question(
        "provisioning-5", "provisioning",
        "Below the mean-field crossing, adding an Attention worker leaves the mean-field step "
        "time unchanged. What does it do to the p99 step time (the p99 time per output "
        "token) when the workers' loads are random?",
        lambda: "b",
        "The step waits for the slowest of $r$ workers, whose $q$-quantile is the "
        "$q^{1/r}$-quantile of one worker's load, and $q^{1/r}$ grows with $r$: every added "
        "worker costs latency, even where the mean step does not move.",
        choices=("nothing, as long as attention sets the step",
                 "it raises it, with every added worker",
                 "it lowers it, because the FFN's fixed cost is shared by more tokens"),
        chapters=("latency",)),
    Question(
        "provisioning-6", "provisioning",
        "In the Gaussian model a worker's attention time is normal with mean $\\mu_A$ and "
        "standard deviation $\\sigma_A$, attention sets the step, and the p99 target is "
        f"{LATENCY_Z:g} $\\sigma_A$ above $\\mu_A$. What is the largest (real) ratio $r_T$ "
        "whose p99 step time meets the target?",
        _latency_ratio,
        "$r_T = \\ln q / \\ln\\Phi(z)$ with $q = 0.99$ and "
        f"$z = {LATENCY_Z:g}$: {{answer}}, so at most the integer below it.", fmt=".2f",
        rel_tol=0.01, chapters=("latency",)),
    Question(
        "simulation-1", "simulation",
        "A bundle with $r = 4$ and $B = 64$ has a mean step time of 50 ms. What is its "
        "throughput per instance, in tokens per second?",
        _throughput,
        "$\\Lambda = rB/((r + 1)E[\\tau])$ = {answer}.", unit="tokens/s",
        chapters=("simulation",)),
    Question(
        "simulation-2", "simulation",
        "Why does the simulator start every slot from its stationary state rather than with "
        "fresh requests?",
        lambda: "a",
        "A cold start puts every request at its first step; the loads then synchronize and "
        "only slowly forget it (for a deterministic decode law, never). A stationary start "
        "draws each slot's state from the renewal process's long-run law.",
        choices=("so that the run measures the long-run regime without a warm-up bias",
                 "because it is faster to compute",
                 "because real servers start that way"),
        chapters=("simulation",)),
    Question(
        "simulation-3", "simulation",
        "Refereed by the step engine, which rule does the validation chapter find closest "
        "to the simulated optimum?",
        lambda: "c",
        "The barrier with the exact law of a worker's load: it replaces the normal "
        "approximation, which is poor for small batches and heavy-tailed traces, and solves "
        "the step engine's own model exactly (a pipelined bundle needs a rule that models "
        "the pipeline).",
        choices=("the mean-field closed form", "the Gaussian barrier",
                 "the exact-load barrier"),
        chapters=("validation",)),
)

#: The toc parts that end with a self-test, in order, with a title.
PARTS = {"foundations": "Foundations", "costs": "Costs", "provisioning": "Provisioning",
         "simulation": "Simulation"}


def questions(part: str) -> list[Question]:
    """The questions of one part, in order."""
    if part not in PARTS:
        raise AfdInputError(f"part: {part!r} is not one of {sorted(PARTS)}")
    return [q for q in QUESTIONS if q.part == part]


def _lookup(key: str) -> Question:
    for q in QUESTIONS:
        if q.key == key:
            return q
    raise AfdInputError(f"key: no self-test question {key!r} (keys look like 'costs-1')")


def check(key: str, answer) -> Verdict:
    """Check an answer to a self-test question.

    Parameters
    ----------
    key : str
        The question, e.g. ``"provisioning-1"``.
    answer : float or str
        A number (in the question's unit) or a choice letter (``"a"``, ``"b"``, ...).

    Returns
    -------
    Verdict
        Truthy when correct; shows "Correct" or a hint.
    """
    q = _lookup(key)
    expected = q.expected()
    if q.choices:
        given = str(answer).strip().lower().strip("()")
        letters = [chr(ord("a") + k) for k in range(len(q.choices))]
        if given not in letters:
            return Verdict(key, False, f"{key}: answer with one of {', '.join(letters)}.")
        ok = given == expected
        return Verdict(key, ok, f"{key}: correct." if ok else f"{key}: not quite; try again.")
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return Verdict(key, False, f"{key}: give a number (in {q.unit or 'the unit asked'}).")
    tol = max(q.rel_tol * abs(float(expected)), 1e-12)
    if math.isclose(value, float(expected), rel_tol=0.0, abs_tol=tol):
        return Verdict(key, True, f"{key}: correct.")
    side = "high" if value > float(expected) else "low"
    return Verdict(key, False, f"{key}: not quite (too {side}); try again.")
