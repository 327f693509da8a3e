"""The command line's syntax for length laws, ``NAME:ARGS`` (``--prompt``, ``--decode``).

The laws themselves are :mod:`afdlib.workload`'s; this module only reads their text form.
"""

from __future__ import annotations

from afdlib.errors import AfdInputError
from afdlib.workload import (
    Deterministic,
    DiscretizedLognormal,
    Geometric,
    LengthLaw,
    Mixture,
    Uniform,
)

__all__ = ["parse_length_law", "LAW_NAMES"]


_LAW_ARGS = {
    "geometric": (Geometric, ("mean", "start"), {"mean": "mean_value"}),
    "deterministic": (Deterministic, ("value",), {}),
    "lognormal": (DiscretizedLognormal, ("median", "sigma", "min", "max"),
                  {"min": "min_value", "max": "max_value"}),
    "uniform": (Uniform, ("low", "high"), {}),
}
#: The law names the syntax knows (besides ``mix``).
LAW_NAMES = tuple(sorted(_LAW_ARGS))


def parse_length_law(text: str) -> LengthLaw:
    """Parse the command line's length-law syntax ``NAME:ARGS``.

    ``ARGS`` are comma-separated values, positional in the order below or ``key=value``:

    * ``geometric:MEAN[,START]`` (``start`` defaults to 1), e.g. ``geometric:500``
    * ``deterministic:VALUE``, e.g. ``deterministic:100``
    * ``lognormal:MEDIAN,SIGMA[,MIN,MAX]``, e.g. ``lognormal:median=300,sigma=1``
    * ``uniform:LOW,HIGH``
    * ``mix:W1*LAW1+W2*LAW2``, e.g. ``mix:0.7*geometric:100+0.3*deterministic:2000``

    Raises
    ------
    AfdInputError
        Naming the part that cannot be understood.
    """
    if not isinstance(text, str) or not text.strip():
        raise AfdInputError("empty length law")
    text = text.strip()
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    if name in ("mix", "mixture"):
        comps, weights = [], []
        for part in rest.split("+"):
            w_text, star, law_text = part.partition("*")
            if not star:
                raise AfdInputError(f"mixture part {part!r} must look like WEIGHT*LAW")
            try:
                weights.append(float(w_text))
            except ValueError:
                raise AfdInputError(f"mixture weight {w_text!r} is not a number") from None
            comps.append(parse_length_law(law_text))
        return Mixture(tuple(comps), tuple(weights))
    if name not in _LAW_ARGS:
        raise AfdInputError(f"unknown length law {name!r} in {text!r} "
                            f"(known: {', '.join(sorted(_LAW_ARGS))}, mix)")
    cls, order, renames = _LAW_ARGS[name]
    kwargs: dict[str, float] = {}
    if rest.strip():
        for i, item in enumerate(rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq:
                key, value = (order[i] if i < len(order) else None), item
                if key is None:
                    raise AfdInputError(f"too many arguments for {name} in {text!r}")
            key = key.strip().lower()
            if key not in order:
                raise AfdInputError(f"{name} has no argument {key!r} (arguments: "
                                    f"{', '.join(order)})")
            try:
                number = float(value)
            except ValueError:
                raise AfdInputError(f"{name} argument {key}={value.strip()!r} is not a "
                                    f"number") from None
            kwargs[renames.get(key, key)] = number
    try:
        return cls(**{k: (int(v) if v.is_integer() and k != "mean_value" and k != "median"
                          and k != "sigma" else v) for k, v in kwargs.items()})
    except TypeError:
        raise AfdInputError(f"{name} needs arguments {', '.join(order)}; got {text!r}") from None
