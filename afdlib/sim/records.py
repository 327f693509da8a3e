"""Per-step records written to a file chunk by chunk, in memory that does not grow with
the run.

:func:`open_records` returns a writer that an engine calls with each chunk's
:class:`afdlib.sim.StepRecords` (``record_to=``). Two formats, by the file's extension:

* ``.npz``: numpy's zip of ``.npy`` arrays, ``step_time`` (steps,), ``loads`` (steps, r)
  and ``attention_time`` (steps, r), as :class:`afdlib.sim.StepRecords` holds them
  (``numpy.load(path)["loads"]``). Each array is streamed into a ``.npy`` file next to
  the target (its shape is known in advance) and the zip is assembled at the end;
* ``.csv``: a header row ``step,step_time_s,load_0,...,attention_time_s_0,...`` and one
  row per step (tokens and seconds).

Warm-up steps are included (the run's ``warmup`` says how many).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from afdlib.errors import AfdInputError
from afdlib.validate import check_int

__all__ = ["RECORD_FORMATS", "RecordWriter", "open_records"]

#: File extensions the writers know.
RECORD_FORMATS = (".npz", ".csv")


class RecordWriter:
    """Writes per-step records to ``path`` chunk by chunk (see :func:`open_records`).

    Call it as ``writer(first_step, records)`` for consecutive chunks, then
    :meth:`close` (or use it as a context manager). Until it is closed the file may be
    incomplete.
    """

    def __init__(self, path, *, steps: int, ratio: int) -> None:
        self.path = Path(path)
        self.steps = check_int("steps", steps, minimum=1)
        self.ratio = check_int("ratio", ratio, minimum=1)
        suffix = self.path.suffix.lower()
        if suffix not in RECORD_FORMATS:
            raise AfdInputError(f"{self.path}: records are written as .npz or .csv, not "
                                f"{suffix or 'a file without extension'!r}",
                                parameter="records")
        self.format = suffix
        self.written = 0
        self._closed = False
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise AfdInputError(f"{self.path}: folder {parent} does not exist",
                                parameter="records")
        try:
            if self.format == ".csv":
                self._csv = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115
                names = (["step", "step_time_s"]
                         + [f"load_{w}" for w in range(ratio)]
                         + [f"attention_time_s_{w}" for w in range(ratio)])
                self._csv.write(",".join(names) + "\n")
            else:
                self._tmp = Path(tempfile.mkdtemp(prefix=".records-", dir=parent))
                self._npy = {}
                for name, shape in (("step_time", (steps,)), ("loads", (steps, ratio)),
                                    ("attention_time", (steps, ratio))):
                    f = open(self._tmp / f"{name}.npy", "wb")  # noqa: SIM115
                    np.lib.format.write_array_header_2_0(
                        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float64)),
                            "fortran_order": False, "shape": shape})
                    self._npy[name] = f
        except OSError as exc:
            raise AfdInputError(f"{self.path}: cannot write records ({exc.strerror or exc})",
                                parameter="records") from None

    def __call__(self, first: int, records) -> None:
        """Append the records of steps ``first .. first + len - 1`` (in order)."""
        if self._closed:
            raise AfdInputError("records writer is closed")
        n = records.step_time.size
        if first != self.written or self.written + n > self.steps:
            raise AfdInputError(f"records of steps {first}..{first + n - 1} out of order "
                                f"(expected step {self.written} of {self.steps})")
        loads = np.ascontiguousarray(records.loads, dtype=np.float64)
        att = np.ascontiguousarray(records.attention_time, dtype=np.float64)
        if self.format == ".csv":
            table = np.column_stack([np.arange(first, first + n), records.step_time,
                                     loads, att])
            fmt = ["%d", "%.10g"] + ["%d"] * self.ratio + ["%.10g"] * self.ratio
            np.savetxt(self._csv, table, fmt=fmt, delimiter=",")
        else:
            self._npy["step_time"].write(np.ascontiguousarray(records.step_time,
                                                              dtype=np.float64).tobytes())
            self._npy["loads"].write(loads.tobytes())
            self._npy["attention_time"].write(att.tobytes())
        self.written += n

    def close(self) -> None:
        """Finish the file (for ``.npz``: assemble the zip, if every step was written,
        and remove the parts)."""
        if self._closed:
            return
        self._closed = True
        if self.format == ".csv":
            self._csv.close()
            return
        for f in self._npy.values():
            f.close()
        try:
            if self.written == self.steps:
                with zipfile.ZipFile(self.path, "w", zipfile.ZIP_STORED,
                                     allowZip64=True) as zf:
                    for name in self._npy:
                        zf.write(self._tmp / f"{name}.npy", arcname=f"{name}.npy")
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_records(path, *, steps: int, ratio: int) -> RecordWriter:
    """A writer of per-step records to ``path`` (``.npz`` or ``.csv``).

    Parameters
    ----------
    path : str or Path
        The file (its extension picks the format).
    steps : int
        Steps of the run, warm-up included.
    ratio : int
        Attention workers r (columns of the loads and attention times).

    Returns
    -------
    RecordWriter

    Raises
    ------
    AfdInputError
        For another extension, a missing folder or a file that cannot be written
        (parameter ``records``).
    """
    return RecordWriter(path, steps=steps, ratio=ratio)
