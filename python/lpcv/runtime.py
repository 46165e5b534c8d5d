"""Run models for real on oneDNN: compile once, execute many times.

:class:`Session` lowers a :class:`~lpcv.graph.Model` (constant folding,
BatchNorm folding, fusion of activations and residual additions as oneDNN
post-ops) and hands it to the C++ plan compiler in ``lpcv._core``.

Lowered ops understood by the C++ core (``cpp/src/runtime/plan.cpp``):
``Conv``, ``Gemm``, ``MatMul`` (ONNX attributes, explicit ``pads``, plus the
post-op lists ``post_algs``/``post_alpha``/``post_beta``), ``Eltwise``
(``alg`` code), ``Binary`` (``kind``), ``Pool`` (``mode``), ``BatchNormalization``,
``Softmax``, ``Concat``, ``Split``, ``Transpose``, ``View`` (reshape without
copying), ``Copy`` and ``Pad``; for quantized (QDQ) models also ``Quantize`` /
``Dequantize`` (ONNX QuantizeLinear / DequantizeLinear: ``scales``,
``zero_points``, ``axis`` = -1 for per-tensor) and the integer ops ``QConv``,
``QMatMul`` (int8 weights with ``w_scales``, ``src_scale``/``src_zp``, optional
``dst_scale``/``dst_zp`` for an integer output, post-ops where a sum carries
the residual's scale and zero point) and ``QAdd`` (``a_``/``b_``/``dst_``
scales and zero points, activation bounds ``lo``/``hi``).

Quantized models (``Session(quantized=...)``): a ``DequantizeLinear`` of an
initializer is folded to a float constant; ``QuantizeLinear`` and
``DequantizeLinear`` on activations run as kernels with the ONNX arithmetic
(round half to even, saturation), so ``quantized="simulate"`` reproduces
onnxruntime's literal QDQ execution. ``quantized="int8"`` (the default) first
moves dequantization past ``MaxPool``/``Reshape``/``Flatten`` (exact: it is
monotone and element-wise), drops ``QuantizeLinear(DequantizeLinear(q))``
pairs with equal parameters, then lowers
``DQ(x) → Conv/Gemm/MatMul(DQ(w int8)) [→ Add(DQ(r))] [→ activations] → Q`` to
one oneDNN int8 primitive and ``Add(DQ(a), DQ(b)) [→ Relu/Clip] → Q`` to an
exact integer kernel. Anything else, or a pattern oneDNN refuses, is
simulated (:attr:`Session.int8_fallbacks` lists the refused ones).

Examples
--------
>>> import lpcv
>>> model = lpcv.zoo.reference("fmnist-lenet5")
>>> images, labels = lpcv.data.load_sample(8)
>>> sess = lpcv.Session(model, batch_size=8)
>>> logits = sess.run({"input": images})["logits"]
>>> logits.shape
(8, 10)
"""
from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from . import _core
from ._report import Table
from ._shapes import conv_pads, infer_shapes
from .exceptions import (BackendError, ModelError, ShapeError, UnsupportedError, UnsupportedOpError,
                         ValidationError)
from .graph import Model, Node, TensorInfo, unique_name
from .transforms import fold_batchnorm, fold_constants, prune_unused, remove_identities

__all__ = ["Session", "Timing", "SUPPORTED_OPS"]

# Eltwise codes shared with plan.cpp (eltwise_alg()).
_RELU, _CLIP, _LOGISTIC, _TANH, _HARDSIGMOID, _HARDSWISH, _LINEAR, _SUM, _ADD_TENSOR, _SWISH = range(10)

_ACTIVATIONS = ("Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish")
_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}
_VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")
_QDQ = ("QuantizeLinear", "DequantizeLinear")
#: Values of ``Session(quantized=...)``.
QUANTIZED_MODES = ("int8", "simulate")
# Lowered ops that run integer oneDNN kernels.
_INT8_OPS = ("QConv", "QMatMul", "QAdd")
# Integer element types of quantized tensors the runtime holds.
_QTYPES = (np.dtype(np.uint8), np.dtype(np.int8))

#: ONNX ops the runtime executes (after constant folding of shape arithmetic).
SUPPORTED_OPS = tuple(sorted(
    ("Conv", "Gemm", "MatMul", "BatchNormalization", "MaxPool", "AveragePool",
     "GlobalAveragePool", "GlobalMaxPool", "Softmax", "LogSoftmax", "Flatten", "Reshape",
     "Transpose", "Concat", "Split", "Pad", "Identity", "Dropout", "Squeeze", "Unsqueeze",
     "Constant") + _ACTIVATIONS + tuple(_BINARY) + _QDQ))


@dataclass(frozen=True)
class _QParams:
    """Validated parameters of one QuantizeLinear/DequantizeLinear node."""

    scale: np.ndarray          # float32, 1-D (one entry when per-tensor)
    zero_point: np.ndarray     # int64, same length
    axis: Optional[int]        # None: per-tensor
    qtype: np.dtype            # the integer type

    @property
    def per_tensor(self) -> bool:
        return self.axis is None

    def same(self, other: "_QParams") -> bool:
        return (self.axis == other.axis and self.qtype == other.qtype
                and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))

    def attrs(self) -> Dict[str, Any]:
        return {"scales": [float(v) for v in self.scale],
                "zero_points": [int(v) for v in self.zero_point],
                "axis": -1 if self.axis is None else int(self.axis)}


def _qparams(node: Node, inits: Mapping[str, np.ndarray], infos: Mapping[str, TensorInfo],
             opset: int) -> _QParams:
    """Check a QuantizeLinear/DequantizeLinear node the runtime can execute."""
    where = f"node {node.name!r} ({node.op})"
    quantize = node.op == "QuantizeLinear"
    x = infos[node.inputs[0]]
    if node.attrs.get("block_size", 0):
        raise UnsupportedError(f"{where}: blocked quantization (block_size) is not supported "
                               "by the runtime")
    if not node.inputs[1] in inits:
        raise UnsupportedError(f"{where}: the scale {node.inputs[1]!r} must be a constant "
                               "(an initializer); scales computed at run time are not supported")
    scale = np.asarray(inits[node.inputs[1]])
    if scale.dtype != np.float32:
        raise UnsupportedError(f"{where}: the scale must be float32, got {scale.dtype}")
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        raise ModelError(f"{where}: the scale must be finite and > 0, got "
                         f"{scale.ravel()[:8].tolist()}")
    zp_name = node.inputs[2] if len(node.inputs) > 2 else ""
    if zp_name:
        if zp_name not in inits:
            raise UnsupportedError(f"{where}: the zero point {zp_name!r} must be a constant "
                                   "(an initializer)")
        zp = np.asarray(inits[zp_name])
        qtype = zp.dtype
    else:
        zp = None
        if quantize:
            code = int(node.attrs.get("output_dtype", 0) or 0)
            qtype = np.dtype(np.int8) if code == 3 else np.dtype(np.uint8)
            if code not in (0, 2, 3):
                raise UnsupportedError(f"{where}: output_dtype {code} is not supported (uint8 "
                                       "and int8 are)")
        else:
            qtype = x.dtype
    if quantize:
        if x.dtype != np.float32:
            raise UnsupportedError(f"{where}: the input must be float32, got {x.dtype}")
        if qtype not in _QTYPES:
            raise UnsupportedError(f"{where}: quantization to {qtype} is not supported "
                                   "(uint8 and int8 are)")
    else:
        if x.dtype not in _QTYPES + (np.dtype(np.int32),):
            raise UnsupportedError(f"{where}: dequantization of {x.dtype} is not supported "
                                   "(uint8, int8 and int32 are)")
        if qtype != x.dtype:
            raise ModelError(f"{where}: the zero point has dtype {qtype} but the input is "
                             f"{x.dtype}; they must match")
    if zp is not None and zp.size != scale.size:
        raise ModelError(f"{where}: the zero point has {zp.size} entries, the scale {scale.size}")
    zps = (zp.astype(np.int64).ravel() if zp is not None
           else np.zeros(scale.size, np.int64))
    if qtype == np.int32 and zps.any():
        raise ModelError(f"{where}: int32 dequantization needs a zero point of 0")
    axis = None
    if scale.size > 1:
        rank = len(x.shape)
        a = int(node.attrs.get("axis", 1))
        if scale.ndim != 1 or opset < 13:
            raise ShapeError(f"{where}: the scale must be a scalar or 1-D, got shape "
                             f"{scale.shape}")
        if not -rank <= a < rank:
            raise ShapeError(f"{where}: axis {a} is out of range for a rank-{rank} input")
        axis = a % rank
        if scale.shape[0] != x.shape[axis]:
            raise ShapeError(f"{where}: per-axis scale of shape {scale.shape} does not match "
                             f"axis {axis} of the input {x.shape}")
    return _QParams(scale.astype(np.float32).ravel(), zps, axis, np.dtype(qtype))


def _dequantize_array(q: np.ndarray, p: _QParams) -> np.ndarray:
    """ONNX DequantizeLinear in float32: (q - zero_point) * scale."""
    shape = [1] * q.ndim
    if p.axis is not None:
        shape[p.axis] = -1
    z = p.zero_point.reshape(shape) if q.ndim else p.zero_point.reshape(())
    s = p.scale.reshape(shape) if q.ndim else p.scale.reshape(())
    return ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


@dataclass(frozen=True)
class Timing:
    """Wall-clock statistics of :meth:`Session.benchmark`, in seconds."""

    mean: float
    median: float
    min: float
    max: float
    std: float
    p90: float
    runs: int
    batch_size: int
    threads: Optional[int]

    @property
    def throughput(self) -> float:
        """Images per second at the median latency."""
        return self.batch_size / self.median

    def __str__(self) -> str:
        return (f"median {self.median * 1e3:.3f} ms, mean {self.mean * 1e3:.3f} ms, "
                f"min {self.min * 1e3:.3f} ms, p90 {self.p90 * 1e3:.3f} ms over {self.runs} "
                f"runs (batch {self.batch_size}, {self.throughput:.1f} images/s)")


class _Lowered:
    """A model lowered for one batch size: op tuples for ``_core.Plan``."""

    def __init__(self, model: Model, batch_size: int, numeric: bool = True,
                 quantized: str = "int8", no_int8: Optional[set] = None):
        # numeric=False: the structure only (BN folding without weight math),
        # for cost estimates.
        # quantized="int8": QDQ patterns become integer ops (QConv, QMatMul,
        # QAdd, int8 pooling); "simulate": every Q/DQ is a float kernel.
        self.quantized = quantized
        m = fold_constants(model, batch_size)
        for n in m.nodes:  # after folding, so shape arithmetic is gone
            if n.domain not in ("", "ai.onnx") or n.op not in SUPPORTED_OPS:
                raise UnsupportedOpError(n.op, n.name, SUPPORTED_OPS)
        infos = infer_shapes(m, batch_size=batch_size)  # validate before rewriting
        m = self._prepare_qdq(m, infos, numeric)
        m = remove_identities(m)
        if quantized == "int8" and self.qparams:
            m = self._int8_rewrites(m, batch_size)
        m = fold_batchnorm(m, numeric=numeric)
        self.model = m
        self.infos = dict(infer_shapes(m, batch_size=batch_size))  # lowering adds tensors
        self.ids: Dict[str, int] = {}
        self.tensors: List[Tuple[str, List[int], str]] = []
        self.ops: List[Tuple[str, str, List[int], List[int], Dict[str, Any]]] = []
        self.constants: Dict[int, np.ndarray] = {}
        self.sources: Dict[str, List[str]] = {}  # lowered op -> original node names
        self.no_int8 = set(no_int8 or ())  # nodes kept off the int8 path
        self._lower()

    # ------------------------------------------------------------ quantization
    def _prepare_qdq(self, m: Model, infos: Mapping[str, TensorInfo], numeric: bool) -> Model:
        """Validate Q/DQ nodes; fold DequantizeLinear of initializers to floats."""
        self.qparams: Dict[str, _QParams] = {}       # Q/DQ node name -> parameters
        # Folded float weight name -> (integer array, parameters), for int8 kernels.
        self.qweights: Dict[str, Tuple[np.ndarray, _QParams]] = {}
        if not any(n.op in _QDQ for n in m.nodes):
            return m
        inits = dict(m.initializers)
        outputs = set(m.output_names)
        nodes = []
        for n in m.nodes:
            if n.op in _QDQ:
                p = _qparams(n, inits, infos, m.opset)
                if (n.op == "DequantizeLinear" and n.inputs[0] in inits
                        and n.outputs[0] not in outputs):
                    q = np.asarray(inits[n.inputs[0]])
                    inits[n.outputs[0]] = (_dequantize_array(q, p) if numeric
                                           else np.zeros(q.shape, np.float32))
                    self.qweights[n.outputs[0]] = (q, p)
                    continue
                self.qparams[n.name] = p
            nodes.append(n)
        return prune_unused(m.with_changes(nodes=nodes, initializers=inits))

    def _int8_rewrites(self, m: Model, batch_size: int) -> Model:
        """Exact rewrites that let integer tensors flow between int8 layers.

        * ``MaxPool``/``Reshape``/``Flatten``/``Squeeze``/``Unsqueeze`` of a
          per-tensor ``DequantizeLinear`` output run on the integers instead
          (dequantization is monotone and element-wise, so it commutes).
        * ``QuantizeLinear(DequantizeLinear(q))`` with the same parameters is
          ``q`` itself.
        """
        producer: Dict[str, Node] = {}
        names = {n.name for n in m.nodes}
        taken = set(names) | set(m.initializers) | {o for n in m.nodes for o in n.outputs}
        outputs = set(m.output_names)

        def fresh(base: str) -> str:
            return unique_name(taken, base)

        nodes: List[Node] = []
        rename: Dict[str, str] = {}
        for n in m.nodes:
            n = Node(n.op, n.name, [rename.get(t, t) for t in n.inputs], n.outputs, n.attrs,
                     n.domain)
            d = producer.get(n.inputs[0]) if n.inputs else None
            dq = (d is not None and d.op == "DequantizeLinear" and d.name in self.qparams
                  and self.qparams[d.name].per_tensor and d.inputs[0] not in m.initializers)
            if dq and (n.op in _VIEWS or (n.op == "MaxPool" and len(
                    [o for o in n.outputs if o]) == 1 and not n.attrs.get("storage_order", 0))):
                q_out = fresh(n.outputs[0] + "/int8")
                inner = Node(n.op, n.name, [d.inputs[0]] + n.inputs[1:], [q_out], n.attrs, n.domain)
                dname = fresh(d.name + "/" + n.name)
                outer = Node("DequantizeLinear", dname, [q_out] + d.inputs[1:], [n.outputs[0]],
                             d.attrs, d.domain)
                self.qparams[dname] = self.qparams[d.name]
                nodes += [inner, outer]
                producer[q_out] = inner
                producer[n.outputs[0]] = outer
                continue
            if (dq and n.op == "QuantizeLinear" and n.name in self.qparams
                    and self.qparams[n.name].same(self.qparams[d.name])
                    and n.outputs[0] not in outputs):
                rename[n.outputs[0]] = d.inputs[0]
                continue
            nodes.append(n)
            for o in n.outputs:
                producer[o] = n
        return prune_unused(m.with_changes(nodes=nodes))

    # ---------------------------------------------------------------- tensors
    def _fresh(self, base: str) -> str:
        return unique_name(self.infos, base)  # the caller adds it to self.infos

    @property
    def plan_outputs(self) -> List[str]:
        """Graph outputs the plan writes (empty tensors are made in Python)."""
        return [v.name for v in self.model.outputs if self.infos[v.name].size]

    def tid(self, name: str) -> int:
        if not name:
            return -1
        if name not in self.ids:
            info = self.infos[name]
            self.ids[name] = len(self.tensors)
            self.tensors.append((name, list(info.shape), info.dtype.name))
            if name in self.model.initializers:
                arr = np.ascontiguousarray(self.model.initializers[name])
                self.constants[self.ids[name]] = arr
        return self.ids[name]

    def const(self, node: Node, i: int, what: str) -> Optional[np.ndarray]:
        if i >= len(node.inputs) or not node.inputs[i]:
            return None
        name = node.inputs[i]
        if name in self.model.initializers:
            return self.model.initializers[name]
        info = self.infos[name]
        if info.value is not None:
            return info.value
        raise UnsupportedError(f"node {node.name!r} ({node.op}): input {i} ({what}) must be a "
                               "constant (initializer) for the runtime")

    # ----------------------------------------------------------------- fusion
    def _activation(self, node: Node) -> Optional[Tuple[int, float, float]]:
        op = node.op
        if op == "Relu":
            return (_RELU, 0.0, 0.0)
        if op == "LeakyRelu":
            return (_RELU, float(node.attrs.get("alpha", 0.01)), 0.0)
        if op == "Sigmoid":
            return (_LOGISTIC, 0.0, 0.0)
        if op == "Tanh":
            return (_TANH, 0.0, 0.0)
        if op == "HardSigmoid":
            return (_HARDSIGMOID, float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5)))
        if op == "HardSwish":
            return (_HARDSWISH, 1.0 / 6.0, 0.5)
        if op == "Clip":
            if self.model.opset >= 11:
                lo = self.const(node, 1, "min")
                hi = self.const(node, 2, "max")
                lo = float(np.asarray(lo).ravel()[0]) if lo is not None else -np.inf
                hi = float(np.asarray(hi).ravel()[0]) if hi is not None else np.inf
            else:
                lo = float(node.attrs.get("min", -np.inf))
                hi = float(node.attrs.get("max", np.inf))
            big = float(np.finfo(np.float32).max)
            lo, hi = max(lo, -big), min(hi, big)
            return (_CLIP, min(lo, hi), hi)  # ONNX: min > max gives max everywhere
        return None

    def _lower(self) -> None:
        m = self.model
        readers: Dict[str, List[Node]] = {}
        for n in m.nodes:
            for t in set(n.inputs):
                if t:
                    readers.setdefault(t, []).append(n)
        outputs = set(m.output_names)
        position = {n.name: i for i, n in enumerate(m.nodes)}
        self._positions: List[int] = []
        consumed: set = set()   # node names fused into an earlier op
        pad_for_conv: Dict[str, Node] = {}

        def sole_reader(t: str) -> Optional[Node]:
            r = readers.get(t, [])
            return r[0] if len(r) == 1 and t not in outputs else None

        def silu(t: str) -> Optional[Tuple[Node, Node]]:
            # x·sigmoid(x) (SiLU/swish, as exported: Sigmoid and Mul both
            # reading x): one swish post-op instead of two passes over x.
            r = readers.get(t, [])
            if len(r) != 2 or t in outputs:
                return None
            sig, mul = sorted(r, key=lambda node: node.op != "Sigmoid")
            if (sig.op == "Sigmoid" and mul.op == "Mul" and sole_reader(sig.outputs[0]) is mul
                    and sorted(mul.inputs) == sorted([t, sig.outputs[0]])
                    and sig.name not in consumed and mul.name not in consumed):
                return sig, mul
            return None

        self._producer = {o: n for n in m.nodes for o in n.outputs}
        int8 = self.quantized == "int8" and bool(self.qparams)

        # Zero constant Pad on spatial axes in front of a Conv: merge into its pads.
        for n in m.nodes:
            if n.op == "Pad" and (r := sole_reader(n.outputs[0])) is not None and r.op == "Conv":
                mode = n.attrs.get("mode", "constant")
                pads = self._full_pads(n)
                value = self.const(n, 2, "constant_value")
                if (mode == "constant" and (value is None or float(np.asarray(value).ravel()[0]) == 0.0)
                        and pads is not None and all(p >= 0 for p in pads)):
                    rank = len(pads) // 2
                    if pads[0] == pads[1] == pads[rank] == pads[rank + 1] == 0 \
                            and r.attrs.get("auto_pad", "NOTSET") in ("NOTSET", ""):
                        pad_for_conv[r.name] = n
                        consumed.add(n.name)

        for n in m.nodes:
            if n.name in consumed:
                continue
            if n.domain not in ("", "ai.onnx") or n.op not in SUPPORTED_OPS:
                raise UnsupportedOpError(n.op, n.name, SUPPORTED_OPS)
            names = [n.name]
            attrs: Dict[str, Any] = {}
            post: List[Tuple[int, float, float]] = []
            residual: Optional[str] = None
            out = n.outputs[0]
            if int8 and n.op in ("Conv", "Gemm", "MatMul") and n.name not in pad_for_conv \
                    and n.name not in self.no_int8 and self._lower_qlinear(n, sole_reader,
                                                                           consumed, position):
                continue
            if int8 and n.op == "Add" and n.name not in self.no_int8 and self._lower_qadd(
                    n, sole_reader, consumed, position):
                continue
            if n.op in ("Conv", "Gemm", "MatMul") or n.op in _BINARY:
                # Absorb a residual Add (Conv only) and a chain of activations.
                while True:
                    if (pair := silu(out)) is not None:
                        post.append((_SWISH, 1.0, 0.0))
                        consumed.update(k.name for k in pair)
                        names.extend(k.name for k in pair)
                        out = pair[1].outputs[0]
                        continue
                    r = sole_reader(out)
                    if r is None or r.name in consumed:
                        break
                    if (r.op == "Add" and n.op == "Conv" and residual is None and not post
                            and len(r.inputs) == 2):
                        other = r.inputs[1] if r.inputs[0] == out else r.inputs[0]
                        if (other == out or other in m.initializers
                                or self.infos[other].shape != self.infos[out].shape):
                            break
                        residual = other
                        post.append((_SUM, 1.0, 0.0))
                    elif (act := self._activation(r)) is not None:
                        post.append(act)
                    else:
                        break
                    consumed.add(r.name)
                    names.append(r.name)
                    out = r.outputs[0]
                if post:
                    attrs["post_algs"] = [p[0] for p in post]
                    attrs["post_alpha"] = [p[1] for p in post]
                    attrs["post_beta"] = [p[2] for p in post]
            lname = "+".join(names)
            self.sources[lname] = names
            # A fused op runs where its last node was: a residual it adds may
            # be computed between its first and last node.
            self._position = max(position[k] for k in names)
            self._emit(n, lname, attrs, out, residual, pad_for_conv.get(n.name))
        order = sorted(range(len(self.ops)), key=lambda i: self._positions[i])
        self.ops = [self.ops[i] for i in order]
        self._drop_dead_ops()

    def _drop_dead_ops(self) -> None:
        """Remove ops nobody reads (dequantizations that int8 kernels made moot)."""
        keep = {self.ids[v] for v in self.plan_outputs if v in self.ids}
        alive: List[Tuple[str, str, List[int], List[int], Dict[str, Any]]] = []
        for op in reversed(self.ops):
            if any(o >= 0 and o in keep for o in op[3]):
                alive.append(op)
                keep.update(i for i in op[2] if i >= 0)
        alive.reverse()
        self.ops = alive

    # ------------------------------------------------------------- int8 ops
    def _dq_input(self, t: str) -> Optional[Tuple[str, _QParams]]:
        """(integer tensor, parameters) when ``t`` is a per-tensor DQ output."""
        d = self._producer.get(t)
        if (d is None or d.op != "DequantizeLinear" or d.name not in self.qparams
                or d.inputs[0] in self.model.initializers):
            return None
        p = self.qparams[d.name]
        if not p.per_tensor or p.qtype not in _QTYPES:
            return None
        return d.inputs[0], p

    def _int_weight(self, name: str) -> str:
        """The int8 initializer behind the folded float weight ``name``."""
        q, _ = self.qweights[name]
        qname = self._fresh(name + "/int8")
        self.model.initializers[qname] = q
        self.infos[qname] = TensorInfo(tuple(q.shape), q.dtype)
        return qname

    def _lower_qlinear(self, n: Node, sole_reader, consumed: set, position) -> bool:
        """DQ(x) → Conv/Gemm/MatMul(DQ(w)) → activations → Q as one int8 op."""
        m = self.model
        src = self._dq_input(n.inputs[0])
        if src is None or n.inputs[1] not in self.qweights:
            return False
        wq, pw = self.qweights[n.inputs[1]]
        if wq.dtype != np.int8 or pw.zero_point.any():
            return False
        bias = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else ""
        if bias and (bias not in m.initializers or m.initializers[bias].dtype != np.float32):
            return False
        if n.op == "Conv":
            oc_axis = 0
        elif n.op == "Gemm":
            if (n.attrs.get("transA", 0) or float(n.attrs.get("alpha", 1.0)) != 1.0
                    or (bias and float(n.attrs.get("beta", 1.0)) != 1.0) or wq.ndim != 2
                    or len(self.infos[n.inputs[0]].shape) != 2):
                return False
            oc_axis = 0 if n.attrs.get("transB", 0) else 1
            if bias and m.initializers[bias].size != wq.shape[oc_axis]:
                return False
        else:
            if wq.ndim != 2 or len(self.infos[n.inputs[0]].shape) < 2:
                return False
            oc_axis = 1
        if not pw.per_tensor and pw.axis != oc_axis:
            return False
        # Follow the fusible chain: a residual Add (Conv only), activations,
        # and the QuantizeLinear that ends it.
        names, post, out = [n.name], [], n.outputs[0]
        residual: Optional[Tuple[str, Optional[_QParams]]] = None
        quant: Optional[Node] = None
        trail: List[Tuple[List[str], List[Tuple[int, float, float]], str]] = [
            (list(names), [], out)]
        while (r := sole_reader(out)) is not None and r.name not in consumed:
            if (r.op == "Add" and n.op == "Conv" and residual is None and not post
                    and len(r.inputs) == 2):
                other = r.inputs[1] if r.inputs[0] == out else r.inputs[0]
                if other == out or self.infos[other].shape != self.infos[out].shape:
                    break
                res = self._dq_input(other)
                if res is not None:  # integer residual: a sum post-op on dst
                    residual = res
                    post.append((_SUM, float(res[1].scale[0]), float(res[1].zero_point[0])))
                elif other not in m.initializers and self.infos[other].dtype == np.float32:
                    # float residual (e.g. a projection shortcut without its
                    # own quantizer): a binary-add post-op
                    residual = (other, None)
                    post.append((_ADD_TENSOR, 0.0, 0.0))
                else:
                    break
            elif (act := self._activation(r)) is not None:
                post.append(act)
            elif r.op == "QuantizeLinear" and r.name in self.qparams \
                    and self.qparams[r.name].per_tensor:
                quant = r
                names.append(r.name)
                out = r.outputs[0]
                break
            else:
                break
            names.append(r.name)
            out = r.outputs[0]
            if residual is None:
                trail.append((list(names), list(post), out))
        if quant is None:
            # Float output: without a final quantizer a residual cannot be a
            # sum post-op on the integer input; stop before it.
            names, post, out = trail[-1]
            residual = None
        elif (residual is not None and residual[1] is not None
              and residual[1].qtype != self.infos[out].dtype):
            return False
        for k in names[1:]:
            consumed.add(k)
        attrs: Dict[str, Any] = {
            "src_scale": float(src[1].scale[0]), "src_zp": int(src[1].zero_point[0]),
            "w_scales": [float(v) for v in pw.scale], "w_axis": -1 if pw.per_tensor else oc_axis}
        if quant is not None:
            qp = self.qparams[quant.name]
            attrs.update(dst_scale=float(qp.scale[0]), dst_zp=int(qp.zero_point[0]))
        if post:
            attrs.update(post_algs=[p[0] for p in post], post_alpha=[p[1] for p in post],
                         post_beta=[p[2] for p in post])
        lname = "+".join(names)
        self.sources[lname] = names
        self._position = max(position[k] for k in names)
        wname = self._int_weight(n.inputs[1])
        if n.op == "Conv":
            x = self.infos[n.inputs[0]]
            w = self.infos[n.inputs[1]]
            nd = len(w.shape) - 2
            strides = [int(v) for v in n.attrs.get("strides", [1] * nd)]
            dil = [int(v) for v in n.attrs.get("dilations", [1] * nd)]
            attrs.update(strides=strides, dilations=dil,
                         pads=conv_pads(n, x.shape[2:], w.shape[2:], strides, dil),
                         group=int(n.attrs.get("group", 1)))
            op = "QConv"
        else:
            attrs.update(transB=int(n.attrs.get("transB", 0)) if n.op == "Gemm" else 0)
            op = "QMatMul"
        ins = [src[0], wname, bias] + ([residual[0]] if residual else [])
        self.ops.append((op, lname, [self.tid(t) for t in ins], [self.tid(out)], attrs))
        self._positions.append(self._position)
        return True

    def _lower_qadd(self, n: Node, sole_reader, consumed: set, position) -> bool:
        """Add(DQ(a), DQ(b)) → Relu/Clip → Q as one integer kernel."""
        if len(n.inputs) != 2:
            return False
        a, b = self._dq_input(n.inputs[0]), self._dq_input(n.inputs[1])
        out = n.outputs[0]
        if a is None or b is None or not (self.infos[n.inputs[0]].shape
                                          == self.infos[n.inputs[1]].shape
                                          == self.infos[out].shape):
            return False
        names, lo, hi = [n.name], -np.inf, np.inf
        while (r := sole_reader(out)) is not None and r.name not in consumed:
            act = self._activation(r)
            if act is not None and act[0] in (_RELU, _CLIP) and not (act[0] == _RELU and act[1]):
                a_lo, a_hi = (0.0, np.inf) if act[0] == _RELU else (act[1], act[2])
                lo, hi = min(max(lo, a_lo), a_hi), max(min(hi, a_hi), a_lo)
                names.append(r.name)
                out = r.outputs[0]
                continue
            if r.op == "QuantizeLinear" and r.name in self.qparams \
                    and self.qparams[r.name].per_tensor:
                q = self.qparams[r.name]
                names.append(r.name)
                out = r.outputs[0]
                break
            return False
        else:
            return False
        for k in names[1:]:
            consumed.add(k)
        big = float(np.finfo(np.float32).max)
        attrs = {"a_scale": float(a[1].scale[0]), "a_zp": int(a[1].zero_point[0]),
                 "b_scale": float(b[1].scale[0]), "b_zp": int(b[1].zero_point[0]),
                 "dst_scale": float(q.scale[0]), "dst_zp": int(q.zero_point[0]),
                 "lo": max(float(lo), -big), "hi": min(float(hi), big)}
        lname = "+".join(names)
        self.sources[lname] = names
        self._position = max(position[k] for k in names)
        self.ops.append(("QAdd", lname, [self.tid(a[0]), self.tid(b[0])], [self.tid(out)], attrs))
        self._positions.append(self._position)
        return True

    def _full_pads(self, n: Node) -> Optional[List[int]]:
        rank = len(self.infos[n.inputs[0]].shape)
        pads = self.const(n, 1, "pads") if self.model.opset >= 11 else np.array(n.attrs.get("pads", []))
        pads = [int(p) for p in np.asarray(pads).ravel()]
        if self.model.opset >= 18 and len(n.inputs) > 3 and n.inputs[3]:
            axes = [int(a) % rank for a in np.asarray(self.const(n, 3, "axes")).ravel()]
            full = [0] * (2 * rank)
            for j, a in enumerate(axes):
                full[a] = pads[j]
                full[a + rank] = pads[j + len(axes)]
            return full
        return pads if len(pads) == 2 * rank else None

    def _emit(self, n: Node, lname: str, attrs: Dict[str, Any], out: str,
              residual: Optional[str], pad: Optional[Node]) -> None:
        op = n.op
        ins = [n.inputs[0]] if n.inputs else []
        outs = [out]
        x = self.infos[n.inputs[0]] if n.inputs and n.inputs[0] else None
        if op == "Conv":
            w = self.infos[n.inputs[1]]
            nd = len(w.shape) - 2
            strides = [int(s) for s in n.attrs.get("strides", [1] * nd)]
            dil = [int(d) for d in n.attrs.get("dilations", [1] * nd)]
            pads = conv_pads(n, x.shape[2:], w.shape[2:], strides, dil)
            if pad is not None:  # a zero Pad in front, merged into the conv's pads
                extra = self._full_pads(pad)
                rank = len(extra) // 2
                ins = [pad.inputs[0]]
                pads = [p + extra[2 + i] for i, p in enumerate(pads[:nd])] + \
                       [p + extra[rank + 2 + i] for i, p in enumerate(pads[nd:])]
            attrs.update(strides=strides, dilations=dil, pads=pads, group=int(n.attrs.get("group", 1)))
            ins += [n.inputs[1], n.inputs[2] if len(n.inputs) > 2 else ""]
            if residual:
                ins.append(residual)
        elif op == "Gemm":
            attrs.update(transA=int(n.attrs.get("transA", 0)), transB=int(n.attrs.get("transB", 0)),
                         alpha=float(n.attrs.get("alpha", 1.0)), beta=float(n.attrs.get("beta", 1.0)))
            ins = list(n.inputs[:3])
        elif op == "MatMul":
            ins = list(n.inputs[:2])
        elif op in _BINARY:
            attrs["kind"] = _BINARY[op]
            ins = list(n.inputs[:2])
            op = "Binary"
        elif op in _ACTIVATIONS:
            alg, a, b = self._activation(n)
            op = "Eltwise"
            attrs.update(alg=alg, alpha=a, beta=b)
        elif op in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
            if len([o for o in n.outputs if o]) > 1:
                raise UnsupportedError(f"node {n.name!r} (MaxPool): the Indices output is not "
                                       "supported by the runtime")
            nd = len(x.shape) - 2
            if op.startswith("Global"):
                kernel, strides, dil, pads = list(x.shape[2:]), [1] * nd, [1] * nd, [0] * (2 * nd)
            else:
                kernel = [int(k) for k in n.attrs["kernel_shape"]]
                strides = [int(s) for s in n.attrs.get("strides", [1] * nd)]
                dil = [int(d) for d in n.attrs.get("dilations", [1] * nd)]
                pads = conv_pads(n, x.shape[2:], kernel, strides, dil)
            include = int(n.attrs.get("count_include_pad", 0))
            if op == "AveragePool" and include and n.attrs.get("ceil_mode", 0):
                # oneDNN would count the ceil-mode overhang as padding too; ONNX
                # counts only the declared pads. Pad explicitly, then average
                # excluding the overhang.
                include = 0
            if op == "AveragePool" and not include and any(pads) and int(
                    n.attrs.get("count_include_pad", 0)):
                padded = self._fresh(n.name + "/padded")
                shape = list(x.shape)
                for i in range(nd):
                    shape[2 + i] += pads[i] + pads[nd + i]
                self.infos[padded] = TensorInfo(tuple(shape), x.dtype)
                full = [0, 0] + pads[:nd] + [0, 0] + pads[nd:]
                self.ops.append(("Pad", n.name + "/pad", [self.tid(n.inputs[0])], [self.tid(padded)],
                                 {"mode": "constant", "pads": full, "value": 0.0}))
                self._positions.append(self._position)
                self.sources[n.name + "/pad"] = [n.name]
                ins, pads = [padded], [0] * (2 * nd)
            attrs.update(mode="max" if "Max" in op else "avg", kernel=kernel, strides=strides,
                         dilations=dil, pads=pads, count_include_pad=include)
            op = "Pool"
        elif op == "BatchNormalization":
            attrs["epsilon"] = float(n.attrs.get("epsilon", 1e-5))
            ins = list(n.inputs[:5])
        elif op in ("Softmax", "LogSoftmax"):
            rank = len(x.shape)
            axis = int(n.attrs.get("axis", 1 if self.model.opset < 13 else -1))
            axis = axis % rank if rank else 0
            attrs.update(axis=axis, log=int(op == "LogSoftmax"),
                         coerce=int(self.model.opset < 13 and axis != rank - 1))
            op = "Softmax"
        elif op == "Concat":
            rank = len(self.infos[out].shape)
            attrs["axis"] = int(n.attrs["axis"]) % rank
            ins = [t for t in n.inputs if t]
        elif op == "Split":
            attrs["axis"] = int(n.attrs.get("axis", 0)) % len(x.shape)
            attrs["sizes"] = [self.infos[o].shape[attrs["axis"]] for o in n.outputs]
            # Empty parts are not materialised (see Session._outputs).
            outs = [o if self.infos[o].size else "" for o in n.outputs]
        elif op == "Transpose":
            attrs["perm"] = [int(p) for p in n.attrs.get("perm", list(range(len(x.shape)))[::-1])]
        elif op in _VIEWS:
            op = "View"
        elif op in _QDQ:
            attrs.update(self.qparams[n.name].attrs())
            op = "Quantize" if op == "QuantizeLinear" else "Dequantize"
        elif op in ("Identity", "Dropout"):
            if len([o for o in n.outputs if o]) > 1:
                raise UnsupportedError(f"node {n.name!r} (Dropout): the mask output is not "
                                       "supported by the runtime")
            op = "Copy"
        elif op == "Pad":
            mode = n.attrs.get("mode", "constant")
            pads = self._full_pads(n)
            if pads is None:
                raise ShapeError(f"node {n.name!r} (Pad): cannot resolve pads")
            value = self.const(n, 2, "constant_value")
            attrs.update(mode=mode, pads=pads,
                         value=float(np.asarray(value).ravel()[0]) if value is not None and np.asarray(value).size else 0.0)
        else:  # pragma: no cover - SUPPORTED_OPS and this chain agree
            raise UnsupportedOpError(op, n.name, SUPPORTED_OPS)
        int_ok = op in ("Quantize", "Dequantize", "View", "Copy") or (
            op == "Pool" and attrs.get("mode") == "max")
        for t in ins + outs:
            if (t and self.infos[t].dtype != np.float32 and t not in self.model.initializers
                    and not (int_ok and self.infos[t].dtype in _QTYPES + (np.dtype(np.int32),))):
                raise UnsupportedError(
                    f"node {n.name!r} ({n.op}): tensor {t!r} has dtype {self.infos[t].dtype}; the "
                    "runtime computes in float32")
        self.ops.append((op, lname, [self.tid(t) for t in ins], [self.tid(t) for t in outs], attrs))
        self._positions.append(self._position)


class Session:
    """A model compiled into a oneDNN execution plan.

    Parameters
    ----------
    model : Model
        The model to run (it is not modified).
    batch_size : int, default 1
        Batch size the plan is compiled for. Feeds with another batch size
        compile (and cache) another plan on first use.
    threads : int, optional
        OpenMP threads for execution (default: oneDNN's default, all cores).
    quantized : {"int8", "simulate"}, default "int8"
        How quantized (QDQ) models run. ``"int8"``: where a
        ``DequantizeLinear → Conv/Gemm/MatMul → activation → QuantizeLinear``
        pattern (or a quantized residual ``Add``, or max pooling of quantized
        data) is found, it runs as one integer oneDNN kernel (u8/s8 data, s8
        weights, int32 accumulation) and int8 tensors stay int8 between such
        layers; everything else is simulated. ``"simulate"``: every
        ``QuantizeLinear``/``DequantizeLinear`` runs as written (float
        computation with integer tensors in between), bit-exact with ONNX's
        definition (round half to even, saturation). Models without Q/DQ nodes
        run the same either way.

    Attributes
    ----------
    int8_fallbacks : list of str
        Nodes whose int8 pattern oneDNN could not run, so they are simulated
        (empty normally).

    Raises
    ------
    UnsupportedOpError
        When the model has an op the runtime lacks (the message lists the
        supported ones).
    ValidationError
        For a bad argument (e.g. an unknown ``quantized`` value).
    ModelError, ShapeError, UnsupportedError
        For QuantizeLinear/DequantizeLinear nodes the runtime cannot run: a
        scale that is not a constant float32 or not finite and > 0, a zero
        point whose type differs from the data, an axis out of range,
        blocked quantization.

    Examples
    --------
    >>> import lpcv, numpy as np
    >>> sess = lpcv.Session(lpcv.zoo.reference("fmnist-lenet300"), batch_size=2)
    >>> x = np.zeros((2, 1, 28, 28), np.float32)
    >>> sess.run({"input": x})["logits"].shape
    (2, 10)

    A quantized model (QDQ), run with int8 kernels and simulated:

    >>> from lpcv.graph import Model, Node
    >>> w = np.random.default_rng(0).integers(-50, 50, (4, 1, 3, 3)).astype(np.int8)
    >>> q = Model(
    ...     nodes=[Node("QuantizeLinear", "q", ["x", "s", "z"], ["xq"]),
    ...            Node("DequantizeLinear", "dq", ["xq", "s", "z"], ["xd"]),
    ...            Node("DequantizeLinear", "dw", ["w", "ws", "wz"], ["wd"], {"axis": 0}),
    ...            Node("Conv", "conv", ["xd", "wd"], ["c"], {"pads": [1, 1, 1, 1]}),
    ...            Node("Relu", "relu", ["c"], ["r"]),
    ...            Node("QuantizeLinear", "qy", ["r", "sy", "z"], ["y"])],
    ...     inputs=[lpcv.graph.ValueInfo("x", (1, 1, 8, 8))],
    ...     outputs=[lpcv.graph.ValueInfo("y", (1, 4, 8, 8), np.uint8)],
    ...     initializers={"s": np.array(0.02, np.float32), "z": np.array(128, np.uint8),
    ...                   "w": w, "ws": np.full(4, 0.01, np.float32),
    ...                   "wz": np.zeros(4, np.int8), "sy": np.array(0.05, np.float32)},
    ...     opset=13)
    >>> x = np.random.default_rng(1).standard_normal((1, 1, 8, 8)).astype(np.float32)
    >>> int8 = lpcv.Session(q)
    >>> [r["impl"].split(" (")[1] for r in int8.steps().rows if "int8" in r["impl"]]
    ['int8 u8:s8:u8)']
    >>> y_int8 = int8.run({"x": x})["y"]
    >>> y_sim = lpcv.Session(q, quantized="simulate").run({"x": x})["y"]
    >>> y_int8.dtype, int(np.abs(y_int8.astype(int) - y_sim).max()) <= 1
    (dtype('uint8'), True)
    """

    def __init__(self, model: Model, batch_size: int = 1, threads: Optional[int] = None,
                 quantized: str = "int8"):
        if not isinstance(model, Model):
            raise ValidationError(f"model must be an lpcv.Model, got {type(model).__name__}")
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValidationError(f"batch_size must be a positive int, got {batch_size!r}")
        if threads is not None and (not isinstance(threads, (int, np.integer)) or threads < 1):
            raise ValidationError(f"threads must be None or a positive int, got {threads!r}")
        if not isinstance(quantized, str) or quantized not in QUANTIZED_MODES:
            raise ValidationError(f"quantized must be one of {QUANTIZED_MODES}, got {quantized!r}")
        self.quantized = quantized
        self.model = model
        self.batch_size = int(batch_size)
        self.threads = int(threads) if threads is not None else None
        self._plans: Dict[int, Tuple[_Lowered, Any]] = {}
        self._lock = threading.Lock()
        self._plan(self.batch_size)

    # ------------------------------------------------------------------ plans
    def _plan(self, batch: int) -> Tuple[_Lowered, Any]:
        if batch not in self._plans:
            no_int8: set = set()
            while True:
                low = _Lowered(self.model, batch, quantized=self.quantized, no_int8=no_int8)
                try:
                    plan = _core.Plan(low.tensors, low.ops,
                                      [low.tid(v.name) for v in low.model.inputs],
                                      [low.tid(v) for v in low.plan_outputs], low.constants,
                                      self.threads or 0)
                    break
                except (UnsupportedError, BackendError) as e:
                    # An int8 pattern oneDNN cannot run: simulate it instead.
                    failed = [op[1] for op in low.ops if op[0] in _INT8_OPS and op[1] in str(e)]
                    if not failed:
                        raise
                    no_int8.add(low.sources[max(failed, key=len)][0])
            self.int8_fallbacks = sorted(no_int8)
            self._plans[batch] = (low, plan)
        return self._plans[batch]

    @property
    def input_names(self) -> List[str]:
        return self.model.input_names

    @property
    def output_names(self) -> List[str]:
        return self.model.output_names

    def input_shape(self, name: str, batch_size: Optional[int] = None) -> Tuple[int, ...]:
        """The shape ``run`` expects for input ``name``."""
        low, _ = self._plan(batch_size or self.batch_size)
        return low.infos[name].shape

    def _feeds(self, feeds: Mapping[str, Any]) -> Tuple[int, List[np.ndarray]]:
        if not isinstance(feeds, Mapping):
            raise ValidationError("feeds must be a dict of input name -> array, got "
                                  f"{type(feeds).__name__}")
        names = self.input_names
        if len(feeds) != len(names) or any(n not in feeds for n in names):
            unknown = sorted(set(feeds) - set(names))
            missing = [n for n in names if n not in feeds]
            raise ValidationError(f"feeds: expected inputs {names}; unknown {unknown}, missing "
                                  f"{missing}")
        arrays = []
        batch = None
        for vi in self.model.inputs:
            a = feeds[vi.name]
            if not isinstance(a, np.ndarray):
                a = np.asarray(a)
            if vi.dtype.kind != "f":  # quantized inputs: the exact integer type
                if a.dtype != vi.dtype:
                    raise TypeError(f"input {vi.name!r}: expected a {vi.dtype} array, got dtype "
                                    f"{a.dtype}")
                a = np.ascontiguousarray(a)
            elif a.dtype.kind != "f":
                raise TypeError(f"input {vi.name!r}: expected a floating-point array "
                                f"(float32), got dtype {a.dtype}")
            else:
                a = np.ascontiguousarray(a, dtype=np.float32)
            if a.ndim != len(vi.shape):
                raise ShapeError(f"input {vi.name!r}: expected rank {len(vi.shape)} "
                                 f"{tuple(vi.shape)}, got shape {a.shape}")
            b = a.shape[0] if a.ndim and not isinstance(vi.shape[0], int) else None
            if b is not None:
                if b < 1:
                    raise ShapeError(f"input {vi.name!r}: the batch is empty (shape {a.shape})")
                if batch is not None and b != batch:
                    raise ShapeError(f"inputs disagree on the batch size ({batch} vs {b})")
                batch = b
            arrays.append(a)
        batch = batch or self.batch_size
        low, _ = self._plan(batch)
        for vi, a in zip(self.model.inputs, arrays):
            want = low.infos[vi.name].shape
            if a.shape != want:
                raise ShapeError(f"input {vi.name!r}: expected shape {want}, got {a.shape}")
        return batch, arrays

    def _outputs(self, low: _Lowered) -> Tuple[Dict[str, np.ndarray], List[np.ndarray]]:
        """All output arrays by name, and those the plan writes, in plan order."""
        arrays = {v.name: np.empty(low.infos[v.name].shape, low.infos[v.name].dtype)
                  for v in low.model.outputs}
        return arrays, [arrays[n] for n in low.plan_outputs]

    # ------------------------------------------------------------------- API
    def run(self, feeds: Mapping[str, Any], check_finite: bool = True) -> Dict[str, np.ndarray]:
        """Run the model.

        Parameters
        ----------
        feeds : dict of str to array
            One array per model input. Float arrays are converted to float32;
            other dtypes raise ``TypeError``, except for inputs the model
            declares as integers (quantized uint8/int8 data), which need
            exactly that dtype.
        check_finite : bool, default True
            Reject inputs holding NaN or Inf: oneDNN kernels do not
            propagate them the way ONNX defines (ReLU maps NaN to 0), so the
            outputs would be silently wrong.

        Returns
        -------
        dict of str to ndarray
            The model outputs by name.
        """
        batch, arrays = self._feeds(feeds)
        if check_finite:
            for vi, a in zip(self.model.inputs, arrays):
                if a.dtype.kind == "f" and not np.isfinite(a).all():
                    raise ValidationError(f"input {vi.name!r} contains NaN or Inf; pass "
                                          "check_finite=False to run it anyway")
        low, plan = self._plan(batch)
        result, outs = self._outputs(low)
        with self._lock:
            plan.run(arrays, outs)
        return result

    def _default_feeds(self, feeds: Optional[Mapping[str, Any]]) -> Mapping[str, Any]:
        if feeds is not None:
            return feeds
        rng = np.random.default_rng(0)
        low, _ = self._plan(self.batch_size)
        feeds = {}
        for v in self.model.inputs:
            info = low.infos[v.name]
            if info.dtype.kind == "f":
                feeds[v.name] = rng.standard_normal(info.shape).astype(np.float32)
            else:
                lim = np.iinfo(info.dtype)
                feeds[v.name] = rng.integers(max(lim.min, -128), min(lim.max, 255) + 1,
                                             info.shape).astype(info.dtype)
        return feeds

    def benchmark(self, runs: int = 50, warmup: int = 5,
                  feeds: Optional[Mapping[str, Any]] = None) -> Timing:
        """Time whole-model runs.

        Parameters
        ----------
        runs : int, default 50
            Timed runs.
        warmup : int, default 5
            Untimed runs first.
        feeds : dict, optional
            Inputs (default: seeded random normal data of the compiled shape).

        Returns
        -------
        Timing
        """
        if not isinstance(runs, int) or runs < 1:
            raise ValidationError(f"runs must be a positive int, got {runs!r}")
        if not isinstance(warmup, int) or warmup < 0:
            raise ValidationError(f"warmup must be a non-negative int, got {warmup!r}")
        batch, arrays = self._feeds(self._default_feeds(feeds))
        low, plan = self._plan(batch)
        _, outs = self._outputs(low)
        times = []
        with self._lock:
            for _ in range(warmup):
                plan.run(arrays, outs)
            for _ in range(runs):
                t0 = time.perf_counter()
                plan.run(arrays, outs)
                times.append(time.perf_counter() - t0)
        times.sort()
        return Timing(mean=statistics.fmean(times), median=statistics.median(times),
                      min=times[0], max=times[-1],
                      std=statistics.pstdev(times) if len(times) > 1 else 0.0,
                      p90=times[min(len(times) - 1, int(0.9 * len(times)))], runs=runs,
                      batch_size=batch, threads=self.threads)

    def profile(self, repeats: int = 20, warmup: int = 3,
                feeds: Optional[Mapping[str, Any]] = None) -> Table:
        """Measured time of every node, by executing the plan step by step.

        Steps that oneDNN fused (a Conv with its BatchNorm, activation and
        residual Add) are one row, named after all their nodes. Layout
        conversions are attributed to the node that needed them; the
        conversions of the final outputs appear as ``<output reorder>``.

        Returns
        -------
        Table
            Columns ``node``, ``nodes`` (original node names), ``op``,
            ``kind`` (primitive), ``impl``, ``time_ms`` (median over repeats,
            layout conversions included), ``min_ms`` (the fastest repeat:
            on a shared machine, the time without contention), ``reorder_ms``
            (of which layout conversions, median) and ``share`` of the total.
        """
        if not isinstance(repeats, int) or repeats < 1:
            raise ValidationError(f"repeats must be a positive int, got {repeats!r}")
        batch, arrays = self._feeds(self._default_feeds(feeds))
        low, plan = self._plan(batch)
        _, outs = self._outputs(low)
        with self._lock:
            for _ in range(warmup):
                plan.run(arrays, outs)
            times = plan.profile(arrays, outs, repeats)
        steps = plan.steps()
        op_of = {name: op for op, name, *_ in low.ops}
        rows: Dict[str, Dict[str, Any]] = {}
        for (node, kind, impl), t in zip(steps, times):
            key = node or "<output reorder>"
            row = rows.setdefault(key, {"node": key, "nodes": ", ".join(low.sources.get(node, [])),
                                        "op": op_of.get(node, "Reorder"), "kind": kind,
                                        "impl": impl, "time_ms": 0.0, "min_ms": 0.0,
                                        "reorder_ms": 0.0})
            if kind != "reorder" and row["kind"] == "reorder":
                row["kind"], row["impl"] = kind, impl
            row["time_ms"] += t[0] * 1e3
            row["min_ms"] += t[1] * 1e3
            if kind == "reorder":
                row["reorder_ms"] += t[0] * 1e3
        total = sum(r["time_ms"] for r in rows.values()) or 1.0
        for r in rows.values():
            r["share"] = r["time_ms"] / total
        return Table(rows.values(), title=f"{self.model.name}: measured time per node "
                                          f"(batch {batch}, {repeats} repeats)")

    def steps(self, batch_size: Optional[int] = None) -> Table:
        """The compiled plan: one row per oneDNN primitive or lpcv kernel."""
        low, plan = self._plan(batch_size or self.batch_size)
        return Table([{"node": n or "<output reorder>", "kind": k, "impl": i}
                      for n, k, i in plan.steps()], title=f"{self.model.name}: plan")

    @property
    def activation_bytes(self) -> int:
        """Bytes of intermediate buffers the compiled plan holds (after reuse)."""
        return int(self._plan(self.batch_size)[1].activation_bytes)

    def __repr__(self) -> str:
        low, plan = self._plan(self.batch_size)
        return (f"<lpcv.Session {self.model.name!r}: batch {self.batch_size}, "
                f"{len(low.ops)} fused ops, {len(plan.steps())} steps>")

