"""``lpcv.cost.validate``: predicted against measured time, layer by layer."""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from .._report import Table
from ..exceptions import ValidationError
from ..graph import Model
from .device import Device
from .report import profile

__all__ = ["validate", "ValidationReport", "kendall_tau"]


def kendall_tau(a, b) -> float:
    """Kendall's τ-b rank correlation of two sequences (ties handled)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValidationError("kendall_tau: a and b must be 1-D of the same length")
    if a.size < 2:
        return float("nan")
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(a.size, 1)
    s = float((da[iu] * db[iu]).sum())
    n0 = iu[0].size
    ta, tb = float((da[iu] == 0).sum()), float((db[iu] == 0).sum())
    denom = np.sqrt((n0 - ta) * (n0 - tb))
    return s / denom if denom else float("nan")


class ValidationReport(Table):
    """Per-layer predicted and measured times, with summary statistics.

    Attributes
    ----------
    layer_share_within : float
        Share of layers whose prediction is within ``tolerance`` of the
        measurement.
    model_error : float
        Whole model: predicted / measured − 1.
    kendall_tau : float
        Rank correlation of predicted and measured layer times.
    """

    def __init__(self, rows, title, tolerance, predicted_total, measured_total, batch_size=None):
        super().__init__(rows, title=title)
        self.tolerance = tolerance
        self.batch_size = batch_size
        errors = np.array([r["error"] for r in rows])
        self.layer_share_within = float(np.mean(np.abs(errors) <= tolerance)) if rows else float("nan")
        self.predicted_total = predicted_total
        self.measured_total = measured_total
        self.model_error = predicted_total / measured_total - 1
        self.kendall_tau = kendall_tau([r["predicted_ms"] for r in rows],
                                       [r["measured_ms"] for r in rows])

    @classmethod
    def combine(cls, reports: Sequence["ValidationReport"],
                statistic: str = "median") -> "ValidationReport":
        """One report from several validations of the same model, device and
        batch size, made minutes apart.

        Within one validation each layer and the whole model are timed by
        their median repeat. A shared machine's speed also moves for tens of
        seconds at a time (a VM's neighbours, frequency steps), both ways;
        the median over validations spread over minutes is the machine's
        typical speed and repeats far better than any single validation or
        the fastest of them.

        Parameters
        ----------
        reports : sequence of ValidationReport
            From :func:`validate` on the same model, device and batch size.
        statistic : {"median", "fastest"}
            How each layer's and the whole model's measured times combine.

        Returns
        -------
        ValidationReport

        Examples
        --------
        >>> import lpcv
        >>> m = lpcv.zoo.reference("fmnist-lenet300")
        >>> runs = [lpcv.cost.validate(m, "x86-avx512-core", repeats=3) for _ in range(3)]
        >>> best = lpcv.cost.ValidationReport.combine(runs, "fastest")
        >>> best.measured_total == min(r.measured_total for r in runs)
        True
        """
        reduce = {"median": np.median, "fastest": np.min}.get(statistic)
        if reduce is None:
            raise ValidationError(f"statistic must be 'median' or 'fastest', got {statistic!r}")
        reports = list(reports)
        if not reports or not all(isinstance(r, ValidationReport) for r in reports):
            raise ValidationError("reports must be a non-empty sequence of ValidationReport")
        first = reports[0]
        layers = [r["layer"] for r in first.rows]
        predicted = [r["predicted_ms"] for r in first.rows]
        for other in reports[1:]:
            # The title names the model, the device and the batch size.
            if (other.title != first.title or [r["layer"] for r in other.rows] != layers
                    or [r["predicted_ms"] for r in other.rows] != predicted
                    or other.predicted_total != first.predicted_total
                    or other.tolerance != first.tolerance):
                raise ValidationError("reports must validate the same model, device, batch size "
                                      "and tolerance (their layers or predictions differ)")
        rows = []
        for i, row in enumerate(first.rows):
            m = float(reduce([rep.rows[i]["measured_ms"] for rep in reports]))
            rows.append({**row, "measured_ms": m, "error": _relative_error(row["predicted_ms"], m)})
        return cls(rows, first.title, first.tolerance, first.predicted_total,
                   float(reduce([rep.measured_total for rep in reports])), first.batch_size)

    def repriced(self, model: Model, device: Union[Device, str]) -> "ValidationReport":
        """The same measurements against ``device``'s predictions.

        Measuring takes minutes and predicting milliseconds, so several
        devices (presets, fits made at other times) can be judged on one
        measurement, or a measurement made before the device was fitted.

        Parameters
        ----------
        model : Model
            The model this report validated.
        device : Device or str

        Returns
        -------
        ValidationReport

        Examples
        --------
        >>> import lpcv
        >>> m = lpcv.zoo.reference("fmnist-lenet300")
        >>> val = lpcv.cost.validate(m, "x86-avx512-core", repeats=3)
        >>> other = val.repriced(m, "rpi4")
        >>> other.measured_total == val.measured_total, other.predicted_total > val.predicted_total
        (True, True)
        """
        if self.batch_size is None:
            raise ValidationError("repriced needs a report made by validate or combine")
        measured = {r["layer"]: r["measured_ms"] for r in self.rows}
        report = _compare(model, profile(model, device, self.batch_size), measured,
                          self.measured_total, self.tolerance)
        if len(report.rows) != len(self.rows):
            raise ValidationError(f"model: its layers do not match the report's "
                                  f"({len(report.rows)} of {len(self.rows)} found)")
        return report

    def summary(self) -> str:
        return (f"{self.layer_share_within:.0%} of {len(self.rows)} layers within "
                f"±{self.tolerance:.0%}; whole model predicted {self.predicted_total * 1e3:.3f} ms vs "
                f"measured {self.measured_total * 1e3:.3f} ms ({self.model_error:+.1%}); "
                f"Kendall τ {self.kendall_tau:.3f}")

    def _repr_html_(self) -> str:
        return f"<p>{self.summary()}</p>" + super()._repr_html_()


def validate(model: Model, device: Union[Device, str] = "host", batch_size: int = 1,
             repeats: int = 20, threads=None, tolerance: float = 0.2) -> ValidationReport:
    """Compare the cost model's per-layer latency with oneDNN measurements.

    The model runs in :class:`lpcv.Session` on this machine, so ``device``
    should describe this machine (``"host"``, the default).

    Parameters
    ----------
    model : Model
    device : Device or str
    batch_size : int
    repeats : int
        Measurement rounds are ``2 * repeats``; each times every layer once
        (the plan executed step by step) and then the whole model once, so
        both sides see the same spells of the machine's speed. A shared
        machine's speed moves by 10-25 % for seconds at a time: timed one
        after the other, the layers and the whole model disagreed by up to
        30 %; interleaved, the summed layer medians come within 1-5 % of the
        median run. Measured times are medians over the rounds: a run takes
        each layer's typical time, not its fastest (summed per-layer minima
        fall 8-13 % short of even the fastest whole run). Speed changes that
        last longer than one call average out over calls made minutes
        apart, combined with :meth:`ValidationReport.combine`.

        Each timed pass follows an untimed run, as in
        :meth:`Session.benchmark`: the cost model prices steady-state
        inference. After as little as 0.1 ms of Python work the runtime's
        worker threads have gone to sleep and the next run pays to wake them
        (on a 2-vCPU VM, a network of 0.16 ms took 0.21 ms after a 0.1 ms
        pause and 0.43 ms after 10 ms).
    threads : int, optional
    tolerance : float
        Relative error counted as a hit, default ±20 %.

    Returns
    -------
    ValidationReport

    Examples
    --------
    >>> import lpcv
    >>> dev = lpcv.cost.Device.preset("x86-avx512-core")
    >>> val = lpcv.cost.validate(lpcv.zoo.reference("fmnist-lenet300"), dev, repeats=3)
    >>> len(val.rows), val.measured_total > 0
    (3, True)
    """
    from ..runtime import Session
    if not 0 < tolerance < 10:
        raise ValidationError(f"tolerance must be in (0, 10), got {tolerance!r}")
    if not isinstance(repeats, (int, np.integer)) or isinstance(repeats, bool) or repeats < 1:
        raise ValidationError(f"repeats must be a positive int, got {repeats!r}")
    rep = profile(model, device, batch_size)
    sess = Session(model, batch_size=batch_size, threads=threads)
    layers, whole = interleaved_times(sess, 2 * int(repeats))
    measured = {node: t[0] * 1e3 for node, t in layers.items()}
    return _compare(model, rep, measured, whole, tolerance)


def interleaved_times(sess, rounds: int):
    """Per layer (step name) its (time, layout-conversion time) and the whole
    inference's time, in seconds: medians over ``rounds`` rounds, each
    timing every layer once (the plan run step by step) and then the whole
    model once (see :func:`validate`'s ``repeats``). The host calibration
    measures its networks the same way, so whole runs exceed summed layers
    there as they do here."""
    feeds = sess._default_feeds(None)   # the same arrays in every round
    layer_times: dict = {}
    whole_times = []
    for i in range(int(rounds)):
        # One untimed run right before each timed one: the model predicts
        # steady-state inference, what Session.profile and .benchmark time
        # after their warm-up runs (see validate's "Measured times").
        for r in sess.profile(repeats=1, warmup=2 if i == 0 else 1, feeds=feeds).rows:
            layer_times.setdefault(r["node"], []).append((r["time_ms"], r["reorder_ms"]))
        whole_times.append(sess.benchmark(runs=1, warmup=1, feeds=feeds).median)
    layers = {node: tuple(float(v) * 1e-3 for v in np.median(np.array(ts), axis=0))
              for node, ts in layer_times.items()}
    return layers, float(np.median(whole_times))


def _relative_error(predicted: float, measured: float) -> float:
    """predicted / measured − 1 (infinite when nothing was measured)."""
    return predicted / measured - 1 if measured > 0 else float("inf")


def _compare(model: Model, rep, measured, whole: float, tolerance: float) -> ValidationReport:
    """A report from a cost profile and the measured layer times (ms) and
    whole-model time (s)."""
    rows = []
    for r in rep.rows:
        m = measured.get(r["layer"])
        if m is None:
            continue
        rows.append({"layer": r["layer"], "op_class": r["op_class"], "bound": r["bound"],
                     "predicted_ms": r["latency_ms"], "measured_ms": m,
                     "error": _relative_error(r["latency_ms"], m)})
    return ValidationReport(rows, f"{model.name}: predicted vs measured on {rep.device.name} "
                                  f"(batch {rep.batch_size})", tolerance, rep.total.latency, whole,
                            rep.batch_size)
