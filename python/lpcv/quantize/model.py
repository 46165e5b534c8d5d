"""Post-training quantization of whole models to QDQ ONNX graphs.

:func:`quantize_model` follows the standard post-training pipeline of Nagel
et al. ("A White Paper on Neural Network Quantization", 2021, Fig. 11.8):

1. BatchNorm folded into the preceding Conv/Gemm; optional cross-layer
   equalization with high-bias absorption (:mod:`lpcv.quantize.equalize`).
2. Symmetric signed weights (per output channel or per tensor), asymmetric
   unsigned 8-bit activations.
3. Weight ranges by min-max or MSE-optimal clipping; activation ranges from
   streaming histograms of calibration data (:class:`Calibrator`).
4. Rounding by round-to-nearest, AdaRound or GPTQ, layer by layer, each layer
   seeing its inputs from the model with all preceding layers quantized.
5. Optional bias correction: empirical (E[Ŵx̂] − E[Wx̂] from the data) or
   analytic (E[x] from the preceding BatchNorm's statistics through ReLU).

Where activations are quantized (simulated like the hardware does it): at
the graph input; after every Conv/Gemm/MatMul *after* its fused activation
(ReLU, ReLU6, LeakyReLU); a Conv that feeds a residual Add is not quantized on
its own, the quantizer sits after the Add (and its ReLU), as an int8 kernel
with a fused sum computes it; after average pooling; Concat inputs share the
output's range. MaxPool, Flatten, Reshape and Transpose keep their input grid.

The result is an ordinary :class:`lpcv.Model` with QuantizeLinear /
DequantizeLinear pairs (weights stored as int8 initializers, sub-8-bit weights
on a restricted int8 range), which :class:`lpcv.Session` runs with int8
kernels and onnxruntime runs unchanged after :func:`lpcv.save`.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from .._capture import CalibrationData, capture
from .._report import Table
from .._shapes import conv_pads
from ..exceptions import UnsupportedError, ValidationError
from ..graph import Model, Node, unique_name
from ..transforms import fold_batchnorm, fold_constants, remove_identities
from ._common import check_bits, check_choice, check_int
from .calibration import Calibrator
from .uniform import _scheme, int_range, quantize

__all__ = ["quantize_model", "QuantizationReport", "quantizable_layers", "METHODS"]

METHODS = ("nearest", "adaround", "gptq")
WEIGHT_RANGES = ("minmax", "mse")
ACTIVATION_RANGES = ("minmax", "percentile", "mse", "entropy")
BIAS_CORRECTIONS = ("empirical", "analytic")
GRANULARITIES = ("per_channel", "per_tensor")

# Ops that move or select values without changing the quantization grid.
_PASSTHROUGH = {"MaxPool", "GlobalMaxPool", "Flatten", "Reshape", "Transpose", "Squeeze",
                "Unsqueeze", "Identity", "Dropout"}
# Activations the runtime fuses into the producing layer; the quantizer goes after them.
_FUSED_ACTIVATIONS = {"Relu", "Clip", "LeakyRelu"}
# Ops whose output gets its own quantizer (requantization).
_REQUANTIZED = {"Add", "Sub", "Mul", "AveragePool", "GlobalAveragePool", "Concat"}
# Mean squared error search: clipping ratios of max|W| tried for weight ranges.
_MSE_RATIOS = np.linspace(0.3, 1.0, 36)
_DEFAULT = object()  # activations not given: 8 bits unless the config says otherwise
_CONFIG = re.compile(r"^w(\d+)(?:a(\d+))?(?:[_-](per_channel|per_tensor))?$")


@dataclass
class _Layer:
    """A Conv/Gemm/MatMul with a constant weight, as the pipeline sees it."""

    node: Node
    weight: str                 # initializer name
    bias: Optional[str]         # initializer name of a 1-D bias, if any
    axis: int                   # output-channel axis of the stored weight
    groups: int
    x: str                      # input activation tensor
    activation: Optional[str]   # "relu", "relu6" or None: fused after the layer
    out: Optional[str]          # tensor quantized after the layer (None: fused into an Add)

    @property
    def name(self) -> str:
        return self.node.name


@dataclass
class _QuantizedWeight:
    q: np.ndarray               # integer weights, stored layout
    scale: np.ndarray           # (C,) per channel or () per tensor
    bits: int
    bias: Optional[np.ndarray] = None   # corrected bias (None: unchanged)


def quantizable_layers(model: Model) -> List[str]:
    """Names of the Conv/Gemm/MatMul nodes whose weights ``quantize_model`` quantizes.

    Examples
    --------
    >>> import lpcv
    >>> lpcv.quantize.quantizable_layers(lpcv.zoo.reference("fmnist-lenet300"))
    ['/net/net.1/Gemm', '/net/net.3/Gemm', '/net/net.5/Gemm']
    """
    return [layer.name for layer in _Analysis(_float_model(model)).layers]


def _float_model(model: Model) -> Model:
    if not isinstance(model, Model):
        raise TypeError(f"model must be an lpcv.Model, got {type(model).__name__}")
    return fold_batchnorm(remove_identities(fold_constants(model)))


class _Analysis:
    """Layers and activation-quantizer sites of a BN-folded float model."""

    def __init__(self, model: Model):
        self.model = m = model
        self.infos = m.infer_shapes(batch_size=1)
        self.readers: Dict[str, List[Node]] = {}
        for n in m.nodes:
            for t in dict.fromkeys(n.inputs):
                if t:
                    self.readers.setdefault(t, []).append(n)
        self.producer = {o: n for n in m.nodes for o in n.outputs if o}
        self.outputs = set(m.output_names)
        self.layers: List[_Layer] = []
        sites: List[str] = []
        fused_into_add: set = set()
        for n in m.nodes:
            layer = self._layer(n)
            if layer is not None:
                end, act = self._chain_end(n.outputs[0])
                r = self._sole_reader(n.outputs[0])
                if (n.op == "Conv" and end == n.outputs[0] and r is not None and r.op == "Add"
                        and len(r.inputs) == 2 and r.inputs[0] != r.inputs[1]
                        and all(t not in m.initializers for t in r.inputs)):
                    fused_into_add.add(n.outputs[0])
                    layer.out, layer.activation = None, None
                else:
                    layer.out, layer.activation = end, act
                    sites.append(end)
                self.layers.append(layer)
            elif n.op in _REQUANTIZED and n.domain in ("", "ai.onnx"):
                if any(t in m.initializers for t in n.inputs if t) and n.op != "Concat":
                    continue  # an affine op with a constant: not an activation junction
                end, _ = self._chain_end(n.outputs[0])
                sites.append(end)
        # Every layer reads a quantized tensor (found through grid-keeping ops).
        for layer in self.layers:
            src = self._grid_source(layer.x)
            if src not in sites:
                sites.append(src)
        for vi in m.inputs:
            if vi.name in self.readers and vi.dtype == np.float32 and vi.name not in sites:
                sites.append(vi.name)
        self.sites = [s for s in dict.fromkeys(sites) if self._is_float(s)]
        # Concat: inputs produced only for the concat share its range.
        self.shared: Dict[str, str] = {}
        for n in m.nodes:
            if n.op == "Concat" and n.outputs[0] in self.sites:
                for t in n.inputs:
                    src = self._grid_source(t)
                    if src in self.sites and len(self.readers.get(src, [])) == 1:
                        self.shared[src] = n.outputs[0]

    def _is_float(self, t: str) -> bool:
        if t in self.model.initializers:
            return False
        vi = {v.name: v for v in self.model.inputs}.get(t)
        return vi is None or vi.dtype == np.float32

    def _sole_reader(self, t: str) -> Optional[Node]:
        r = self.readers.get(t, [])
        return r[0] if len(r) == 1 and t not in self.outputs else None

    def _chain_end(self, t: str) -> Tuple[str, Optional[str]]:
        act = None
        while (r := self._sole_reader(t)) is not None and r.op in _FUSED_ACTIVATIONS:
            if act is None:
                act = _activation_name(r, self.model)
            else:
                act = "other"
            t = r.outputs[0]
        return t, act if act in ("relu", "relu6") else None

    def _grid_source(self, t: str) -> str:
        while (p := self.producer.get(t)) is not None and p.op in _PASSTHROUGH:
            t = p.inputs[0]
        return t

    def _layer(self, n: Node) -> Optional[_Layer]:
        m = self.model
        if n.domain not in ("", "ai.onnx") or n.op not in ("Conv", "Gemm", "MatMul"):
            return None
        if len(n.inputs) < 2 or n.inputs[1] not in m.initializers:
            return None
        w = m.initializers[n.inputs[1]]
        if w.dtype != np.float32:
            return None
        bias = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] in m.initializers else None
        if n.op == "Conv":
            if w.ndim != 4:
                return None  # 1-D/3-D convs stay float
            return _Layer(n, n.inputs[1], bias, 0, int(n.attrs.get("group", 1)), n.inputs[0],
                          None, None)
        if w.ndim != 2:
            return None
        if n.op == "Gemm":
            if n.attrs.get("transA", 0) or n.attrs.get("alpha", 1.0) != 1.0 \
                    or n.attrs.get("beta", 1.0) != 1.0:
                return None
            axis = 0 if n.attrs.get("transB", 0) else 1
            if bias is not None and m.initializers[bias].shape != (w.shape[axis],):
                bias = None  # a broadcast C that is not a per-output bias stays as it is
            return _Layer(n, n.inputs[1], bias, axis, 1, n.inputs[0], None, None)
        return _Layer(n, n.inputs[1], None, 1, 1, n.inputs[0], None, None)


def _activation_name(node: Node, model: Model) -> str:
    if node.op == "Relu":
        return "relu"
    if node.op == "Clip":
        lo = model.initializers.get(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] \
            else node.attrs.get("min")
        hi = model.initializers.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] \
            else node.attrs.get("max")
        if lo is not None and hi is not None and float(np.asarray(lo)) == 0.0:
            return "relu6" if float(np.asarray(hi)) == 6.0 else "other"
    return "other"


# ------------------------------------------------------------------ weights
def _as_matrix(layer: _Layer, w: np.ndarray) -> np.ndarray:
    """Stored weight -> (G, M, K): G groups of M output rows over K inputs."""
    if layer.node.op == "Conv":
        return w.reshape(layer.groups, w.shape[0] // layer.groups, -1)
    return (w if layer.axis == 0 else w.T)[None]


def _from_matrix(layer: _Layer, m: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    if layer.node.op == "Conv":
        return m.reshape(shape)
    m2 = m[0]
    return np.ascontiguousarray(m2 if layer.axis == 0 else m2.T)


def _weight_scales(wm: np.ndarray, bits: int, per_channel: bool, method: str) -> np.ndarray:
    """Symmetric scales (C,) or (1,) for the rows of ``wm`` (C, K)."""
    rows = wm if per_channel else wm.reshape(1, -1)
    absmax = np.abs(rows).max(axis=1).astype(np.float32)
    scheme = _scheme(bits, True, True, False, False)
    qmin, qmax = int_range(bits)

    def scales(ratio: float) -> np.ndarray:
        r = (absmax * ratio).astype(np.float32)
        return _core.quant_params(-r, r, scheme)[0]

    if method == "minmax":
        return scales(1.0)
    best, best_err = None, None
    for ratio in _MSE_RATIOS:
        s = scales(float(ratio))[:, None]
        err = np.square(np.clip(np.rint(rows / s), qmin, qmax) * s - rows).sum(axis=1)
        if best is None:
            best, best_err = np.broadcast_to(s[:, 0], absmax.shape).copy(), err
        else:
            better = err < best_err
            best[better], best_err[better] = s[better, 0], err[better]
    return best


def _round_nearest(wm2: np.ndarray, scale: np.ndarray, bits: int) -> np.ndarray:
    axis = 0 if scale.size > 1 or wm2.shape[0] == 1 else None
    if axis is None:
        return quantize(wm2, bits=bits, scale=scale.reshape(()), axis=None)[0]
    return quantize(wm2, bits=bits, scale=scale, axis=0)[0]


# --------------------------------------------------------------- the report
class QuantizationReport:
    """What :func:`quantize_model` did.

    Attributes
    ----------
    layers : Table
        One row per quantized layer: bits, granularity, rounding method,
        weight SQNR (dB), bias correction applied, weight bytes.
    activations : Table
        One row per activation quantizer: tensor, range, scale, zero point.
    equalization : Table or None
        The cross-layer equalization report (``equalize=True``).
    settings : dict
        The resolved settings.
    float_weight_bytes, quantized_weight_bytes : int
        Bytes of the quantized layers' weights before and after
        (sub-8-bit weights counted at their bit width, scales included).
    """

    def __init__(self, layers: Table, activations: Table, settings: Dict[str, Any],
                 equalization: Optional[Table], float_bytes: int, quant_bytes: int):
        self.layers = layers
        self.activations = activations
        self.settings = settings
        self.equalization = equalization
        self.float_weight_bytes = float_bytes
        self.quantized_weight_bytes = quant_bytes

    @property
    def compression(self) -> float:
        """Float weight bytes / quantized weight bytes of the quantized layers."""
        return self.float_weight_bytes / max(self.quantized_weight_bytes, 1)

    def _summary(self) -> str:
        s = self.settings
        acts = "float" if s["activations"] is None else f"{s['activations']}-bit"
        return (f"W{s['weights']} {s['granularity']} {s['method']}, activations {acts}"
                f"{', CLE' if s['equalize'] else ''}"
                f"{', bias correction ' + s['bias_correction'] if s['bias_correction'] else ''}: "
                f"{len(self.layers.rows)} layers, weights {self.float_weight_bytes:,} -> "
                f"{self.quantized_weight_bytes:,} bytes ({self.compression:.2f}x)")

    def to_pandas(self):
        """The per-layer table as a pandas DataFrame."""
        return self.layers.to_pandas()

    def to_markdown(self) -> str:
        parts = [self._summary(), "", self.layers.to_markdown(), "", self.activations.to_markdown()]
        if self.equalization is not None:
            parts += ["", self.equalization.to_markdown()]
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        import html
        out = f"<p>{html.escape(self._summary())}</p>" + self.layers._repr_html_()
        return out + self.activations._repr_html_()

    def __str__(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        return f"QuantizationReport({self._summary()})"


# ----------------------------------------------------------------- settings
def _resolve(config, weights, activations, granularity) -> Tuple[int, Optional[int], str]:
    if config is not None:
        if not isinstance(config, str) or not (m := _CONFIG.match(config.lower())):
            raise ValidationError(f"config must look like 'w8a8', 'w4a8', 'w8' (weights only) or "
                                  f"'w8a8_per_tensor', got {config!r}")
        cw, ca, cg = int(m.group(1)), (int(m.group(2)) if m.group(2) else None), m.group(3)
        for given, from_config, what in ((weights, cw, "weights"), (granularity, cg, "granularity")):
            if given is not None and from_config is not None and given != from_config:
                raise ValidationError(f"{what}={given!r} contradicts config={config!r}")
        if activations is not _DEFAULT and activations != ca:
            raise ValidationError(f"activations={activations!r} contradicts config={config!r}")
        weights = cw
        activations = ca  # "w8": weights only
        granularity = granularity or cg
    if activations is _DEFAULT:
        activations = 8
    w_bits = check_bits(8 if weights is None else weights, "weights")
    if w_bits > 8:
        raise ValidationError(f"weights must be 2..8 bits (stored as int8), got {w_bits}")
    if activations is not None:
        a_bits = check_int(activations, "activations")
        if a_bits != 8:
            raise ValidationError("activations must be 8 (uint8 QuantizeLinear) or None "
                                  f"(float activations), got {activations!r}")
    else:
        a_bits = None
    gran = check_choice(granularity or "per_channel", "granularity", GRANULARITIES)
    return w_bits, a_bits, gran


def quantize_model(model: Model, calib: Any, config: Optional[str] = None, *,
                   weights: Optional[int] = None, activations: Any = _DEFAULT,
                   granularity: Optional[str] = None, method: str = "nearest",
                   weight_range: str = "mse", activation_range: str = "mse",
                   equalize: bool = False, bias_correction: Any = False,
                   layer_bits: Optional[Mapping[str, int]] = None,
                   skip: Sequence[str] = (), batch_size: int = 32,
                   max_samples: Optional[int] = 1024, adaround_iters: int = 2000,
                   adaround_rows: int = 8192, random_state: Optional[int] = 0,
                   threads: Optional[int] = None, progress: bool = True
                   ) -> Tuple[Model, QuantizationReport]:
    """Quantize a float model post-training; returns a QDQ model and a report.

    Parameters
    ----------
    model : Model
        A float model (BatchNorm allowed; it is folded).
    calib : ndarray, list of ndarray or re-iterable of batches
        Unlabeled calibration inputs, e.g. ``(N, C, H, W)`` float32 images.
        They are streamed in batches of ``batch_size``; a few hundred samples
        suffice.
    config : str, optional
        Shorthand ``"w{bits}a{bits}"`` with an optional ``"_per_tensor"`` /
        ``"_per_channel"`` suffix (``"w8a8"``, ``"w4a8"``, ``"w8"`` for
        weights only).
    weights : int, optional
        Weight bits, 2..8 (default 8).
    activations : int or None, default 8
        Activation bits: 8 (uint8, asymmetric) or None for float activations.
    granularity : {"per_channel", "per_tensor"}, optional
        Weight scale granularity (default per channel).
    method : {"nearest", "adaround", "gptq"}, default "nearest"
        Weight rounding.
    weight_range : {"mse", "minmax"}, default "mse"
        Weight clipping: MSE-optimal ratio of max|W| per scale, or max|W|.
    activation_range : {"mse", "minmax", "percentile", "entropy"}, default "mse"
        Activation range calibration (see :class:`Calibrator`).
    equalize : bool, default False
        Cross-layer equalization with high-bias absorption first.
    bias_correction : bool or {"empirical", "analytic"}, default False
        ``True`` means ``"empirical"``.
    layer_bits : mapping of str to int, optional
        Per-layer weight bits overriding ``weights`` (mixed precision).
    skip : sequence of str
        Layers kept in float.
    batch_size : int, default 32
    max_samples : int or None, default 1024
        Use at most this many calibration samples.
    adaround_iters, adaround_rows : int
        AdaRound iterations and the number of input rows it optimizes over
        per layer (sampled from the calibration data).
    random_state : int or None, default 0
    threads : int, optional
        Threads of the sessions that run the calibration data.
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    model : Model
        The QDQ model.
    report : QuantizationReport

    Examples
    --------
    >>> import lpcv
    >>> m = lpcv.zoo.reference("fmnist-lenet300")
    >>> x, y = lpcv.data.load_sample(256)
    >>> qm, rep = lpcv.quantize.quantize_model(m, x, "w8a8", progress=False)
    >>> sorted({n.op for n in qm.nodes})
    ['DequantizeLinear', 'Flatten', 'Gemm', 'QuantizeLinear', 'Relu']
    >>> round(rep.compression, 1)
    4.0
    """
    w_bits, a_bits, gran = _resolve(config, weights, activations, granularity)
    method = check_choice(method, "method", METHODS)
    weight_range = check_choice(weight_range, "weight_range", WEIGHT_RANGES)
    activation_range = check_choice(activation_range, "activation_range", ACTIVATION_RANGES)
    if not isinstance(equalize, (bool, np.bool_)):
        raise ValidationError(f"equalize must be a bool, got {equalize!r}")
    if bias_correction is True:
        bias_correction = "empirical"
    elif bias_correction is False or bias_correction is None:
        bias_correction = None
    else:
        bias_correction = check_choice(bias_correction, "bias_correction", BIAS_CORRECTIONS)
    adaround_iters = check_int(adaround_iters, "adaround_iters", 1)
    adaround_rows = check_int(adaround_rows, "adaround_rows", 16)
    if not isinstance(model, Model):
        raise TypeError(f"model must be an lpcv.Model, got {type(model).__name__}")
    if model.opset < 13:
        raise UnsupportedError(f"quantize_model needs opset >= 13 (per-axis DequantizeLinear); "
                               f"the model has opset {model.opset}")
    data = CalibrationData(calib, model, batch_size=batch_size, max_samples=max_samples)

    bn_stats = _bn_statistics(model) if bias_correction == "analytic" else {}
    eq_table = None
    if equalize:
        from .equalize import cross_layer_equalization
        eq_model, eq_report = cross_layer_equalization(
            fold_constants(model), calib=data.first(min(data.n_samples, 512))[data.inputs[0].name]
            if len(data.inputs) == 1 else None)
        fm = _float_model(eq_model)
        eq_table = eq_report
    else:
        fm = _float_model(model)
    an = _Analysis(fm)
    names = {layer.name for layer in an.layers}
    skip = list(skip)
    unknown = [s for s in list(skip) + list(layer_bits or {}) if s not in names]
    if unknown:
        raise ValidationError(f"unknown layer name(s) {unknown}; quantizable layers: {sorted(names)}")
    bits_of = {layer.name: check_bits((layer_bits or {}).get(layer.name, w_bits),
                                      f"layer_bits[{layer.name!r}]") for layer in an.layers}
    for k, b in bits_of.items():
        if b > 8:
            raise ValidationError(f"layer_bits[{k!r}] must be 2..8, got {b}")
    layers = [layer for layer in an.layers if layer.name not in skip]
    for layer in layers:
        if not np.isfinite(fm.initializers[layer.weight]).all():
            raise ValidationError(f"model: the weight {layer.weight!r} of layer {layer.name!r} "
                                  "contains NaN or Inf")

    # 1. activation ranges, on the float model
    act_params: Dict[str, Tuple[float, int]] = {}
    act_rows: List[Dict[str, Any]] = []
    if a_bits is not None:
        act_params, act_rows = _calibrate_activations(fm, an, data, a_bits, activation_range,
                                                      threads, progress)

    # 2. weights, layer by layer
    rng = np.random.default_rng(random_state)
    sequential = method != "nearest" or bias_correction == "empirical"
    done: Dict[str, _QuantizedWeight] = {}
    rows: List[Dict[str, Any]] = []
    from tqdm.auto import tqdm
    for layer in tqdm(layers, desc="quantizing layers", disable=not progress, leave=False):
        bits = bits_of[layer.name]
        w = fm.initializers[layer.weight]
        wm = _as_matrix(layer, w)
        G, M, K = wm.shape
        flat = wm.reshape(G * M, K)
        scale = _weight_scales(flat, bits, gran == "per_channel", weight_range)
        stats = None
        if sequential:
            sim = _qdq_model(fm, an, done, act_params)
            stats = _layer_statistics(sim, fm, an, layer, data, method, adaround_rows, rng, threads,
                                      float_mean=bias_correction == "empirical")
        bias = fm.initializers[layer.bias] if layer.bias is not None else None
        q_flat = _round(layer, flat, scale, bits, method, stats, adaround_iters, rng, bias)
        q = _from_matrix(layer, q_flat.reshape(G, M, K), w.shape)
        deq = q_flat.astype(np.float32) * (scale[:, None] if scale.size > 1 else scale.reshape(1, 1))
        new_bias = None
        if bias_correction == "empirical":
            new_bias = _empirical_bias(fm, layer, deq.reshape(G, M, K), stats["mean"],
                                       wm, stats["mean_float"])
        elif bias_correction == "analytic":
            new_bias = _analytic_bias(fm, an, layer, deq.reshape(G, M, K) - wm, bn_stats)
        done[layer.name] = _QuantizedWeight(q, scale if gran == "per_channel" else scale.reshape(()),
                                            bits, new_bias)
        signal = float(np.square(flat, dtype=np.float64).sum())
        noise = float(np.square(deq - flat, dtype=np.float64).sum())
        sqnr = math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise)
        rows.append({"layer": layer.name, "op": layer.node.op, "shape": "x".join(map(str, w.shape)),
                     "bits": bits, "granularity": gran, "method": method,
                     "sqnr_db": round(sqnr, 2),
                     "bias_corrected": new_bias is not None,
                     "float_bytes": int(w.size * 4),
                     "quantized_bytes": _weight_bytes(w.size, bits, scale.size)})
    qm = _qdq_model(fm, an, done, act_params, final=True)
    float_bytes = sum(r["float_bytes"] for r in rows)
    quant_bytes = sum(r["quantized_bytes"] for r in rows)
    settings = {"weights": w_bits, "activations": a_bits, "granularity": gran, "method": method,
                "weight_range": weight_range, "activation_range": activation_range,
                "equalize": bool(equalize), "bias_correction": bias_correction,
                "calibration_samples": data.n_samples, "skip": skip,
                "layer_bits": dict(layer_bits or {})}
    report = QuantizationReport(Table(rows, title="quantized layers"),
                                Table(act_rows, title="activation quantizers"),
                                settings, eq_table, float_bytes, quant_bytes)
    return qm, report


def _weight_bytes(n: int, bits: int, n_scales: int) -> int:
    return (n * bits + 7) // 8 + 4 * n_scales


# ------------------------------------------------------------- activations
def _calibrate_activations(fm: Model, an: _Analysis, data: CalibrationData, bits: int,
                           method: str, threads, progress) -> Tuple[Dict[str, Tuple[float, int]],
                                                                   List[Dict[str, Any]]]:
    cals = {t: Calibrator(method=method, bits=bits, symmetric=False, signed=False)
            for t in an.sites}
    inputs = {vi.name for vi in fm.inputs}
    produced = [t for t in an.sites if t not in inputs]
    for feeds in _stream(fm, produced, data, None, threads, "calibrating activations", progress):
        for t, cal in cals.items():
            cal.update(feeds[t])
    ranges = {t: cal.compute_range() for t, cal in cals.items()}
    # Concat: its inputs share the output's range (no requantization before it).
    for src, cat in an.shared.items():
        lo = min(ranges[src][0], ranges[cat][0])
        hi = max(ranges[src][1], ranges[cat][1])
        ranges[cat] = (lo, hi)
    for src, cat in an.shared.items():
        ranges[src] = ranges[cat]
    scheme = _scheme(bits, False, False, False, False)
    params, rows = {}, []
    for t in an.sites:
        lo, hi = ranges[t]
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # zero must be exact (padding, ReLU)
        if hi - lo <= 0:
            hi = lo + 1e-8  # an all-zero tensor: any scale reproduces it
        s, z = _core.quant_params(np.array([lo], np.float32), np.array([hi], np.float32), scheme)
        params[t] = (float(s[0]), int(z[0]))
        rows.append({"tensor": t, "min": float(cals[t].min_), "max": float(cals[t].max_),
                     "range_lo": float(lo), "range_hi": float(hi), "scale": float(s[0]),
                     "zero_point": int(z[0]), "shared_with": an.shared.get(t, "")})
    return params, rows


def _stream(model: Model, tensors: Sequence[str], data: CalibrationData, quantized,
            threads, desc: str, progress: bool):
    """Feeds plus the wanted tensors, batch by batch."""
    if not tensors:
        for feeds in data:
            yield dict(feeds)
        return
    for feeds, outs in capture(model, tensors, data, quantized=quantized, threads=threads,
                               desc=desc, progress=progress):
        merged = dict(feeds)
        merged.update(outs)
        yield merged


# ------------------------------------------------------------- QDQ graphs
def _qdq_model(fm: Model, an: _Analysis, done: Mapping[str, _QuantizedWeight],
               act_params: Mapping[str, Tuple[float, int]], final: bool = False) -> Model:
    """``fm`` with quantized weights ``done`` and activation quantizers ``act_params``."""
    inits = dict(fm.initializers)
    taken = set(inits) | {t for n in fm.nodes for t in n.inputs + n.outputs}
    taken |= {vi.name for vi in fm.inputs}

    def fresh(base: str) -> str:
        return unique_name(taken, base)

    graph_inputs = {vi.name for vi in fm.inputs}
    head: List[Node] = []
    reader_rename: Dict[str, str] = {}
    producer_rename: Dict[str, str] = {}
    act_nodes: Dict[str, List[Node]] = {}
    for t, (s, z) in act_params.items():
        sc, zp = fresh(f"{t}_scale"), fresh(f"{t}_zero_point")
        inits[sc] = np.array(s, np.float32)
        inits[zp] = np.array(z, np.uint8)
        q = fresh(f"{t}_quantized")
        if t in graph_inputs:
            dq = fresh(f"{t}_dequantized")
            reader_rename[t] = dq
            head += [Node("QuantizeLinear", fresh(f"{t}_QuantizeLinear"), [t, sc, zp], [q]),
                     Node("DequantizeLinear", fresh(f"{t}_DequantizeLinear"), [q, sc, zp], [dq])]
        else:
            src = fresh(f"{t}_float")
            producer_rename[t] = src
            act_nodes[t] = [Node("QuantizeLinear", fresh(f"{t}_QuantizeLinear"), [src, sc, zp], [q]),
                            Node("DequantizeLinear", fresh(f"{t}_DequantizeLinear"), [q, sc, zp], [t])]
    layer_of = {layer.name: layer for layer in an.layers}
    weight_bits: Dict[str, int] = {}
    nodes: List[Node] = []
    for n in fm.nodes:
        ins = [reader_rename.get(t, t) for t in n.inputs]
        if n.name in done:
            qw, layer = done[n.name], layer_of[n.name]
            wq, sc, zp = fresh(f"{layer.weight}_quantized"), fresh(f"{layer.weight}_scale"), \
                fresh(f"{layer.weight}_zero_point")
            inits[wq] = qw.q.astype(np.int8)
            inits[sc] = np.asarray(qw.scale, np.float32)
            inits[zp] = np.zeros(qw.scale.shape, np.int8)
            wdq = fresh(f"{layer.weight}_dequantized")
            attrs = {"axis": layer.axis} if qw.scale.ndim else {}
            head.append(Node("DequantizeLinear", fresh(f"{n.name}_weight_DequantizeLinear"),
                             [wq, sc, zp], [wdq], attrs))
            ins[1] = wdq
            weight_bits[wq] = qw.bits
            if qw.bias is not None:
                b = fresh(f"{n.name}_bias_corrected")
                inits[b] = qw.bias.astype(np.float32)
                ins = (ins + ["", ""])[:2] + [b] + ins[3:]  # input 2 is the bias of Conv/Gemm
        outs = [producer_rename.get(o, o) for o in n.outputs]
        nodes.append(Node(n.op, n.name, ins, outs, n.attrs, n.domain))
        for o in n.outputs:
            nodes.extend(act_nodes.get(o, []))
    meta = dict(fm.metadata)
    if final:
        meta["lpcv.weight_bits"] = json.dumps(weight_bits, sort_keys=True)
    from ..transforms import prune_unused
    return prune_unused(fm.with_changes(nodes=head + nodes, initializers=inits, metadata=meta))


# ------------------------------------------------------ per-layer statistics
def _conv_geometry(fm: Model, an: _Analysis, layer: _Layer) -> Dict[str, Any]:
    n = layer.node
    w = fm.initializers[layer.weight]
    x = an.infos[layer.x]
    kernel = list(w.shape[2:])
    strides = [int(s) for s in n.attrs.get("strides", [1, 1])]
    dil = [int(d) for d in n.attrs.get("dilations", [1, 1])]
    pads = conv_pads(n, x.shape[2:], kernel, strides, dil)
    return {"kernel_shape": kernel, "strides": strides, "pads": pads, "dilations": dil,
            "group": layer.groups}


def _rows(fm: Model, layer: _Layer, x: np.ndarray, geometry) -> np.ndarray:
    """Layer input -> (G, N, K) rows that the weight matrix multiplies."""
    if layer.node.op == "Conv":
        from ..layerdata import im2col
        return im2col(x, **geometry)
    return np.ascontiguousarray(x.reshape(-1, x.shape[-1]))[None]


def _layer_statistics(sim: Model, fm: Model, an: _Analysis, layer: _Layer,
                      data: CalibrationData, method: str,
                      max_rows: int, rng, threads, float_mean: bool = False) -> Dict[str, Any]:
    """Mean input rows (bias correction), Hessian (GPTQ) or a row sample (AdaRound).

    Inputs come from ``sim`` (preceding layers quantized); ``x``/``mean_float``
    from the float model on the same samples.
    """
    geometry = _conv_geometry(fm, an, layer) if layer.node.op == "Conv" else None
    quantized = "simulate" if any(n.op == "QuantizeLinear" or n.op == "DequantizeLinear"
                                  for n in sim.nodes) else None
    q_stream = _stream(sim, [layer.x] if layer.x not in {v.name for v in sim.inputs} else [],
                       data, quantized, threads, "", False)
    f_stream = _stream(fm, [layer.x] if layer.x not in {v.name for v in fm.inputs} else [],
                       data, None, threads, "", False) if method == "adaround" or float_mean \
        else None
    total, total_f, count = None, None, 0
    hess = None
    if method == "gptq":
        from ..layerdata import HessianAccumulator
        hess = HessianAccumulator("conv", **geometry) if geometry else HessianAccumulator("dense")
    samples_q: List[np.ndarray] = []
    samples_f: List[np.ndarray] = []
    per_batch = max(1, -(-max_rows // max(len(data), 1)))
    for i, fq in enumerate(q_stream):
        xq = _rows(fm, layer, fq[layer.x], geometry)
        s = xq.sum(axis=1).astype(np.float64)  # float32 within a batch, float64 across
        total = s if total is None else total + s
        count += xq.shape[1]
        if hess is not None:
            hess.update(fq[layer.x] if geometry else xq[0])
        if f_stream is not None:
            ff = next(f_stream)
            xf = _rows(fm, layer, ff[layer.x], geometry)
            s = xf.sum(axis=1).astype(np.float64)
            total_f = s if total_f is None else total_f + s
        if method == "adaround":
            idx = rng.choice(xq.shape[1], size=min(per_batch, xq.shape[1]), replace=False)
            samples_q.append(xq[:, idx])
            samples_f.append(xf[:, idx])
    out: Dict[str, Any] = {"mean": total / max(count, 1)}
    if total_f is not None:
        out["mean_float"] = total_f / max(count, 1)
    if hess is not None:
        out["hessian"] = hess.hessian_
    if samples_q:
        out["x_quantized"] = np.concatenate(samples_q, axis=1)
        out["x"] = np.concatenate(samples_f, axis=1)
    return out


def _round(layer: _Layer, flat: np.ndarray, scale: np.ndarray, bits: int, method: str,
           stats, iters: int, rng, bias: Optional[np.ndarray] = None) -> np.ndarray:
    if method == "nearest":
        return _round_nearest(flat, scale, bits)
    G = stats["mean"].shape[0]
    M = flat.shape[0] // G
    wm = flat.reshape(G, M, -1)
    sc = np.broadcast_to(scale if scale.size > 1 else scale.reshape(1), (G * M,)).reshape(G, M)
    if method == "gptq":
        from .gptq import gptq
        q = gptq(np.ascontiguousarray(wm), stats["hessian"], np.ascontiguousarray(sc), bits=bits)
    else:
        from .adaround import adaround
        q = adaround(np.ascontiguousarray(wm), stats["x"], np.ascontiguousarray(sc), bits=bits,
                     bias=bias, activation=layer.activation, x_quantized=stats["x_quantized"],
                     iters=iters, random_state=int(rng.integers(2 ** 31)))
    if isinstance(q, tuple):
        q = q[0]
    return np.asarray(q).reshape(flat.shape)


# ----------------------------------------------------------- bias correction
def _empirical_bias(fm: Model, layer: _Layer, w_hat: np.ndarray, mean_hat: np.ndarray,
                    w: np.ndarray, mean: np.ndarray) -> Optional[np.ndarray]:
    """b + W·E[x] − Ŵ·E[x̂] per output channel (Nagel et al. eq. 11.28–11.29).

    ``E[x̂]`` is the layer's mean input row with the preceding layers quantized
    and ``E[x]`` the float model's, so the quantized layer's mean output
    matches the float model's on the data, correcting the error the preceding
    layers pass on as well as this layer's own (ΔW·E[x] when x̂ = x).
    None for MatMul, which has no bias input to fold the correction into.
    """
    if layer.node.op == "MatMul":
        return None
    f64 = np.float64
    shift = (np.einsum("gmk,gk->gm", w_hat.astype(f64), mean_hat.astype(f64))
             - np.einsum("gmk,gk->gm", w.astype(f64), mean.astype(f64))).reshape(-1)
    return _bias(fm, layer, shift.size) - shift


def _bias(fm: Model, layer: _Layer, n: int) -> np.ndarray:
    if layer.bias is not None:
        return fm.initializers[layer.bias].astype(np.float64)
    return np.zeros(n)


def _bn_statistics(model: Model) -> Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray,
                                                     np.ndarray]]:
    """Per Conv/Gemm followed by a BatchNorm: BN output mean β, std |γ|, and the
    layer's folded weight row scale and bias (to map onto later rewrites)."""
    m = fold_constants(model)
    folded = fold_batchnorm(m)
    producer = {o: n for n in m.nodes for o in n.outputs}
    out = {}
    for n in m.nodes:
        if n.op != "BatchNormalization" or len(n.inputs) < 5 \
                or not all(t in m.initializers for t in n.inputs[1:3]):
            continue
        src = producer.get(n.inputs[0])
        if src is None or src.op not in ("Conv", "Gemm"):
            continue
        try:
            f = folded.node(src.name)
        except Exception:
            continue
        if f.outputs[0] != n.outputs[0] or len(f.inputs) < 3:
            continue  # the BN was not folded into this layer
        gamma = m.initializers[n.inputs[1]].astype(np.float64)
        beta = m.initializers[n.inputs[2]].astype(np.float64)
        w = folded.initializers[f.inputs[1]].astype(np.float64)
        b = folded.initializers[f.inputs[2]].astype(np.float64)
        out[src.name] = (beta, np.abs(gamma), _row_absmax(f, w), b)
    return out


def _row_absmax(node: Node, w: np.ndarray) -> np.ndarray:
    if node.op == "Conv" or node.attrs.get("transB", 0):
        return np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    return np.abs(w).max(axis=0)


def _normal_cdf(u: np.ndarray) -> np.ndarray:
    """Standard normal CDF, vectorized (erf by Abramowitz & Stegun 7.1.26,
    absolute error below 1.5e-7; NumPy has no erf)."""
    x = np.abs(u) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
                                                        + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(u) * erf)


def _expected_activation(beta: np.ndarray, std: np.ndarray, act: Optional[str]) -> np.ndarray:
    """E[f(z)] for z ~ N(β, std²) and f = identity, ReLU or ReLU6 (eq. 11.30)."""
    def g(mu: np.ndarray) -> np.ndarray:  # E[ReLU(z)] for z ~ N(mu, std²)
        sd = np.maximum(std, 1e-12)
        u = mu / sd
        pdf = np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
        return sd * pdf + mu * _normal_cdf(u)

    if act is None:
        return beta
    if act == "relu":
        return g(beta)
    return g(beta) - g(beta - 6.0)


def _analytic_bias(fm: Model, an: _Analysis, layer: _Layer, dw: np.ndarray,
                   bn_stats) -> Optional[np.ndarray]:
    """Bias correction with E[x] from the producing layer's BatchNorm, or None.

    The BN fixes the distribution of the producer's pre-activation, N(β, γ²).
    Equalization may since have rescaled the producer's channels by ``a`` and
    shifted them by ``d`` (bias absorption); both are read off the weights, so
    the pre-activation here is N(a·β + d, (a·γ)²).
    """
    t = layer.x
    spatial = 1
    # Between the producer and this layer: its activation, then ops that keep
    # channel means (GlobalAveragePool, Flatten of a 1x1 map). MaxPool does not.
    act = None
    while True:
        p = an.producer.get(t)
        if p is None:
            return None
        if p.op in ("GlobalAveragePool", "Flatten", "Reshape", "Identity", "Dropout"):
            if p.op in ("Flatten", "Reshape"):
                shape = an.infos[p.inputs[0]].shape
                spatial = int(np.prod(shape[2:])) if len(shape) > 2 else 1
            t = p.inputs[0]
        elif p.op in ("Relu", "Clip") and act is None:
            act = _activation_name(p, fm)
            if act not in ("relu", "relu6"):
                return None
            t = p.inputs[0]
        elif p.name in bn_stats and p.op in ("Conv", "Gemm") and len(p.inputs) > 2 \
                and p.inputs[2] in fm.initializers:
            break
        else:
            return None
    beta, std, w_absmax, b_folded = bn_stats[p.name]
    w = fm.initializers[p.inputs[1]].astype(np.float64)
    a = _row_absmax(p, w) / np.maximum(w_absmax, 1e-30)
    d = fm.initializers[p.inputs[2]].astype(np.float64) - a * b_folded
    ex = _expected_activation(a * beta + d, a * std, act)
    G, M, K = dw.shape
    if layer.node.op == "Conv":
        cin_g = ex.size // G
        if cin_g * G != ex.size or K % cin_g:
            return None
        mean_rows = np.repeat(ex.reshape(G, cin_g), K // cin_g, axis=1)
    else:
        mean_rows = np.repeat(ex, spatial)[None]
        if mean_rows.shape[1] != K:
            return None
    zero = np.zeros_like(dw)
    return _empirical_bias(fm, layer, dw, mean_rows, zero, mean_rows)  # − ΔW·E[x]
