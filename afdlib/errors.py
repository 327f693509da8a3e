"""Exception types shared by every layer of :mod:`afdlib`.

Every error caused by what a user supplied (a trace file, a coefficient file, a
parameter) is an :class:`AfdInputError`. It subclasses :class:`ValueError`, so
ordinary ``except ValueError`` code keeps working, and the command line turns it
into exit status 2 with a one-line message.
"""

from __future__ import annotations

__all__ = ["AfdInputError", "TraceFormatError", "MissingMeasurement", "DoesNotFit"]


class AfdInputError(ValueError):
    """Bad input: the message names what is wrong (file, row, field or parameter).

    Parameters
    ----------
    message : str
        What is wrong, in words.
    parameter : str, optional
        The name of the parameter at fault (e.g. ``"warmup"``), so that a caller can say
        which of its own options it was (the command line prefixes its ``--option``).
    """

    def __init__(self, message: str = "", *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class DoesNotFit(AfdInputError):
    """A deployment that memory cannot hold: the KV cache of the asked batch, or the FFN
    weights, fit no instance of the allowed sizes.

    A typed reason to skip a configuration (the validation study skips such cases).
    """


class MissingMeasurement(AfdInputError):
    """No measured kernel table, or no measured row, for a requested configuration.

    A typed reason to skip a configuration: code that tries every configuration (the
    committed fits) catches this class and only this.
    """


class TraceFormatError(AfdInputError):
    """A request trace that cannot be read: empty, malformed, or with bad values.

    Parameters
    ----------
    message : str
        What is wrong, in words.
    path : str, optional
        The file being read.
    line : int, optional
        1-based line number in the file (the header of a CSV is line 1).
    field : str, optional
        The column or JSON key that holds the bad value.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.path = path
        self.line = line
        self.field = field
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
