"""Static shape and dtype inference, and evaluation of small constant ops.

One function per op computes the output shapes from the input shapes and
attributes, following the ONNX specification; it also validates what it
reads, so a malformed model fails here with a message that names the node.
Shape-manipulating ops on small integer tensors (Shape, Gather, Concat, ...)
are evaluated with NumPy so the constant folding pass can replace the
``Shape → Gather → Unsqueeze → Concat → Reshape`` chains exporters emit.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .exceptions import ModelError, ShapeError, UnsupportedOpError
from .graph import Model, Node, TensorInfo

__all__ = ["infer_shapes", "conv_pads", "pool_output_shape", "SHAPE_FUNCTIONS",
           "FOLDABLE_OPS", "MAX_ELEMENTS"]

#: Refuse tensors larger than this many elements (2**36 floats = 256 GiB):
#: such a model is hostile or broken, and allocating it would kill the process.
MAX_ELEMENTS = 2 ** 36
#: Constant-valued tensors larger than this are not evaluated at compile time.
MAX_FOLD_ELEMENTS = 1 << 16

Infos = List[TensorInfo]
ShapeFn = Callable[[Node, Infos, int], List[TensorInfo]]
SHAPE_FUNCTIONS: Dict[str, ShapeFn] = {}


def _op(*names: str):
    def register(fn: ShapeFn) -> ShapeFn:
        for n in names:
            SHAPE_FUNCTIONS[n] = fn
        return fn
    return register


def _fail(node: Node, msg: str) -> ShapeError:
    return ShapeError(f"node {node.name!r} ({node.op}): {msg}")


def _ints(node: Node, key: str, default: Optional[Sequence[int]] = None) -> Optional[List[int]]:
    v = node.attrs.get(key, default)
    if v is None:
        return None
    try:
        return [int(x) for x in v]
    except (TypeError, ValueError):
        raise ModelError(f"node {node.name!r} ({node.op}): attribute {key!r} must be a "
                         f"list of ints, got {v!r}") from None


def _int(node: Node, key: str, default: int) -> int:
    v = node.attrs.get(key, default)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise ModelError(f"node {node.name!r} ({node.op}): attribute {key!r} must be an "
                         f"int, got {v!r}")
    return int(v)


def _axis(node: Node, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise _fail(node, f"{what} {axis} is out of range for a rank-{rank} input")
    return axis % rank if rank else 0


def _const(node: Node, infos: Infos, i: int, what: str) -> np.ndarray:
    if i >= len(infos) or infos[i] is None:
        raise _fail(node, f"missing input {i} ({what})")
    if infos[i].value is None:
        raise _fail(node, f"input {i} ({what}) must be a constant known at compile time "
                          f"(an initializer or foldable from shapes)")
    return infos[i].value


def _present(infos: Infos, i: int) -> bool:
    return i < len(infos) and infos[i] is not None


def _info(shape: Sequence[int], dtype, value: Optional[np.ndarray] = None) -> TensorInfo:
    return TensorInfo(tuple(int(d) for d in shape), np.dtype(dtype), value)


def _with_value(value: np.ndarray) -> TensorInfo:
    value = np.asarray(value)
    return TensorInfo(tuple(value.shape), value.dtype,
                      value if value.size <= MAX_FOLD_ELEMENTS else None)


def _all_const(infos: Infos) -> bool:
    return all(i is None or i.value is not None for i in infos)


# --------------------------------------------------------------------- unary
@_op("Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Identity",
     "Elu", "Selu", "Softplus", "Abs", "Neg", "Exp", "Log", "Sqrt", "Erf", "Floor",
     "Ceil", "Reciprocal")
def _unary(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    if node.op == "Identity" and x.value is not None:
        return [x]
    return [_info(x.shape, x.dtype)]


@_op("Clip")
def _clip(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    for i in (1, 2):
        if _present(infos, i) and infos[i].shape not in ((), (1,)):
            raise _fail(node, f"input {i} (min/max) must be a scalar, got shape {infos[i].shape}")
    return [_info(x.shape, x.dtype)]


@_op("Dropout")
def _dropout(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    for i, what in ((1, "ratio"), (2, "training_mode")):
        if _present(infos, i) and infos[i].size != 1:
            raise _fail(node, f"input {i} ({what}) must be a scalar, got shape {infos[i].shape}")
    out = [_info(x.shape, x.dtype)]
    if len(node.outputs) > 1:
        out.append(_info(x.shape, np.bool_))
    return out


# ------------------------------------------------------------ quantization
_QUANT_TYPES = {2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32}


def _qparam_check(node: Node, x: TensorInfo, scale: TensorInfo, opset: int) -> None:
    """Shape rules of QuantizeLinear/DequantizeLinear scales (opset 13+)."""
    rank = len(x.shape)
    if _int(node, "block_size", 0):
        if len(scale.shape) != rank:
            raise _fail(node, f"blocked quantization needs a rank-{rank} scale, got shape "
                              f"{scale.shape}")
        return
    if scale.size == 1 and len(scale.shape) <= 1:
        return
    if len(scale.shape) != 1 or opset < 13:
        raise _fail(node, f"scale must be a scalar or 1-D (per-axis), got shape {scale.shape}")
    axis = _axis(node, _int(node, "axis", 1), rank)
    if scale.shape[0] != x.shape[axis]:
        raise _fail(node, f"per-axis scale has {scale.shape[0]} entries but axis {axis} of the "
                          f"input has {x.shape[axis]}")


@_op("QuantizeLinear")
def _quantize_linear(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x, scale = infos[0], infos[1]
    _qparam_check(node, x, scale, opset)
    if _present(infos, 2):
        dtype = infos[2].dtype
        if infos[2].shape != scale.shape and not (infos[2].size == 1 and scale.size == 1):
            raise _fail(node, f"zero_point shape {infos[2].shape} differs from the scale's "
                              f"{scale.shape}")
    else:
        code = _int(node, "output_dtype", 0)
        dtype = _QUANT_TYPES.get(code, np.uint8) if code else np.uint8
        if code and code not in _QUANT_TYPES:
            raise UnsupportedOpError(f"QuantizeLinear(output_dtype={code})", node.name,
                                     ["uint8", "int8", "uint16", "int16", "int32"])
    return [_info(x.shape, dtype)]


@_op("DequantizeLinear")
def _dequantize_linear(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x, scale = infos[0], infos[1]
    _qparam_check(node, x, scale, opset)
    if _present(infos, 2) and infos[2].dtype != x.dtype:
        raise _fail(node, f"zero_point dtype {infos[2].dtype} differs from the input's {x.dtype}")
    return [_info(x.shape, scale.dtype)]


@_op("Cast")
def _cast(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    from onnx import helper
    to = helper.tensor_dtype_to_np_dtype(_int(node, "to", 1))
    x = infos[0]
    if x.value is not None:
        return [_with_value(x.value.astype(to))]
    return [_info(x.shape, to)]


# ------------------------------------------------------------------ binary
def broadcast_shapes(node: Node, a: Tuple[int, ...], b: Tuple[int, ...]) -> Tuple[int, ...]:
    """NumPy-style multidirectional broadcasting (ONNX's rule)."""
    n = max(len(a), len(b))
    a2 = (1,) * (n - len(a)) + tuple(a)
    b2 = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a2, b2):
        if x != y and x != 1 and y != 1:
            raise _fail(node, f"shapes {tuple(a)} and {tuple(b)} cannot be broadcast together")
        out.append(y if x == 1 else x)
    return tuple(out)


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": None,
           "Pow": np.power, "Max": np.maximum, "Min": np.minimum}


@_op(*_BINARY)
def _binary(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    if len(infos) < 2 or infos[1] is None:
        raise _fail(node, "expects two inputs")
    a, b = infos[0], infos[1]
    if a.dtype != b.dtype:
        raise _fail(node, f"inputs have different dtypes {a.dtype} and {b.dtype}")
    shape = broadcast_shapes(node, a.shape, b.shape)
    if a.value is not None and b.value is not None and np.issubdtype(a.dtype, np.integer):
        if node.op == "Div":
            with np.errstate(all="ignore"):
                v = np.where(b.value != 0, np.trunc(a.value / np.where(b.value == 0, 1, b.value)), 0)
            return [_with_value(v.astype(a.dtype))]
        return [_with_value(_BINARY[node.op](a.value, b.value).astype(a.dtype))]
    return [_info(shape, a.dtype)]


# -------------------------------------------------------------------- conv
def conv_pads(node: Node, in_spatial: Sequence[int], kernel: Sequence[int],
              strides: Sequence[int], dilations: Sequence[int]) -> List[int]:
    """Explicit begin/end pads (ONNX layout ``[b1, b2, ..., e1, e2, ...]``).

    Resolves ``auto_pad`` (``SAME_UPPER``, ``SAME_LOWER``, ``VALID``,
    ``NOTSET``) the way the ONNX specification defines it.
    """
    nd = len(in_spatial)
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad in ("NOTSET", ""):
        pads = _ints(node, "pads", [0] * (2 * nd))
        if len(pads) != 2 * nd:
            raise _fail(node, f"pads must have {2 * nd} values, got {len(pads)}")
        if any(p < 0 for p in pads):
            raise _fail(node, f"pads must be non-negative, got {pads}")
        return pads
    if auto_pad == "VALID":
        return [0] * (2 * nd)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ModelError(f"node {node.name!r} ({node.op}): unknown auto_pad {auto_pad!r}")
    begin, end = [], []
    for i in range(nd):
        out = -(-in_spatial[i] // strides[i])
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_spatial[i])
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return begin + end


def _window_params(node: Node, nd: int, kernel: Sequence[int]):
    strides = _ints(node, "strides", [1] * nd)
    dilations = _ints(node, "dilations", [1] * nd)
    if len(strides) != nd or len(dilations) != nd:
        raise _fail(node, f"strides and dilations must have {nd} values")
    if any(s < 1 for s in strides) or any(d < 1 for d in dilations):
        raise _fail(node, f"strides {strides} and dilations {dilations} must be >= 1")
    if any(k < 1 for k in kernel):
        raise _fail(node, f"kernel shape {list(kernel)} must be >= 1")
    return strides, dilations


def pool_output_shape(node: Node, in_spatial: Sequence[int], kernel: Sequence[int],
                      strides: Sequence[int], dilations: Sequence[int],
                      pads: Sequence[int], ceil_mode: bool = False) -> List[int]:
    """Output spatial extent of a sliding window op (conv or pooling)."""
    nd = len(in_spatial)
    out = []
    for i in range(nd):
        eff = (kernel[i] - 1) * dilations[i] + 1
        span = in_spatial[i] + pads[i] + pads[i + nd] - eff
        if span < 0:
            raise _fail(node, f"kernel extent {eff} exceeds padded input {in_spatial[i]} "
                              f"+ pads along spatial axis {i}")
        o = (-(-span // strides[i]) if ceil_mode else span // strides[i]) + 1
        if ceil_mode and (o - 1) * strides[i] >= in_spatial[i] + pads[i]:
            o -= 1  # the last window must start inside the input or left pad
        out.append(o)
    return out


@_op("Conv")
def _conv(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    if len(infos) < 2 or infos[1] is None:
        raise _fail(node, "expects inputs X and W")
    x, w = infos[0], infos[1]
    if len(x.shape) < 3 or len(w.shape) != len(x.shape):
        raise _fail(node, f"X has shape {x.shape} and W has shape {w.shape}; expected "
                          "N×C×spatial and M×C/group×kernel of the same rank")
    nd = len(x.shape) - 2
    group = _int(node, "group", 1)
    kernel = _ints(node, "kernel_shape", list(w.shape[2:]))
    if list(kernel) != list(w.shape[2:]):
        raise _fail(node, f"kernel_shape {kernel} disagrees with W's shape {w.shape}")
    if group < 1 or x.shape[1] % group or w.shape[0] % group or w.shape[1] * group != x.shape[1]:
        raise _fail(node, f"channels do not match: X has {x.shape[1]} channels, W has shape "
                          f"{w.shape}, group={group}")
    if _present(infos, 2) and infos[2].shape != (w.shape[0],):
        raise _fail(node, f"bias B has shape {infos[2].shape}, expected ({w.shape[0]},)")
    strides, dilations = _window_params(node, nd, kernel)
    pads = conv_pads(node, x.shape[2:], kernel, strides, dilations)
    spatial = pool_output_shape(node, x.shape[2:], kernel, strides, dilations, pads)
    return [_info((x.shape[0], w.shape[0], *spatial), x.dtype)]


@_op("MaxPool", "AveragePool", "LpPool")
def _pool(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    if len(x.shape) < 3:
        raise _fail(node, f"X must be N×C×spatial, got shape {x.shape}")
    nd = len(x.shape) - 2
    kernel = _ints(node, "kernel_shape")
    if kernel is None or len(kernel) != nd:
        raise _fail(node, f"kernel_shape must have {nd} values, got {kernel}")
    strides, dilations = _window_params(node, nd, kernel)
    pads = conv_pads(node, x.shape[2:], kernel, strides, dilations)
    spatial = pool_output_shape(node, x.shape[2:], kernel, strides, dilations, pads,
                                bool(_int(node, "ceil_mode", 0)))
    out = [_info((*x.shape[:2], *spatial), x.dtype)]
    if len(node.outputs) > 1:
        out.append(_info(out[0].shape, np.int64))
    return out


@_op("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    if len(x.shape) < 3:
        raise _fail(node, f"X must be N×C×spatial, got shape {x.shape}")
    return [_info((*x.shape[:2], *([1] * (len(x.shape) - 2))), x.dtype)]


@_op("BatchNormalization")
def _batchnorm(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    if len(infos) < 5 or any(i is None for i in infos[:5]):
        raise _fail(node, "expects five inputs X, scale, B, mean, var")
    x = infos[0]
    if len(x.shape) < 2:
        raise _fail(node, f"X must have a channel axis, got shape {x.shape}")
    for i, what in enumerate(("scale", "B", "input_mean", "input_var"), start=1):
        if infos[i].shape != (x.shape[1],):
            raise _fail(node, f"{what} has shape {infos[i].shape}, expected ({x.shape[1]},)")
    if _int(node, "training_mode", 0):
        raise UnsupportedOpError("BatchNormalization(training_mode=1)", node.name,
                                 ["BatchNormalization(training_mode=0)"])
    return [_info(x.shape, x.dtype)]


# ------------------------------------------------------------------ linear
@_op("Gemm")
def _gemm(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    if len(infos) < 2 or infos[1] is None:
        raise _fail(node, "expects inputs A and B")
    a, b = infos[0], infos[1]
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise _fail(node, f"A and B must be matrices, got shapes {a.shape} and {b.shape}")
    m, k = a.shape[::-1] if _int(node, "transA", 0) else a.shape
    k2, n = b.shape[::-1] if _int(node, "transB", 0) else b.shape
    if k != k2:
        raise _fail(node, f"inner dimensions differ: A gives K={k}, B gives K={k2}")
    if _present(infos, 2):
        broadcast_shapes(node, infos[2].shape, (m, n))
        if broadcast_shapes(node, infos[2].shape, (m, n)) != (m, n):
            raise _fail(node, f"C of shape {infos[2].shape} does not broadcast to {(m, n)}")
    return [_info((m, n), a.dtype)]


@_op("MatMul")
def _matmul(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    a, b = infos[0], infos[1]
    if not a.shape or not b.shape:
        raise _fail(node, "MatMul inputs must have rank >= 1")
    sa = (1,) + a.shape if len(a.shape) == 1 else a.shape
    sb = b.shape + (1,) if len(b.shape) == 1 else b.shape
    if sa[-1] != sb[-2]:
        raise _fail(node, f"inner dimensions differ: {a.shape} @ {b.shape}")
    batch = broadcast_shapes(node, sa[:-2], sb[:-2])
    out = list(batch) + [sa[-2], sb[-1]]
    if len(a.shape) == 1:
        out.pop(-2)
    if len(b.shape) == 1:
        out.pop(-1)
    return [_info(out, a.dtype)]


@_op("Softmax", "LogSoftmax")
def _softmax(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    _axis(node, _int(node, "axis", 1 if opset < 13 else -1), len(x.shape))
    return [_info(x.shape, x.dtype)]


# ------------------------------------------------------------------- shape
@_op("Flatten")
def _flatten(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    r = len(x.shape)
    axis = _int(node, "axis", 1)
    if not -r <= axis <= r:
        raise _fail(node, f"axis {axis} is out of range for a rank-{r} input")
    axis = axis + r if axis < 0 else axis
    shape = (int(np.prod(x.shape[:axis], dtype=np.int64)), int(np.prod(x.shape[axis:], dtype=np.int64)))
    if x.value is not None:
        return [_with_value(x.value.reshape(shape))]
    return [_info(shape, x.dtype)]


def reshape_target(node: Node, in_shape: Sequence[int], spec: Sequence[int],
                   allowzero: bool) -> Tuple[int, ...]:
    """Resolve ONNX Reshape's 0 and -1 entries."""
    out = []
    infer = -1
    for i, d in enumerate(spec):
        d = int(d)
        if d == -1:
            if infer >= 0:
                raise _fail(node, f"shape {list(spec)} has more than one -1")
            infer = i
            out.append(1)
        elif d == 0 and not allowzero:
            if i >= len(in_shape):
                raise _fail(node, f"shape {list(spec)} copies dimension {i} that the input "
                                  f"of shape {tuple(in_shape)} does not have")
            out.append(in_shape[i])
        elif d < 0:
            raise _fail(node, f"shape {list(spec)} has a negative entry {d}")
        else:
            out.append(d)
    total = int(np.prod(in_shape, dtype=np.int64))
    known = int(np.prod(out, dtype=np.int64))
    if infer >= 0:
        if known == 0 or total % known:
            raise _fail(node, f"cannot reshape {tuple(in_shape)} into {list(spec)}")
        out[infer] = total // known
    elif known != total:
        raise _fail(node, f"cannot reshape {tuple(in_shape)} ({total} elements) into "
                          f"{list(spec)} ({known} elements)")
    return tuple(out)


@_op("Reshape")
def _reshape(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    spec = _const(node, infos, 1, "shape")
    if spec.ndim != 1 or not np.issubdtype(spec.dtype, np.integer):
        raise _fail(node, f"shape must be a 1-D integer tensor, got {spec.dtype} {spec.shape}")
    shape = reshape_target(node, x.shape, spec.tolist(), bool(_int(node, "allowzero", 0)))
    if x.value is not None:
        return [_with_value(x.value.reshape(shape))]
    return [_info(shape, x.dtype)]


def _axes(node: Node, infos: Infos, opset: int, first_input_opset: int) -> Optional[List[int]]:
    if opset >= first_input_opset:
        if _present(infos, 1):
            return [int(a) for a in _const(node, infos, 1, "axes").ravel()]
        return None
    return _ints(node, "axes")


@_op("Squeeze")
def _squeeze(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    axes = _axes(node, infos, opset, 13)
    r = len(x.shape)
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    axes = sorted({_axis(node, a, r, "axes entry") for a in axes})
    for a in axes:
        if x.shape[a] != 1:
            raise _fail(node, f"cannot squeeze axis {a} of extent {x.shape[a]}")
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    if x.value is not None:
        return [_with_value(x.value.reshape(shape))]
    return [_info(shape, x.dtype)]


@_op("Unsqueeze")
def _unsqueeze(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    axes = _axes(node, infos, opset, 13)
    if axes is None:
        raise _fail(node, "axes are required")
    r = len(x.shape) + len(axes)
    axes = [_axis(node, a, r, "axes entry") for a in axes]
    if len(set(axes)) != len(axes):
        raise _fail(node, f"axes {axes} has duplicates")
    shape = list(x.shape)
    for a in sorted(axes):
        shape.insert(a, 1)
    if x.value is not None:
        return [_with_value(x.value.reshape(shape))]
    return [_info(shape, x.dtype)]


@_op("Transpose")
def _transpose(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    r = len(x.shape)
    perm = _ints(node, "perm", list(range(r))[::-1])
    if sorted(perm) != list(range(r)):
        raise _fail(node, f"perm {perm} is not a permutation of 0..{r - 1}")
    if x.value is not None:
        return [_with_value(np.transpose(x.value, perm))]
    return [_info([x.shape[p] for p in perm], x.dtype)]


@_op("Concat")
def _concat(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    present = [i for i in infos if i is not None]
    if not present:
        raise _fail(node, "needs at least one input")
    r = len(present[0].shape)
    if "axis" not in node.attrs:
        raise _fail(node, "attribute axis is required")
    axis = _axis(node, _int(node, "axis", 0), r)
    shape = list(present[0].shape)
    for i in present[1:]:
        if len(i.shape) != r or any(i.shape[d] != shape[d] for d in range(r) if d != axis):
            raise _fail(node, f"input shapes {[p.shape for p in present]} differ outside "
                              f"axis {axis}")
        if i.dtype != present[0].dtype:
            raise _fail(node, "inputs have different dtypes")
        shape[axis] += i.shape[axis]
    if _all_const(present):
        return [_with_value(np.concatenate([p.value for p in present], axis=axis))]
    return [_info(shape, present[0].dtype)]


@_op("Split")
def _split(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    axis = _axis(node, _int(node, "axis", 0), len(x.shape))
    n = len(node.outputs)
    if opset >= 13:
        sizes = _const(node, infos, 1, "split").tolist() if _present(infos, 1) else None
    else:
        sizes = _ints(node, "split")
    if sizes is None:
        num = _int(node, "num_outputs", n)
        if num != n:
            raise _fail(node, f"num_outputs={num} but the node has {n} outputs")
        chunk = -(-x.shape[axis] // n)
        sizes = [chunk] * (n - 1) + [x.shape[axis] - chunk * (n - 1)]
    if len(sizes) != n or sum(sizes) != x.shape[axis] or any(s < 0 for s in sizes):
        raise _fail(node, f"split sizes {sizes} do not partition extent {x.shape[axis]} "
                          f"into {n} outputs")
    outs = []
    for s in sizes:
        shape = list(x.shape)
        shape[axis] = s
        outs.append(_info(shape, x.dtype))
    return outs


@_op("Pad")
def _pad(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    r = len(x.shape)
    if opset >= 11:
        pads = [int(p) for p in _const(node, infos, 1, "pads").ravel()]
    else:
        pads = _ints(node, "pads", [])
    if opset >= 18 and _present(infos, 3):
        axes = [_axis(node, int(a), r, "axes entry") for a in _const(node, infos, 3, "axes").ravel()]
    else:
        axes = list(range(r))
    if len(pads) != 2 * len(axes):
        raise _fail(node, f"pads has {len(pads)} values, expected {2 * len(axes)}")
    mode = node.attrs.get("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ModelError(f"node {node.name!r} (Pad): unknown mode {mode!r}")
    shape = list(x.shape)
    for j, a in enumerate(axes):
        shape[a] += pads[j] + pads[j + len(axes)]
        if shape[a] < 0:
            raise _fail(node, f"pads {pads} make axis {a} negative")
        if mode == "reflect" and max(pads[j], pads[j + len(axes)]) >= x.shape[a] and shape[a] != x.shape[a]:
            raise _fail(node, f"reflect pads {pads} exceed input extent {x.shape[a]} - 1")
    return [_info(shape, x.dtype)]


@_op("Shape")
def _shape(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    s = np.array(infos[0].shape, np.int64)
    r = len(s)
    start = _int(node, "start", 0)
    end = _int(node, "end", r)
    start = min(max(start + r if start < 0 else start, 0), r)
    end = min(max(end + r if end < 0 else end, 0), r)
    return [_with_value(s[start:end])]


@_op("Size")
def _size(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    return [_with_value(np.array(infos[0].size, np.int64))]


@_op("Gather")
def _gather(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    data, idx = infos[0], infos[1]
    axis = _axis(node, _int(node, "axis", 0), len(data.shape))
    if data.value is None or idx.value is None:
        raise UnsupportedOpError("Gather", node.name, ["Gather (on constants, folded)"])
    ind = idx.value.astype(np.int64)
    n = data.shape[axis]
    if np.any(ind < -n) or np.any(ind >= n):
        raise _fail(node, f"indices {ind.tolist()} out of range for extent {n}")
    return [_with_value(np.take(data.value, ind, axis=axis))]


@_op("Slice")
def _slice(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    x = infos[0]
    r = len(x.shape)
    if opset >= 10:
        starts = _const(node, infos, 1, "starts").tolist()
        ends = _const(node, infos, 2, "ends").tolist()
        axes = _const(node, infos, 3, "axes").tolist() if _present(infos, 3) else list(range(len(starts)))
        steps = _const(node, infos, 4, "steps").tolist() if _present(infos, 4) else [1] * len(starts)
    else:
        starts, ends = _ints(node, "starts"), _ints(node, "ends")
        axes = _ints(node, "axes", list(range(len(starts))))
        steps = [1] * len(starts)
    if not (len(starts) == len(ends) == len(axes) == len(steps)):
        raise _fail(node, "starts, ends, axes and steps must have the same length")
    index = [slice(None)] * r
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise _fail(node, "steps must be non-zero")
        index[_axis(node, int(a), r, "axes entry")] = slice(int(s), int(e), int(st))
    shape = np.empty(x.shape, dtype=np.uint8)[tuple(index)].shape if x.size <= MAX_FOLD_ELEMENTS \
        else tuple(len(range(*sl.indices(d))) for sl, d in zip(index, x.shape))
    if x.value is not None:
        return [_with_value(x.value[tuple(index)])]
    return [_info(shape, x.dtype)]


@_op("Constant")
def _constant(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    return [_with_value(constant_value(node))]


def constant_value(node: Node) -> np.ndarray:
    """The tensor a Constant node produces."""
    a = node.attrs
    if "value" in a:
        return np.asarray(a["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype=dtype)
    raise ModelError(f"node {node.name!r} (Constant): no supported value attribute "
                     f"(has {sorted(a)})")


@_op("ConstantOfShape")
def _constant_of_shape(node: Node, infos: Infos, opset: int) -> List[TensorInfo]:
    shape = _const(node, infos, 0, "shape").astype(np.int64)
    if np.any(shape < 0):
        raise _fail(node, f"negative shape {shape.tolist()}")
    value = np.asarray(node.attrs.get("value", np.zeros(1, np.float32)))
    if int(np.prod(shape)) <= MAX_FOLD_ELEMENTS:
        return [_with_value(np.full(shape.tolist(), value.ravel()[0], dtype=value.dtype))]
    return [_info(shape.tolist(), value.dtype)]


# How many leading inputs each op requires (ONNX schemas); an omitted one
# ("" or absent) is a malformed node.
REQUIRED_INPUTS = {
    "Conv": 2, "Gemm": 2, "MatMul": 2, "BatchNormalization": 5, "Add": 2, "Sub": 2, "Mul": 2,
    "Div": 2, "Pow": 2, "Max": 1, "Min": 1, "Reshape": 2, "Gather": 2, "Expand": 2, "Slice": 1,
    "ConstantOfShape": 1, "Constant": 0, "Concat": 1, "Split": 1, "Pad": 1,
    "QuantizeLinear": 2, "DequantizeLinear": 2,
}


def check_required_inputs(node: Node) -> None:
    """Raise ModelError when a required input of ``node`` is omitted."""
    need = REQUIRED_INPUTS.get(node.op, 1)
    for i in range(need):
        if i >= len(node.inputs) or not node.inputs[i]:
            raise ModelError(f"node {node.name!r} ({node.op}): input {i} is required but "
                             f"omitted (the op needs {need} inputs)")


FOLDABLE_OPS = frozenset({"Shape", "Size", "Gather", "Slice", "Concat", "Unsqueeze", "Squeeze",
                          "Cast", "Constant", "ConstantOfShape", "Reshape", "Flatten",
                          "Transpose", "Identity", "Add", "Sub", "Mul", "Div"})


# ----------------------------------------------------------------- driver
def infer_shapes(model: Model, batch_size: Optional[int] = None,
                 input_shapes: Optional[Mapping[str, Sequence[int]]] = None
                 ) -> Dict[str, TensorInfo]:
    """Shapes, dtypes and (for small constants) values of every tensor."""
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer))
                                   or isinstance(batch_size, bool) or batch_size < 1):
        from .exceptions import ValidationError
        raise ValidationError(f"batch_size must be a positive int, got {batch_size!r}")
    infos: Dict[str, TensorInfo] = {}
    for k, v in model.initializers.items():
        infos[k] = TensorInfo(tuple(v.shape), v.dtype, v if v.size <= MAX_FOLD_ELEMENTS else None)
    given = dict(input_shapes or {})
    for vi in model.inputs:
        if vi.name in infos:
            continue
        shape = list(given.get(vi.name, vi.shape))
        for i, d in enumerate(shape):
            if isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
                continue
            if i == 0 and batch_size is not None:
                shape[i] = batch_size
            elif i == 0 and len(shape) > 1:
                shape[i] = 1  # symbolic batch defaults to 1
            else:
                raise ShapeError(f"input {vi.name!r} has symbolic dimension {d!r} at axis {i}; "
                                 f"pass input_shapes={{{vi.name!r}: [...]}}")
        _check_size(vi.name, shape)
        infos[vi.name] = TensorInfo(tuple(int(d) for d in shape), vi.dtype)
    for node in model.nodes:
        fn = SHAPE_FUNCTIONS.get(node.op) if node.domain in ("", "ai.onnx") else None
        if fn is None:
            raise UnsupportedOpError(node.op if not node.domain else f"{node.domain}.{node.op}",
                                     node.name, SHAPE_FUNCTIONS)
        check_required_inputs(node)
        ins = [infos[t] if t else None for t in node.inputs]
        try:
            outs = fn(node, ins, model.opset)
        except (ShapeError, ModelError, UnsupportedOpError):
            raise
        except (ValueError, TypeError, IndexError, KeyError, OverflowError, AttributeError) as e:
            raise _fail(node, f"invalid attributes or inputs ({e})") from None
        if len(outs) < len([o for o in node.outputs if o]):
            raise _fail(node, f"has {len(node.outputs)} outputs, the op defines {len(outs)}")
        for name, info in zip(node.outputs, outs):
            if name:
                _check_size(name, info.shape)
                infos[name] = info
    return infos


def _check_size(name: str, shape: Sequence[int]) -> None:
    n = 1
    for d in shape:
        if d < 0:
            raise ShapeError(f"tensor {name!r} has a negative dimension in {tuple(shape)}")
        n *= int(d)
    if n > MAX_ELEMENTS:
        raise ShapeError(f"tensor {name!r} of shape {tuple(shape)} has {n:,} elements, more "
                         f"than the {MAX_ELEMENTS:,} lpcv accepts")
