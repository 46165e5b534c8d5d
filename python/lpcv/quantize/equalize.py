"""Cross-layer equalization (CLE) with high-bias absorption.

Per-tensor weight quantization loses precision when the output channels of a
layer have very different ranges (typical after BatchNorm folding, and worst in
depthwise layers). ReLU is positively scaling equivariant,
``relu(s·x) = s·relu(x)`` for ``s > 0``, so for two consecutive layers
``y = W2·relu(W1·x + b1) + b2`` the output channel ``i`` of layer 1 can be
divided by ``s_i`` and the input channel ``i`` of layer 2 multiplied by it
without changing the function (Nagel et al., "Data-Free Quantization Through
Weight Equalization and Bias Correction", 2019)::

    W̃1 = S⁻¹·W1,  b̃1 = S⁻¹·b1,  W̃2 = W2·S,  S = diag(s)

With ``r1_i`` the range of output channel ``i`` of ``W1`` and ``r2_i`` the
range of input channel ``i`` of ``W2``, the scale
``s_i = (1 / r2_i)·√(r1_i·r2_i)`` makes both ranges ``√(r1_i·r2_i)``. Here the
range of a channel is its largest absolute weight (what a symmetric quantizer
sees).

Which layers are paired
-----------------------
A pair is ``Conv → [act] → Conv`` or ``Gemm → [act] → Gemm`` (after BatchNorm
folding) where ``act`` is ``Relu``, ``LeakyRelu``, ``Clip`` with lower bound 0
(ReLU6, see below) or nothing, and where the tensors in between have exactly one
reader and are no graph output. So a residual ``Add``, a concatenation or a
branch is never crossed: a convolution whose output feeds an ``Add`` is never
scaled on its output side. Layer 2 may be a grouped or depthwise convolution:
the weights of its input channel ``i`` are the slice of its group that reads
``i``. A depthwise layer's filter ``i`` is both its input and its output
channel ``i``, so in a pointwise → depthwise → pointwise triple the two pairs
share those weights; the pass sweeps over all pairs until the scales stop
changing (``iterations``, ``tol``), and the ranges are recomputed from the
current weights at every step.

ReLU6
-----
``Clip(0, 6)`` is not scaling equivariant (the bound 6 does not scale). With
``relu6="replace"`` (the default, what AIMET does) every ReLU6 *between two
paired layers* is replaced by ``Relu`` before equalizing; this changes the
float function a little (the report's ``replaced_relu6`` lists the nodes; on
the bundled fmnist-mobilenet reference model, replacing its 14 inner ReLU6
changes the accuracy from 93.05 % to 92.95 % on the 2,000-image sample and from
92.41 % to 92.44 % on the full test split). ReLU6 nodes that are not between
two paired layers are kept. With ``relu6="skip"`` pairs joined by a ReLU6 are not equalized, and the
model is unchanged in function.

High-bias absorption
--------------------
After scaling, a channel of layer 1 may carry a large bias. Where the
activation is ``Relu`` and the pre-activation ``z_i`` is at least ``c_i ≥ 0``
for (almost) all inputs, ``relu(z − c) = relu(z) − c``, so ``c`` moves into
layer 2: ``b̃1 = b1 − c`` and ``b̃2 = b2 + W2·c`` (for a convolution, ``W2·c``
sums over the kernel's taps). ``c_i = max(0, min z_i)``:

- from ``calib`` (images) when given: the minimum over the data of the
  pre-activation, so the model is unchanged on the calibration data;
- otherwise from the BatchNorm that followed layer 1 (before folding): its
  output has mean ``β_i`` and standard deviation ``|γ_i|``, and
  ``c_i = max(0, β_i − 3·|γ_i|)`` (data-free; holds for ~99.87 % of Gaussian
  inputs).

Absorption is only exact where layer 2 has no zero padding (a padded border
sees zeros, not ``c``), so it is applied only when layer 2 has no padding
(1×1 convolutions, unpadded convolutions, Gemm); the report says why a pair
was not absorbed. Absorption leaves every pre-activation of layer 2 unchanged
(``W2·(h − c) + b2 + W2·c``), so in chained pairs each bound is computed once,
on the equalized model.

Examples
--------
>>> import lpcv
>>> from lpcv.quantize.equalize import cross_layer_equalization
>>> model = lpcv.zoo.reference("fmnist-mobilenet")
>>> eq, report = cross_layer_equalization(model)
>>> len(report), len(report.replaced_relu6), report.converged
(15, 14, True)
>>> report[0]["activation"], report[0]["range_ratio_2_before"] > report[0]["range_ratio_2_after"]
('ReLU6→Relu', True)
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .._report import Table
from ..exceptions import ShapeError, ValidationError
from ..graph import Model, Node, ValueInfo
from ..transforms import fold_batchnorm, prune_unused

__all__ = ["cross_layer_equalization", "EqualizationReport"]

_RELU6_CHOICES = ("replace", "skip")
_ACTIVATIONS = ("Relu", "LeakyRelu", "Clip")


class EqualizationReport(Table):
    """The report of :func:`cross_layer_equalization`: one row per equalized pair.

    A :class:`lpcv._report.Table` (``to_pandas``, ``to_markdown``,
    ``_repr_html_``) with these extra attributes:

    Attributes
    ----------
    iterations : int
        Sweeps over all pairs that were run.
    converged : bool
        Whether the largest scale change of the last sweep was below ``tol``.
    replaced_relu6 : list of str
        Names of the ``Clip`` (ReLU6) nodes replaced by ``Relu``.
    scales : dict of str to ndarray
        For each pair (keyed by its layer-1 node name), the total per-channel
        scale ``s`` applied (layer-1 output channels divided by it, layer-2
        input channels multiplied by it).
    absorbed : dict of str to ndarray
        For each pair whose high bias was absorbed, the vector ``c``.
    """

    def __init__(self, rows, columns=None, title: str = "", *, iterations: int = 0,
                 converged: bool = True, replaced_relu6: Sequence[str] = (),
                 scales: Optional[Dict[str, np.ndarray]] = None,
                 absorbed: Optional[Dict[str, np.ndarray]] = None):
        super().__init__(rows, columns, title)
        self.iterations = int(iterations)
        self.converged = bool(converged)
        self.replaced_relu6 = list(replaced_relu6)
        self.scales = dict(scales or {})
        self.absorbed = dict(absorbed or {})


# --------------------------------------------------------------------- layers
@dataclass
class _Layer:
    """A Conv or Gemm with a working float64 copy of its weights."""

    node: Node
    w: np.ndarray                 # float64 working copy
    b: np.ndarray                 # float64 working copy (zeros if absent)
    w_dtype: np.dtype
    has_bias: bool
    group: int = 1                # Conv groups
    trans_b: bool = False         # Gemm
    out_scale: Optional[np.ndarray] = None   # total scale of the output channels

    @property
    def is_conv(self) -> bool:
        return self.node.op == "Conv"

    @property
    def out_channels(self) -> int:
        if self.is_conv:
            return self.w.shape[0]
        return self.w.shape[0] if self.trans_b else self.w.shape[1]

    @property
    def in_channels(self) -> int:
        if self.is_conv:
            return self.w.shape[1] * self.group
        return self.w.shape[1] if self.trans_b else self.w.shape[0]

    def out_ranges(self) -> np.ndarray:
        a = np.abs(self.w)
        if self.is_conv:
            return a.reshape(a.shape[0], -1).max(axis=1)
        return a.max(axis=1) if self.trans_b else a.max(axis=0)

    def in_ranges(self) -> np.ndarray:
        a = np.abs(self.w)
        if self.is_conv:
            g = self.group
            cout, cin_g = a.shape[0], a.shape[1]
            return a.reshape(g, cout // g, cin_g, -1).max(axis=(1, 3)).reshape(-1)
        return a.max(axis=0) if self.trans_b else a.max(axis=1)

    def divide_outputs(self, s: np.ndarray) -> None:
        if self.is_conv:
            self.w = self.w / s.reshape(-1, *([1] * (self.w.ndim - 1)))
        elif self.trans_b:
            self.w = self.w / s[:, None]
        else:
            self.w = self.w / s[None, :]
        self.b = self.b / s

    def multiply_inputs(self, s: np.ndarray) -> None:
        if self.is_conv:
            g = self.group
            cout, cin_g = self.w.shape[0], self.w.shape[1]
            w = self.w.reshape(g, cout // g, cin_g, -1) * s.reshape(g, 1, cin_g, 1)
            self.w = w.reshape(self.w.shape)
        elif self.trans_b:
            self.w = self.w * s[None, :]
        else:
            self.w = self.w * s[:, None]

    def input_shift(self, c: np.ndarray) -> np.ndarray:
        """``W·c`` per output channel: the change of the output when the input
        is shifted by the per-channel constant ``c`` (no padding)."""
        if self.is_conv:
            g = self.group
            cout, cin_g = self.w.shape[0], self.w.shape[1]
            ws = self.w.reshape(g, cout // g, cin_g, -1).sum(axis=3)
            return np.einsum("goi,gi->go", ws, c.reshape(g, cin_g)).reshape(-1)
        return self.w @ c if self.trans_b else c @ self.w

    def padded(self, model: Model) -> bool:
        """Whether the layer reads zero padding (then absorption is inexact)."""
        if not self.is_conv:
            return False
        kernel = self.w.shape[2:]
        auto = self.node.attrs.get("auto_pad", "NOTSET")
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            return any(k != 1 for k in kernel)
        if auto == "VALID":
            return False
        return any(int(p) != 0 for p in self.node.attrs.get("pads", []))


def _layer(model: Model, node: Node, uses: Mapping[str, int]) -> Optional[_Layer]:
    """``node`` as an equalizable layer, or None."""
    if node.domain not in ("", "ai.onnx") or node.op not in ("Conv", "Gemm"):
        return None
    inits = model.initializers
    if len(node.inputs) < 2 or node.inputs[1] not in inits or uses.get(node.inputs[1], 0) != 1:
        return None
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    if has_bias and (node.inputs[2] not in inits or uses.get(node.inputs[2], 0) != 1):
        return None
    w = inits[node.inputs[1]]
    if w.dtype.kind != "f" or node.inputs[0] == node.inputs[1]:
        return None
    if node.op == "Conv":
        group = int(node.attrs.get("group", 1))
        if w.ndim < 3 or group < 1 or w.shape[0] % group:
            return None
        out_ch, trans_b = w.shape[0], False
    else:
        if (w.ndim != 2 or node.attrs.get("transA", 0) or node.attrs.get("alpha", 1.0) != 1.0
                or node.attrs.get("beta", 1.0) != 1.0):
            return None
        group, trans_b = 1, bool(node.attrs.get("transB", 0))
        out_ch = w.shape[0] if trans_b else w.shape[1]
    if has_bias:
        b = inits[node.inputs[2]]
        if b.shape != (out_ch,) or b.dtype.kind != "f":
            return None
        b = b.astype(np.float64)
    else:
        b = np.zeros(out_ch)
    return _Layer(node, w.astype(np.float64), b, w.dtype, has_bias, group, trans_b,
                  np.ones(out_ch))


@dataclass
class _Pair:
    l1: _Layer
    l2: _Layer
    act: Optional[Node]         # the activation node between them, or None
    act_kind: str               # "Relu", "LeakyRelu", "ReLU6→Relu", "none"
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))


def _clip_bounds(model: Model, node: Node) -> Optional[Tuple[float, float]]:
    """(min, max) of a Clip whose bounds are constants, or None."""
    if model.opset >= 11:
        vals = []
        for i in (1, 2):
            if i >= len(node.inputs) or not node.inputs[i]:
                vals.append(-np.inf if i == 1 else np.inf)
            elif node.inputs[i] in model.initializers:
                v = np.asarray(model.initializers[node.inputs[i]]).ravel()
                if v.size != 1:
                    return None
                vals.append(float(v[0]))
            else:
                return None
        return vals[0], vals[1]
    return float(node.attrs.get("min", -np.inf)), float(node.attrs.get("max", np.inf))


def _find_pairs(model: Model, relu6: str) -> List[_Pair]:
    uses: Dict[str, int] = {}
    readers: Dict[str, List[Node]] = {}
    for n in model.nodes:
        for t in n.inputs:
            if t:
                uses[t] = uses.get(t, 0) + 1
        for t in set(n.inputs):
            if t:
                readers.setdefault(t, []).append(n)
    graph_outputs = set(model.output_names)

    def sole_reader(t: str) -> Optional[Node]:
        r = readers.get(t, [])
        return r[0] if len(r) == 1 and uses.get(t, 0) == 1 and t not in graph_outputs else None

    layers: Dict[str, _Layer] = {}

    def get_layer(node: Node) -> Optional[_Layer]:
        if node.name not in layers:
            lay = _layer(model, node, uses)
            if lay is None:
                return None
            layers[node.name] = lay
        return layers[node.name]

    pairs: List[_Pair] = []
    for node in model.nodes:
        if node.op not in ("Conv", "Gemm") or node.domain not in ("", "ai.onnx"):
            continue
        r = sole_reader(node.outputs[0]) if node.outputs else None
        if r is None:
            continue
        act, kind = None, "none"
        if r.op in _ACTIVATIONS and r.domain in ("", "ai.onnx"):
            if r.op == "Clip":
                bounds = _clip_bounds(model, r)
                if bounds is None or bounds[0] != 0.0 or not bounds[1] > 0.0:
                    continue
                if np.isinf(bounds[1]):
                    kind = "Relu"              # Clip(0, inf) is a ReLU
                elif relu6 == "replace":
                    kind = "ReLU6→Relu"
                else:
                    continue
            else:
                kind = r.op
            act = r
            r = sole_reader(r.outputs[0]) if r.outputs else None
            if r is None:
                continue
        if r.op not in ("Conv", "Gemm") or r.op != node.op or not r.inputs \
                or r.inputs[0] != (act.outputs[0] if act else node.outputs[0]):
            continue
        l1, l2 = get_layer(node), get_layer(r)
        if l1 is None or l2 is None or l1.out_channels != l2.in_channels:
            continue
        pairs.append(_Pair(l1, l2, act, kind, np.ones(l1.out_channels)))
    return pairs


# ----------------------------------------------------------------- validation
def _check_model(model: Any) -> Model:
    if not isinstance(model, Model):
        raise ValidationError(f"model must be an lpcv.Model, got {type(model).__name__}")
    return model


def _check_int(v: Any, name: str, lo: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise ValidationError(f"{name} must be an int >= {lo}, got {type(v).__name__} {v!r}")
    if int(v) < lo:
        raise ValidationError(f"{name} must be an int >= {lo}, got {int(v)}")
    return int(v)


def _check_tol(v: Any) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) \
            or not np.isfinite(float(v)) or float(v) <= 0:
        raise ValidationError(f"tol must be a positive finite number, got {v!r}")
    return float(v)


def _check_calib(calib: Any, model: Model) -> Optional[np.ndarray]:
    if calib is None:
        return None
    if len(model.inputs) != 1:
        raise ValidationError(f"calib: data-driven bias absorption needs a model with one input, "
                              f"this one has {len(model.inputs)} ({model.input_names})")
    if not isinstance(calib, np.ndarray):
        raise ValidationError(f"calib must be a numpy array of input images (N×C×H×W float32), "
                              f"got {type(calib).__name__}")
    if calib.dtype.kind != "f":
        raise ValidationError(f"calib must be a floating-point array, got dtype {calib.dtype}")
    want = model.inputs[0].shape
    if calib.ndim != len(want):
        raise ShapeError(f"calib must have rank {len(want)} (model input "
                         f"{model.input_names[0]!r} {tuple(want)}), got shape {calib.shape}")
    if calib.shape[0] == 0:
        raise ShapeError(f"calib is empty (shape {calib.shape})")
    for i, (d, w) in enumerate(zip(calib.shape, want)):
        if i > 0 and isinstance(w, (int, np.integer)) and d != w:
            raise ShapeError(f"calib has shape {calib.shape}, but the model input "
                             f"{model.input_names[0]!r} has shape {tuple(want)}")
    if not np.isfinite(calib).all():
        raise ValidationError("calib contains NaN or Inf values")
    return np.ascontiguousarray(calib, dtype=np.float32)


# --------------------------------------------------------------------- helpers
def _range_ratio(r: np.ndarray) -> float:
    """max/min over the channels with a non-zero range (nan if none)."""
    nz = r[r > 0]
    return float(nz.max() / nz.min()) if nz.size else float("nan")


def _bn_statistics(model: Model) -> Dict[str, Tuple[str, np.ndarray, np.ndarray]]:
    """For each Conv/Gemm followed by a BatchNormalization: the BN's output mean
    β and standard deviation |γ| per channel (what data-free absorption needs)."""
    producer = {o: n for n in model.nodes for o in n.outputs}
    stats: Dict[str, Tuple[str, np.ndarray, np.ndarray]] = {}
    for bn in model.nodes:
        if bn.op != "BatchNormalization" or len(bn.inputs) < 3:
            continue
        src = producer.get(bn.inputs[0])
        if src is None or src.op not in ("Conv", "Gemm"):
            continue
        if bn.inputs[1] in model.initializers and bn.inputs[2] in model.initializers:
            gamma = model.initializers[bn.inputs[1]].astype(np.float64)
            beta = model.initializers[bn.inputs[2]].astype(np.float64)
            stats[src.name] = (bn.outputs[0], beta, np.abs(gamma))
    return stats


def _preactivation_minima(model: Model, tensors: Sequence[str], calib: np.ndarray,
                          batch_size: int) -> Dict[str, np.ndarray]:
    """Per-channel minimum over ``calib`` of each tensor in ``tensors``."""
    from ..runtime import Session

    infos = model.infer_shapes(batch_size=1)
    batch_dim = model.inputs[0].shape[0] if model.inputs[0].shape else 1
    outs = [ValueInfo(t, (batch_dim,) + tuple(infos[t].shape[1:]), np.float32) for t in tensors]
    probe = model.with_changes(outputs=outs)
    fixed = isinstance(batch_dim, (int, np.integer))
    bs = int(batch_dim) if fixed else min(batch_size, calib.shape[0])
    sess = Session(probe, batch_size=bs)
    mins: Dict[str, np.ndarray] = {}
    name = model.input_names[0]
    for start in range(0, calib.shape[0], bs):
        chunk = calib[start:start + bs]
        if fixed and chunk.shape[0] < bs:   # a fixed batch: repeat images (min unchanged)
            chunk = chunk[np.arange(bs) % chunk.shape[0]]
        res = sess.run({name: chunk})
        for t in tensors:
            a = res[t]
            axes = (0,) + tuple(range(2, a.ndim))
            m = a.min(axis=axes).astype(np.float64)
            mins[t] = m if t not in mins else np.minimum(mins[t], m)
    return mins


# ------------------------------------------------------------------------ pass
def cross_layer_equalization(model: Model, *, iterations: int = 100, tol: float = 1e-6,
                             absorb_bias: bool = True, calib: Optional[np.ndarray] = None,
                             relu6: str = "replace", batch_size: int = 64
                             ) -> Tuple[Model, EqualizationReport]:
    """Cross-layer equalization with high-bias absorption (model pass).

    Folds BatchNormalization into the preceding Conv/Gemm, then equalizes the
    per-channel weight ranges of every pair of consecutive layers joined by a
    ReLU-like activation (or none) and by nothing else (see the module
    documentation for the rules), and optionally absorbs high biases into the
    next layer. The float function is preserved, except for the ReLU6 → ReLU
    replacement (``relu6="replace"``) and data-free bias absorption on inputs
    where a pre-activation falls below the BN-estimated bound.

    Parameters
    ----------
    model : Model
        The float model; it is not modified.
    iterations : int, default 100
        Maximum number of sweeps over all pairs (chains of pairs such as
        pointwise → depthwise → pointwise need several sweeps to converge).
    tol : float, default 1e-6
        Stop when the largest ``|log s_i|`` of a sweep is below ``tol``.
    absorb_bias : bool, default True
        Absorb high biases (only through ``Relu`` and into a layer without
        zero padding, where it is exact).
    calib : ndarray, optional
        Calibration images (``N×C×H×W`` float) for data-driven absorption:
        ``c_i`` is the minimum pre-activation over this data. Without it, ``c``
        comes from the folded BatchNorm statistics (``β − 3|γ|``); pairs whose
        first layer had no BatchNorm then absorb nothing.
    relu6 : {"replace", "skip"}, default "replace"
        ``"replace"``: ReLU6 (``Clip(0, 6)``) between two paired layers becomes
        ``Relu`` (not scale-equivariant otherwise; changes the float model
        slightly); ``"skip"``: pairs joined by a ReLU6 are left alone.
    batch_size : int, default 64
        Batch size for running ``calib`` through the model (a model whose
        input has a fixed batch dimension runs with that one).

    Returns
    -------
    model : Model
        The BN-folded, equalized model.
    report : EqualizationReport
        One row per pair: layer names, activation, channels, range ratio
        (max/min over channels of the per-channel max |w|) of layer 1's output
        channels and layer 2's input channels before and after, the geometric
        mean of the scales, the absorbed bias norm ``‖c‖₂`` and where ``c``
        came from. Attributes ``iterations``, ``converged``,
        ``replaced_relu6``, ``scales``, ``absorbed``.

    Raises
    ------
    ValidationError
        If ``model`` is not an :class:`lpcv.Model`, or ``iterations``, ``tol``,
        ``relu6``, ``batch_size``, ``absorb_bias`` or ``calib`` is invalid.
    ShapeError
        If ``calib`` does not match the model input's shape.

    Examples
    --------
    A two-layer model whose first layer has one channel 100× larger than the
    other; after CLE both layers have equal per-channel ranges:

    >>> import numpy as np
    >>> from lpcv.graph import Model, Node, ValueInfo
    >>> from lpcv.quantize.equalize import cross_layer_equalization
    >>> w1 = np.array([[1.0, 0.5], [100.0, -50.0]], np.float32)   # (out, in), transB=1
    >>> w2 = np.array([[1.0, 1.0]], np.float32)
    >>> m = Model([Node("Gemm", "fc1", ["x", "w1"], ["h"], {"transB": 1}),
    ...            Node("Relu", "relu", ["h"], ["a"]),
    ...            Node("Gemm", "fc2", ["a", "w2"], ["y"], {"transB": 1})],
    ...           [ValueInfo("x", ("N", 2))], [ValueInfo("y", ("N", 1))],
    ...           {"w1": w1, "w2": w2})
    >>> eq, rep = cross_layer_equalization(m)
    >>> np.abs(eq.initializers["w1"]).max(axis=1)        # √(r1·r2) = √1, √100
    array([ 1., 10.], dtype=float32)
    >>> np.abs(eq.initializers["w2"]).max(axis=0)
    array([ 1., 10.], dtype=float32)
    >>> rep[0]["range_ratio_1_before"], rep[0]["range_ratio_1_after"]
    (100.0, 10.0)
    """
    model = _check_model(model)
    iterations = _check_int(iterations, "iterations", 1)
    tol = _check_tol(tol)
    if not isinstance(absorb_bias, (bool, np.bool_)):
        raise ValidationError(f"absorb_bias must be True or False, got {absorb_bias!r}")
    if not isinstance(relu6, str) or relu6 not in _RELU6_CHOICES:
        raise ValidationError(f"relu6 must be one of {', '.join(map(repr, _RELU6_CHOICES))}, "
                              f"got {relu6!r}")
    batch_size = _check_int(batch_size, "batch_size", 1)
    calib = _check_calib(calib, model)

    bn_stats = _bn_statistics(model)
    folded = fold_batchnorm(model)
    # BN statistics only for layers whose BN really was folded into them.
    folded_out = {n.name: n.outputs[0] for n in folded.nodes}
    bn_stats = {k: (beta, gamma) for k, (out, beta, gamma) in bn_stats.items()
                if folded_out.get(k) == out
                and all(n.op != "BatchNormalization" or n.outputs[0] != out for n in folded.nodes)}

    pairs = _find_pairs(folded, relu6)
    before = [(p.l1.out_ranges(), p.l2.in_ranges()) for p in pairs]

    # ---- equalize: sweep over the pairs until the scales stop changing.
    sweeps, converged = 0, not pairs
    for sweeps in range(1, iterations + 1) if pairs else ():
        worst = 0.0
        for p in pairs:
            r1, r2 = p.l1.out_ranges(), p.l2.in_ranges()
            ok = (r1 > 0) & (r2 > 0)
            s = np.ones_like(r1)
            s[ok] = np.sqrt(r1[ok] / r2[ok])     # = (1/r2)·√(r1·r2)
            p.l1.divide_outputs(s)
            p.l2.multiply_inputs(s)
            p.l1.out_scale = p.l1.out_scale * s
            p.scale = p.scale * s
            worst = max(worst, float(np.abs(np.log(s)).max()))
        if worst < tol:
            converged = True
            break

    # ---- ReLU6 -> Relu
    replace_act: Dict[str, Node] = {}
    for p in pairs:
        if p.act_kind == "ReLU6→Relu":
            a = p.act
            replace_act[a.name] = Node("Relu", a.name, [a.inputs[0]], [a.outputs[0]], {}, a.domain)
    nodes = [replace_act.get(n.name, n) for n in folded.nodes]

    def build(nodes_: List[Node]) -> Tuple[List[Node], Dict[str, np.ndarray]]:
        inits = dict(folded.initializers)
        out_nodes = list(nodes_)
        index = {n.name: i for i, n in enumerate(out_nodes)}
        done = set()
        for p in pairs:
            for lay in (p.l1, p.l2):
                if lay.node.name in done:
                    continue
                done.add(lay.node.name)
                n = lay.node
                inits[n.inputs[1]] = lay.w.astype(lay.w_dtype)
                if lay.has_bias:
                    inits[n.inputs[2]] = lay.b.astype(inits[n.inputs[2]].dtype)
                elif np.any(lay.b != 0):
                    bname, k = n.name + ".bias_cle", 1
                    while bname in inits:
                        bname, k = f"{n.name}.bias_cle_{k}", k + 1
                    inits[bname] = lay.b.astype(lay.w_dtype)
                    ins = list(n.inputs[:2]) + [bname]
                    out_nodes[index[n.name]] = Node(n.op, n.name, ins, n.outputs, n.attrs, n.domain)
        return out_nodes, inits

    # ---- high-bias absorption
    reasons: Dict[str, str] = {}
    absorbed: Dict[str, np.ndarray] = {}
    if absorb_bias and pairs:
        candidates = []
        for p in pairs:
            key = p.l1.node.name
            if p.act_kind not in ("Relu", "ReLU6→Relu"):
                reasons[key] = f"no ({p.act_kind})"
            elif p.l2.padded(folded):
                reasons[key] = "no (layer 2 padded)"
            elif calib is None and key not in bn_stats:
                reasons[key] = "no (no BN, no calib)"
            else:
                candidates.append(p)
        bound: Dict[str, np.ndarray] = {}   # lower bound of each layer's pre-activation
        if calib is not None and candidates:
            cle_nodes, cle_inits = build(nodes)
            current = folded.with_changes(nodes=cle_nodes, initializers=cle_inits)
            tensors = [p.l1.node.outputs[0] for p in candidates]
            mins = _preactivation_minima(current, tensors, calib, batch_size)
            for p in candidates:
                bound[p.l1.node.name] = mins[p.l1.node.outputs[0]]
        else:
            for name, (beta, gamma) in bn_stats.items():
                lay = next((p.l1 for p in pairs if p.l1.node.name == name), None)
                if lay is not None:
                    bound[name] = (beta - 3.0 * gamma) / lay.out_scale
        for p in candidates:
            key = p.l1.node.name
            c = np.maximum(bound[key], 0.0)
            reasons[key] = "data" if calib is not None else "bn"
            if not np.any(c > 0):
                continue
            p.l1.b = p.l1.b - c
            delta = p.l2.input_shift(c)
            p.l2.b = p.l2.b + delta    # layer 2's pre-activation is unchanged
            absorbed[key] = c
    elif pairs:
        reasons = {p.l1.node.name: "off" for p in pairs}

    out_nodes, inits = build(nodes)
    result = prune_unused(folded.with_changes(nodes=out_nodes, initializers=inits))

    rows = []
    for p, (r1b, r2b) in zip(pairs, before):
        key = p.l1.node.name
        c = absorbed.get(key)
        rows.append({
            "layer_1": key, "layer_2": p.l2.node.name, "activation": p.act_kind,
            "channels": int(p.l1.out_channels),
            "range_ratio_1_before": _range_ratio(r1b),
            "range_ratio_1_after": _range_ratio(p.l1.out_ranges()),
            "range_ratio_2_before": _range_ratio(r2b),
            "range_ratio_2_after": _range_ratio(p.l2.in_ranges()),
            "mean_scale": float(np.exp(np.log(p.scale).mean())),
            "absorbed_bias_norm": float(np.linalg.norm(c)) if c is not None else 0.0,
            "absorption": reasons.get(key, "off"),
        })
    title = (f"Cross-layer equalization: {len(pairs)} pairs, {sweeps} sweeps "
             f"({'converged' if converged else 'not converged'}), "
             f"{len(replace_act)} ReLU6 replaced by ReLU, {len(absorbed)} biases absorbed")
    columns = ["layer_1", "layer_2", "activation", "channels", "range_ratio_1_before",
               "range_ratio_1_after", "range_ratio_2_before", "range_ratio_2_after",
               "mean_scale", "absorbed_bias_norm", "absorption"]
    report = EqualizationReport(rows, columns, title, iterations=sweeps, converged=converged,
                                replaced_relu6=list(replace_act),
                                scales={p.l1.node.name: p.scale.copy() for p in pairs},
                                absorbed=absorbed)
    return result, report
