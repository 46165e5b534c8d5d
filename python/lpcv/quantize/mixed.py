"""Mixed precision: per-layer weight bit widths under a size, latency or energy budget.

:func:`choose_bits` measures each layer's sensitivity (how much the model's
output moves when only that layer's weights are quantized to ``b`` bits, on
calibration data), prices every layer at every candidate bit width (weight
bytes for ``"size"``; the cost model's roofline latency or energy on a
:class:`lpcv.cost.Device` otherwise), then lowers bit widths greedily, always
taking the step with the least added sensitivity per unit of cost saved, until
the budget is met. Its result feeds :func:`quantize_model` as ``layer_bits``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._capture import CalibrationData, capture
from .._report import Table
from ..exceptions import ValidationError
from ..graph import Model
from ._common import check_bits, check_choice, check_float
from .model import _Analysis, _as_matrix, _float_model, _from_matrix, _round_nearest, \
    _weight_bytes, _weight_scales

__all__ = ["choose_bits", "MixedPrecisionResult", "METRICS"]

METRICS = ("size", "latency", "energy")
# Bit widths the cost model has a precision for (compute and bytes).
_COST_PRECISION = {8: "int8", 4: "int4"}


class MixedPrecisionResult:
    """Outcome of :func:`choose_bits`.

    Attributes
    ----------
    layer_bits : dict of str to int
        Bits per layer; pass as ``quantize_model(..., layer_bits=...)``.
    table : Table
        Per layer: sensitivity and cost at every candidate, chosen bits.
    cost, budget : float
        Cost of the choice and the budget, in ``unit``.
    max_cost, min_cost : float
        Cost with every layer at the highest / lowest candidate.
    metric, unit : str
    """

    def __init__(self, layer_bits, table, cost, budget, max_cost, min_cost, metric, unit):
        self.layer_bits = layer_bits
        self.table = table
        self.cost = cost
        self.budget = budget
        self.max_cost = max_cost
        self.min_cost = min_cost
        self.metric = metric
        self.unit = unit

    def _summary(self) -> str:
        hist: Dict[int, int] = {}
        for b in self.layer_bits.values():
            hist[b] = hist.get(b, 0) + 1
        mix = ", ".join(f"{n} layers at {b} bits" for b, n in sorted(hist.items(), reverse=True))
        return (f"{self.metric} {self.cost:.6g} {self.unit} within budget {self.budget:.6g} "
                f"(all-high {self.max_cost:.6g}, all-low {self.min_cost:.6g}): {mix}")

    def to_pandas(self):
        return self.table.to_pandas()

    def to_markdown(self) -> str:
        return self._summary() + "\n\n" + self.table.to_markdown()

    def _repr_html_(self) -> str:
        import html
        return f"<p>{html.escape(self._summary())}</p>" + self.table._repr_html_()

    def __repr__(self) -> str:
        return f"MixedPrecisionResult({self._summary()})"


def _layer_costs(fm: Model, an: _Analysis, names: List[str], candidates: Sequence[int],
                 metric: str, device, batch_size: int, activation_precision: str,
                 granularity: str) -> Tuple[Dict[str, Dict[int, float]], float, str]:
    """Cost of each layer at each bit width, plus the cost of everything else."""
    if metric == "size":
        costs = {}
        for layer in an.layers:
            if layer.name not in names:
                continue
            w = fm.initializers[layer.weight]
            n_scales = w.shape[layer.axis] if granularity == "per_channel" else 1
            costs[layer.name] = {b: float(_weight_bytes(w.size, b, n_scales)) for b in candidates}
        quantized = {an_l.weight for an_l in an.layers if an_l.name in names}
        rest = float(sum(a.nbytes for k, a in fm.initializers.items() if k not in quantized))
        return costs, rest, "bytes"
    from ..cost import WeightFormat, profile
    column, unit = ("latency_ms", "ms") if metric == "latency" else ("energy_uj", "uJ")
    costs = {n: {} for n in names}
    rest = 0.0
    for b in candidates:
        fmt = WeightFormat(precision=_COST_PRECISION[b])
        rep = profile(fm, device, batch_size=batch_size, formats={n: fmt for n in names},
                      activation_precision=activation_precision)
        df = rep.to_pandas()
        other = 0.0
        for _, row in df.iterrows():
            owners = [n for n in names if n in str(row["nodes"]).split("+")
                      or n in str(row["layer"]).split("+")]
            if owners:
                costs[owners[0]][b] = float(row[column])
            else:
                other += float(row[column])
        rest = other
    for n in names:
        if len(costs[n]) != len(candidates):
            raise ValidationError(f"layer {n!r} was not found in the cost report")
    return costs, rest, unit


def choose_bits(model: Model, calib: Any, budget: Optional[float] = None, *,
                fraction: Optional[float] = None, metric: str = "size",
                candidates: Sequence[int] = (8, 4), device: Any = "rpi4",
                granularity: str = "per_channel", weight_range: str = "mse",
                activation_precision: str = "int8", cost_batch_size: int = 1,
                batch_size: int = 32, max_samples: int = 256, progress: bool = True
                ) -> MixedPrecisionResult:
    """Choose per-layer weight bits by measured sensitivity under a budget.

    Parameters
    ----------
    model : Model
    calib : ndarray or re-iterable of batches
        Calibration inputs for the sensitivity measurement.
    budget : float, optional
        Largest allowed cost in the metric's unit: bytes of weights
        (``"size"``), predicted milliseconds (``"latency"``) or microjoules
        (``"energy"``) for the whole model.
    fraction : float, optional
        Instead of ``budget``: the budget as a fraction of the cost with all
        layers at the highest candidate (``0 < fraction <= 1``).
    metric : {"size", "latency", "energy"}
    candidates : sequence of int, default (8, 4)
        Bit widths to choose from (2..8; 8 and 4 for latency and energy,
        the precisions the cost model prices).
    device : Device or str
        Cost-model device for latency and energy.
    granularity, weight_range : str
        As in :func:`quantize_model`.
    activation_precision : str
        Activation precision the cost model assumes (latency, energy).
    cost_batch_size : int
        Batch size the cost model prices.
    batch_size, max_samples : int
        Calibration batching and the number of samples used.
    progress : bool

    Returns
    -------
    MixedPrecisionResult

    Examples
    --------
    >>> import lpcv
    >>> m = lpcv.zoo.reference("fmnist-lenet5")
    >>> x, _ = lpcv.data.load_sample(64)
    >>> res = lpcv.quantize.choose_bits(m, x, fraction=0.7, progress=False)
    >>> res.cost <= res.budget
    True
    >>> sorted(set(res.layer_bits.values()))
    [4, 8]
    """
    metric = check_choice(metric, "metric", METRICS)
    granularity = check_choice(granularity, "granularity", ("per_channel", "per_tensor"))
    cands = sorted({check_bits(b, "candidates") for b in candidates}, reverse=True)
    if not cands:
        raise ValidationError("candidates must hold at least one bit width")
    if any(b > 8 for b in cands):
        raise ValidationError(f"candidates must be 2..8 bits, got {list(candidates)}")
    if metric != "size" and any(b not in _COST_PRECISION for b in cands):
        raise ValidationError(f"metric={metric!r} prices {sorted(_COST_PRECISION)} bits only; "
                              f"got candidates {list(candidates)}")
    if (budget is None) == (fraction is None):
        raise ValidationError("give exactly one of budget (absolute) and fraction (relative)")
    if fraction is not None:
        check_float(fraction, "fraction", 0.0, 1.0, lo_open=True)
    elif not isinstance(budget, (int, float, np.floating, np.integer)) or not budget > 0:
        raise ValidationError(f"budget must be a positive number, got {budget!r}")
    fm = _float_model(model)
    an = _Analysis(fm)
    names = [layer.name for layer in an.layers]
    if not names:
        raise ValidationError("the model has no quantizable layers (Conv/Gemm/MatMul with "
                              "constant weights)")
    data = CalibrationData(calib, model, batch_size=batch_size, max_samples=max_samples)
    costs, rest, unit = _layer_costs(fm, an, names, cands, metric, device, cost_batch_size,
                                     activation_precision, granularity)
    sens = _sensitivities(fm, an, data, cands, granularity, weight_range, progress)

    max_cost = rest + sum(costs[n][cands[0]] for n in names)
    min_cost = rest + sum(costs[n][cands[-1]] for n in names)
    target = float(budget) if budget is not None else float(fraction) * max_cost
    if target < min_cost * (1 - 1e-9):
        raise ValidationError(f"budget {target:.6g} {unit} is below the cheapest choice "
                              f"({min_cost:.6g} {unit}, every layer at {cands[-1]} bits)")
    bits = {n: cands[0] for n in names}
    cost = max_cost
    while cost > target:
        best = None
        for n in names:
            i = cands.index(bits[n])
            if i + 1 == len(cands):
                continue
            nb = cands[i + 1]
            saved = costs[n][bits[n]] - costs[n][nb]
            added = max(sens[n][nb] - sens[n][bits[n]], 0.0)
            if saved <= 0:
                continue
            score = added / saved
            if best is None or score < best[0]:
                best = (score, n, nb, saved)
        if best is None:
            break
        _, n, nb, saved = best
        bits[n] = nb
        cost -= saved
    rows = []
    for n in names:
        row: Dict[str, Any] = {"layer": n, "bits": bits[n]}
        for b in cands:
            row[f"sensitivity_w{b}"] = sens[n][b]
        for b in cands:
            row[f"{metric}_w{b}"] = costs[n][b]
        rows.append(row)
    return MixedPrecisionResult(bits, Table(rows, title=f"mixed precision ({metric})"), cost,
                                target, max_cost, min_cost, metric, unit)


def _sensitivities(fm: Model, an: _Analysis, data: CalibrationData, cands: Sequence[int],
                   granularity: str, weight_range: str, progress: bool
                   ) -> Dict[str, Dict[int, float]]:
    """Relative output MSE with one layer's weights quantized (weights only)."""
    from tqdm.auto import tqdm

    out_names = fm.output_names
    ref = [o for _, o in capture(fm, out_names, data)]
    energy = sum(float(np.square(o[k], dtype=np.float64).sum()) for o in ref for k in out_names)
    energy = max(energy, 1e-30)
    sens: Dict[str, Dict[int, float]] = {}
    work = [(layer, b) for layer in an.layers for b in cands]
    for layer, b in tqdm(work, desc="layer sensitivity", disable=not progress, leave=False):
        w = fm.initializers[layer.weight]
        wm = _as_matrix(layer, w)
        flat = wm.reshape(-1, wm.shape[-1])
        scale = _weight_scales(flat, b, granularity == "per_channel", weight_range)
        q = _round_nearest(flat, scale, b).astype(np.float32)
        deq = q * (scale[:, None] if scale.size > 1 else scale.reshape(1, 1))
        inits = dict(fm.initializers)
        inits[layer.weight] = _from_matrix(layer, deq.reshape(wm.shape), w.shape)
        m = fm.with_changes(initializers=inits)
        err = 0.0
        for (_, o), r in zip(capture(m, out_names, data), ref):
            err += sum(float(np.square(o[k] - r[k], dtype=np.float64).sum()) for k in out_names)
        sens.setdefault(layer.name, {})[b] = err / energy
    return sens
