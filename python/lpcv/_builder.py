"""A private helper that makes building IR models concise.

:class:`GraphBuilder` emits ONNX-style nodes (opset 17) with fresh, unique
names, creates seeded random weights, and tracks the static shape of every
tensor it produces, so that callers only say *what* layer comes next.

Weights are realistic rather than trained: convolution and linear weights are
He-normal (``std = sqrt(2 / fan_in)``, fan-in mode so that the scale of the
activations is preserved), biases are small random, and BatchNormalization
has scale 1 (or a given ``gamma``), a small random shift, and *calibrated*
running statistics: the builder runs a small probe batch of standard-normal
images through the network as it is built (NumPy, lazily, only up to the
BatchNormalization being created) and sets each running mean and variance to
the statistics of that layer's input, with a little noise, as a trained
network's statistics would be. So the network behaves numerically like a
trained one: activations stay O(1) through hundreds of layers (with a
standard-normal input, the logits of the zoo's BatchNormalization networks
have a standard deviation near one). Networks without BatchNormalization
(AlexNet, VGG, SqueezeNet) run no probe at all; He initialization alone keeps
them tame (logits of a few units).

Examples
--------
>>> from lpcv._builder import GraphBuilder
>>> b = GraphBuilder("tiny", random_state=0)
>>> x = b.input("input", ("N", 3, 32, 32))
>>> y = b.relu(b.bn(b.conv(x, 8, 3, bias=False)))
>>> y = b.linear(b.flatten(b.global_avgpool(y)), 10)
>>> m = b.build({"logits": y})
>>> m.outputs[0].name, m.outputs[0].shape
('logits', ('N', 10))
>>> m.num_parameters()  # 8*3*3*3 conv + 2*8 BN + 10*8 + 10 linear
322
>>> [n.op for n in m.nodes]
['Conv', 'BatchNormalization', 'Relu', 'GlobalAveragePool', 'Flatten', 'Gemm']
"""
from __future__ import annotations

import contextlib
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np

from .exceptions import ShapeError, ValidationError
from .graph import Model, Node, ValueInfo

__all__ = ["GraphBuilder"]

Dim = Union[int, str]
IntOrPair = Union[int, Sequence[int]]
Pads = Tuple[int, int, int, int]


def _pair(v: IntOrPair, what: str) -> Tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(i) for i in v)
    if len(t) != 2:
        raise ValidationError(f"{what} must be an int or a pair of ints, got {v!r}")
    return t  # type: ignore[return-value]


def _pads(pad: Union[None, int, Sequence[int]], kernel: Tuple[int, int],
          dilation: Tuple[int, int]) -> Pads:
    """ONNX ``pads`` (top, left, bottom, right); None means PyTorch's
    ``(k - 1) // 2 * dilation`` on each side."""
    if pad is None:
        ph = (kernel[0] - 1) // 2 * dilation[0]
        pw = (kernel[1] - 1) // 2 * dilation[1]
        return ph, pw, ph, pw
    if isinstance(pad, (int, np.integer)):
        return (int(pad),) * 4  # type: ignore[return-value]
    t = tuple(int(i) for i in pad)
    if len(t) == 2:
        return t[0], t[1], t[0], t[1]
    if len(t) == 4:
        return t  # type: ignore[return-value]
    raise ValidationError(f"pad must be None, an int, a pair or 4 ints, got {pad!r}")


def _out_extent(size: int, k: int, s: int, p0: int, p1: int, d: int = 1,
                ceil_mode: bool = False) -> int:
    eff = d * (k - 1) + 1
    span = size + p0 + p1 - eff
    if span < 0:
        raise ShapeError(f"kernel extent {eff} is larger than the padded input extent "
                         f"{size + p0 + p1}; use a larger resolution")
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + p0:  # the last window would start in the padding
            out -= 1
    else:
        out = span // s + 1
    return out


# ---------------------------------------------------------------------------
# NumPy reference kernels for the probe pass (NCHW, float32)
# ---------------------------------------------------------------------------
def _window(xp: np.ndarray, i: int, j: int, s: Tuple[int, int], oh: int, ow: int) -> np.ndarray:
    return xp[:, :, i: i + s[0] * (oh - 1) + 1: s[0], j: j + s[1] * (ow - 1) + 1: s[1]]


def _np_conv(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], s: Tuple[int, int],
             p: Pads, d: Tuple[int, int], groups: int, oh: int, ow: int) -> np.ndarray:
    n, c = x.shape[:2]
    o, cpg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3]))) if any(p) else x
    if groups == c and cpg == 1 and o == c:  # depthwise: shifted multiply-adds
        out = np.zeros((n, o, oh, ow), np.float32)
        for i in range(kh):
            for j in range(kw):
                wij = w[:, 0, i, j][None, :, None, None]
                out += _window(xp, i * d[0], j * d[1], s, oh, ow) * wij
    elif kh == kw == 1 and s == (1, 1) and not any(p) and groups == 1:
        out = np.matmul(w.reshape(o, c), x.reshape(n, c, oh * ow)).reshape(n, o, oh, ow)
    else:  # im2col + one matmul per group
        cols = np.empty((n, groups, cpg, kh * kw, oh, ow), np.float32)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, :, i * kw + j] = _window(xp, i * d[0], j * d[1], s, oh, ow).reshape(
                    n, groups, cpg, oh, ow)
        wg = w.reshape(groups, o // groups, cpg * kh * kw)
        out = np.matmul(wg, cols.reshape(n, groups, cpg * kh * kw, oh * ow)).reshape(n, o, oh, ow)
    if b is not None:
        out += b[None, :, None, None]
    return out


def _np_pool(x: np.ndarray, mode: str, k: Tuple[int, int], s: Tuple[int, int], p: Pads,
             oh: int, ow: int, count_include_pad: bool) -> np.ndarray:
    h, w = x.shape[2:]
    eh = max(0, (oh - 1) * s[0] + k[0] - (h + p[0] + p[2]))  # ceil_mode overhang
    ew = max(0, (ow - 1) * s[1] + k[1] - (w + p[1] + p[3]))
    widths = ((0, 0), (0, 0), (p[0], p[2] + eh), (p[1], p[3] + ew))
    if mode == "max":
        xp = np.pad(x, widths, constant_values=-np.inf)
        out = np.full(x.shape[:2] + (oh, ow), -np.inf, np.float32)
        for i in range(k[0]):
            for j in range(k[1]):
                np.maximum(out, _window(xp, i, j, s, oh, ow), out=out)
        return out
    xp = np.pad(x, widths)
    ones = np.pad(np.ones((1, 1, h, w), np.float32),
                  ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])),
                  constant_values=1.0 if count_include_pad else 0.0)
    ones = np.pad(ones, ((0, 0), (0, 0), (0, eh), (0, ew)))
    tot = np.zeros(x.shape[:2] + (oh, ow), np.float32)
    cnt = np.zeros((1, 1, oh, ow), np.float32)
    for i in range(k[0]):
        for j in range(k[1]):
            tot += _window(xp, i, j, s, oh, ow)
            cnt += _window(ones, i, j, s, oh, ow)
    return tot / cnt


def _np_sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


def _np_hardsigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x / np.float32(6.0) + np.float32(0.5), 0.0, 1.0).astype(np.float32)


class GraphBuilder:
    """Build an :class:`lpcv.Model` layer by layer.

    Every method takes tensor names and returns the name of the tensor it
    produced. Node names are unique: a method's ``name`` (or the op's short
    name) prefixed by the current :meth:`scope`, with ``_1``, ``_2``...
    appended on collision; a node's (first) output tensor has the node's
    name. Weight initializers are called ``<node>.weight`` / ``<node>.bias``
    (and ``<node>.running_mean`` / ``<node>.running_var`` for
    BatchNormalization), as PyTorch names them.

    Parameters
    ----------
    name : str
        Model name.
    random_state : int or numpy.random.Generator, optional
        Seed of all random weights; the same seed gives identical weights.
    opset : int
        Default-domain opset the emitted attributes follow (>= 13).
    probe_batch : int
        Images in the probe batch that calibrates BatchNormalization.

    Notes
    -----
    Shapes are tracked with the batch dimension left symbolic (``"N"``), so
    the builder needs no shape-inference pass. Activations are 4-D
    ``(N, C, H, W)`` or 2-D ``(N, F)``.
    """

    def __init__(self, name: str = "model", *, random_state: Any = 0, opset: int = 17,
                 probe_batch: int = 2) -> None:
        if int(opset) < 13:
            raise ValidationError(f"opset must be >= 13 (Split/Clip input forms), got {opset}")
        self.name = str(name)
        self.opset = int(opset)
        self.rng = np.random.default_rng(random_state)
        self._probe_rng = np.random.default_rng(self.rng.integers(2 ** 63))
        self._probe_batch = int(probe_batch)
        self.nodes: List[Node] = []
        self.inputs: List[ValueInfo] = []
        self.initializers: Dict[str, np.ndarray] = {}
        self.metadata: Dict[str, str] = {}
        self._shapes: Dict[str, Tuple[Dim, ...]] = {}
        self._used: set = set()
        self._scope: List[str] = []
        # Lazy probe evaluation: thunks in creation (= topological) order.
        self._pending: List[Tuple[List[str], Callable[..., Any], List[str]]] = []
        self._done = 0
        self._vals: Dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ naming
    @contextlib.contextmanager
    def scope(self, prefix: Union[str, int]) -> Iterator[None]:
        """Prefix the names of the nodes created inside the ``with`` block.

        Scopes nest and join with ``"."`` (``layer1.0.conv1``).
        """
        self._scope.append(str(prefix))
        try:
            yield
        finally:
            self._scope.pop()

    def _fresh(self, base: str) -> str:
        full = ".".join([*self._scope, base]) if self._scope else base
        cand, i = full, 0
        while cand in self._used:
            i += 1
            cand = f"{full}_{i}"
        self._used.add(cand)
        return cand

    def _add_init(self, name: str, value: np.ndarray) -> str:
        if name in self._used:
            raise ValidationError(f"name {name!r} is already used")
        self._used.add(name)
        self.initializers[name] = value
        self._vals[name] = value
        return name

    def _const(self, key: str, value: Any, dtype: Any = np.float32) -> str:
        """A shared constant initializer ``const.<key>`` (created once)."""
        name = f"const.{key}"
        arr = np.asarray(value, dtype=dtype)
        if name in self.initializers:
            if not np.array_equal(self.initializers[name], arr):
                raise ValidationError(f"constant {name!r} redefined with another value")
            return name
        return self._add_init(name, arr)

    def _emit(self, op: str, base: Optional[str], inputs: Sequence[str],
              attrs: Optional[Mapping[str, Any]], shapes: Sequence[Tuple[Dim, ...]],
              fn: Callable[..., Any], reserved: bool = False) -> List[str]:
        """Append a node and its probe thunk ``fn(*input_values) -> value(s)``.

        ``reserved`` means ``base`` is a name already claimed with :meth:`_fresh`.
        """
        for t in inputs:
            if t and t not in self._shapes and t not in self.initializers:
                raise ValidationError(f"{op}: unknown tensor {t!r}")
        name = base if (reserved and base) else self._fresh(base or op.lower())
        if len(shapes) == 1:
            outs = [name]
        else:
            outs = [self._fresh(f"{name}.out{i}") for i in range(len(shapes))]
        self.nodes.append(Node(op, name, list(inputs), outs, dict(attrs or {})))
        for o, s in zip(outs, shapes):
            self._shapes[o] = tuple(s)
        self._pending.append((outs, fn, [t for t in inputs if t]))
        return outs

    def _value(self, t: str) -> np.ndarray:
        """The probe batch's value of tensor ``t`` (evaluating pending nodes)."""
        while t not in self._vals:
            if self._done >= len(self._pending):
                raise ValidationError(f"no value for tensor {t!r}")
            outs, fn, ins = self._pending[self._done]
            res = fn(*[self._vals[i] for i in ins])
            if len(outs) == 1:
                res = [res]
            for o, r in zip(outs, res):
                self._vals[o] = np.asarray(r, np.float32) if r.dtype != np.float32 else r
            self._done += 1
        return self._vals[t]

    # ------------------------------------------------------------------ shapes
    def shape(self, t: str) -> Tuple[Dim, ...]:
        """The tracked shape of tensor ``t`` (batch dimension ``"N"``)."""
        try:
            return self._shapes[t]
        except (KeyError, TypeError):
            raise ValidationError(f"unknown tensor {t!r}") from None

    def channels(self, t: str) -> int:
        """Size of dimension 1 (channels or features) of tensor ``t``."""
        return int(self.shape(t)[1])  # type: ignore[arg-type]

    def _spatial(self, t: str, what: str) -> Tuple[int, int]:
        s = self.shape(t)
        if len(s) != 4:
            raise ShapeError(f"{what} expects a 4-D (N, C, H, W) tensor, {t!r} has shape {s}")
        return int(s[2]), int(s[3])  # type: ignore[arg-type]

    def _unary(self, op: str, base: Optional[str], x: str, fn: Callable[..., Any],
               attrs: Optional[Mapping[str, Any]] = None, extra: Sequence[str] = ()) -> str:
        return self._emit(op, base, [x, *extra], attrs, [self.shape(x)], fn)[0]

    # ------------------------------------------------------------------ I/O
    def input(self, name: str = "input", shape: Sequence[Dim] = ("N", 3, 224, 224),
              dtype: Any = np.float32) -> str:
        """Declare a graph input (probed with standard-normal values)."""
        if name in self._used:
            raise ValidationError(f"name {name!r} is already used")
        self._used.add(name)
        shape = tuple(shape)
        self.inputs.append(ValueInfo(name, shape, np.dtype(dtype)))
        self._shapes[name] = shape
        probe_shape = (self._probe_batch, *[int(d) for d in shape[1:]])  # type: ignore[arg-type]
        rng = self._probe_rng
        self._pending.append(([name], lambda: rng.standard_normal(probe_shape, np.float32), []))
        return name

    def build(self, outputs: Union[Mapping[str, str], Sequence[str]],
              metadata: Optional[Mapping[str, str]] = None) -> Model:
        """Assemble the model.

        Parameters
        ----------
        outputs : mapping or sequence of str
            Graph outputs. A mapping ``{new_name: tensor}`` renames tensors
            (e.g. ``{"logits": y}``); a sequence keeps the names.
        metadata : mapping, optional
            Extra ``metadata_props`` (string values).

        Returns
        -------
        Model
        """
        if isinstance(outputs, Mapping):
            pairs = [(str(k), str(v)) for k, v in outputs.items()]
        else:
            pairs = [(str(v), str(v)) for v in outputs]
        rename = {}
        for new, old in pairs:
            if old not in self._shapes:
                raise ValidationError(f"unknown output tensor {old!r}")
            if new != old:
                if new in self._used:
                    raise ValidationError(f"output name {new!r} is already used")
                rename[old] = new
        nodes = [Node(n.op, n.name, [rename.get(t, t) for t in n.inputs],
                      [rename.get(t, t) for t in n.outputs], n.attrs, n.domain)
                 for n in self.nodes]
        outs = [ValueInfo(new, self.shape(old), np.float32) for new, old in pairs]
        meta = dict(self.metadata)
        meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
        for arr in self.initializers.values():  # the builder's own arrays: freeze, don't copy
            arr.flags.writeable = False
        return Model(nodes, self.inputs, outs, self.initializers, opset=self.opset,
                     name=self.name, metadata=meta, copy_arrays=False)

    # ------------------------------------------------------------------ weights
    def _he(self, shape: Tuple[int, ...], fan_in: int) -> np.ndarray:
        w = self.rng.standard_normal(shape, dtype=np.float32)
        w *= np.float32(np.sqrt(2.0 / fan_in))
        return w

    def _bias(self, n: int) -> np.ndarray:
        return (self.rng.standard_normal(n, dtype=np.float32) * np.float32(0.01))

    # ------------------------------------------------------------------ layers
    def conv(self, x: str, out_ch: int, kernel: IntOrPair, stride: IntOrPair = 1,
             pad: Union[None, int, Sequence[int]] = None, groups: int = 1,
             dilation: IntOrPair = 1, bias: bool = True, name: Optional[str] = None) -> str:
        """2-D convolution (ONNX ``Conv``), He-normal weights ``(out, in/groups, kh, kw)``.

        ``pad=None`` pads ``(k - 1) // 2 * dilation`` on every side, as
        torchvision's ``Conv2dNormActivation`` does; an int pads all sides, a
        pair is (height, width) and four ints are ONNX's (top, left, bottom, right).
        """
        h, w = self._spatial(x, "conv")
        cin = self.channels(x)
        out_ch, groups = int(out_ch), int(groups)
        if out_ch < 1 or groups < 1 or cin % groups or out_ch % groups:
            raise ValidationError(f"conv: in_channels {cin} and out_channels {out_ch} must "
                                  f"be divisible by groups {groups}")
        k, s, d = _pair(kernel, "kernel"), _pair(stride, "stride"), _pair(dilation, "dilation")
        p = _pads(pad, k, d)
        oh = _out_extent(h, k[0], s[0], p[0], p[2], d[0])
        ow = _out_extent(w, k[1], s[1], p[1], p[3], d[1])
        cpg = cin // groups
        name = self._fresh(name or "conv")
        ins = [x, self._add_init(f"{name}.weight",
                                 self._he((out_ch, cpg, k[0], k[1]), cpg * k[0] * k[1]))]
        if bias:
            ins.append(self._add_init(f"{name}.bias", self._bias(out_ch)))
        attrs = {"kernel_shape": list(k), "strides": list(s), "pads": list(p),
                 "dilations": list(d), "group": groups}

        def fn(xv: np.ndarray, wv: np.ndarray, bv: Optional[np.ndarray] = None) -> np.ndarray:
            return _np_conv(xv, wv, bv, s, p, d, groups, oh, ow)

        return self._emit("Conv", name, ins, attrs, [("N", out_ch, oh, ow)], fn, reserved=True)[0]

    def bn(self, x: str, eps: float = 1e-5, gamma: float = 1.0, name: Optional[str] = None) -> str:
        """BatchNormalization (inference form) with calibrated running statistics.

        ``gamma`` is the value of the (constant) scale vector; a value below
        one on the last BatchNormalization of a residual branch keeps the
        trunk's variance from growing with depth. The running mean and
        variance are the per-channel statistics of ``x`` on the probe batch
        with a little noise; beta is small random.
        """
        c = self.channels(x)
        name = self._fresh(name or "bn")
        v = self._value(x).astype(np.float64)
        axes = (0,) + tuple(range(2, v.ndim))
        mu, var = v.mean(axis=axes), v.var(axis=axes)
        sd = np.sqrt(var)
        scale = np.full(c, gamma, np.float32)
        beta = (self.rng.standard_normal(c) * 0.02).astype(np.float32)
        rmean = (mu + self.rng.standard_normal(c) * 0.02 * sd).astype(np.float32)
        rvar = (np.maximum(var, 1e-4) * np.exp(self.rng.standard_normal(c) * 0.05)
                ).astype(np.float32)
        ins = [x]
        for suffix, arr in (("weight", scale), ("bias", beta), ("running_mean", rmean),
                            ("running_var", rvar)):
            ins.append(self._add_init(f"{name}.{suffix}", arr))
        a = (scale / np.sqrt(rvar + np.float32(eps))).astype(np.float32)
        shift = (beta - rmean * a).astype(np.float32)
        bshape = (1, c) + (1,) * (len(self.shape(x)) - 2)

        def fn(xv: np.ndarray, *_: np.ndarray) -> np.ndarray:
            return xv * a.reshape(bshape) + shift.reshape(bshape)

        return self._emit("BatchNormalization", name, ins, {"epsilon": float(eps)},
                          [self.shape(x)], fn, reserved=True)[0]

    # ------------------------------------------------------------------ activations
    def relu(self, x: str, name: Optional[str] = None) -> str:
        """ONNX ``Relu``."""
        return self._unary("Relu", name, x, lambda v: np.maximum(v, np.float32(0)))

    def relu6(self, x: str, name: Optional[str] = None) -> str:
        """ReLU6 as ONNX ``Clip`` with ``min``/``max`` initializer inputs (opset >= 11).

        The bounds are two float32 scalars (``const.relu6_min`` = 0 and
        ``const.relu6_max`` = 6) shared by every Clip of the model.
        """
        lo = self._const("relu6_min", 0.0)
        hi = self._const("relu6_max", 6.0)
        return self._unary("Clip", name or "relu6", x,
                           lambda v, a, b: np.clip(v, a, b), extra=[lo, hi])

    def hardswish(self, x: str, name: Optional[str] = None) -> str:
        """ONNX ``HardSwish`` (``x * relu6(x + 3) / 6``, PyTorch's Hardswish)."""
        return self._unary("HardSwish", name or "hardswish", x, lambda v: v * _np_hardsigmoid(v))

    def hardsigmoid(self, x: str, name: Optional[str] = None) -> str:
        """ONNX ``HardSigmoid`` with ``alpha=1/6, beta=0.5`` (PyTorch's Hardsigmoid;
        ONNX's default alpha is 0.2)."""
        return self._unary("HardSigmoid", name or "hardsigmoid", x, _np_hardsigmoid,
                           {"alpha": 1.0 / 6.0, "beta": 0.5})

    def sigmoid(self, x: str, name: Optional[str] = None) -> str:
        """ONNX ``Sigmoid``."""
        return self._unary("Sigmoid", name, x, _np_sigmoid)

    def silu(self, x: str, name: Optional[str] = None) -> str:
        """SiLU (swish) written as ``x * Sigmoid(x)``: two nodes."""
        base = name or "silu"
        s = self.sigmoid(x, name=f"{base}.sigmoid")
        return self.mul(x, s, name=base)

    # ------------------------------------------------------------------ elementwise
    def add(self, a: str, b: str, name: Optional[str] = None) -> str:
        """ONNX ``Add`` of two tensors of the same shape (a residual connection)."""
        if self.shape(a) != self.shape(b):
            raise ShapeError(f"add: shapes {self.shape(a)} and {self.shape(b)} differ")
        return self._emit("Add", name, [a, b], None, [self.shape(a)], np.add)[0]

    def mul(self, a: str, b: str, name: Optional[str] = None) -> str:
        """ONNX ``Mul``; ``b`` may be an ``(N, C, 1, 1)`` per-channel scale."""
        sa, sb = self.shape(a), self.shape(b)
        if len(sa) != len(sb) or any(db not in (1, da) for da, db in zip(sa[1:], sb[1:])):
            raise ShapeError(f"mul: shape {sb} does not broadcast to {sa}")
        return self._emit("Mul", name, [a, b], None, [sa], np.multiply)[0]

    # ------------------------------------------------------------------ pooling
    def _pool(self, op: str, x: str, kernel: IntOrPair, stride: Optional[IntOrPair],
              pad: Union[int, Sequence[int]], ceil_mode: bool, name: Optional[str],
              count_include_pad: Optional[bool]) -> str:
        h, w = self._spatial(x, op)
        k = _pair(kernel, "kernel")
        s = _pair(stride if stride is not None else kernel, "stride")
        p = _pads(pad, k, (1, 1))
        oh = _out_extent(h, k[0], s[0], p[0], p[2], 1, ceil_mode)
        ow = _out_extent(w, k[1], s[1], p[1], p[3], 1, ceil_mode)
        attrs: Dict[str, Any] = {"kernel_shape": list(k), "strides": list(s), "pads": list(p),
                                 "ceil_mode": int(bool(ceil_mode))}
        mode = "max" if op == "MaxPool" else "avg"
        if count_include_pad is not None:
            attrs["count_include_pad"] = int(bool(count_include_pad))

        def fn(v: np.ndarray) -> np.ndarray:
            return _np_pool(v, mode, k, s, p, oh, ow, bool(count_include_pad))

        return self._emit(op, name, [x], attrs, [("N", self.channels(x), oh, ow)], fn)[0]

    def maxpool(self, x: str, kernel: IntOrPair, stride: Optional[IntOrPair] = None,
                pad: Union[int, Sequence[int]] = 0, ceil_mode: bool = False,
                name: Optional[str] = None) -> str:
        """ONNX ``MaxPool`` (stride defaults to the kernel size, as in PyTorch)."""
        return self._pool("MaxPool", x, kernel, stride, pad, ceil_mode, name or "maxpool", None)

    def avgpool(self, x: str, kernel: IntOrPair, stride: Optional[IntOrPair] = None,
                pad: Union[int, Sequence[int]] = 0, ceil_mode: bool = False,
                count_include_pad: bool = True, name: Optional[str] = None) -> str:
        """ONNX ``AveragePool`` (PyTorch's default ``count_include_pad=True``)."""
        return self._pool("AveragePool", x, kernel, stride, pad, ceil_mode, name or "avgpool",
                          count_include_pad)

    def adaptive_avgpool(self, x: str, size: IntOrPair, name: Optional[str] = None) -> str:
        """PyTorch's ``AdaptiveAvgPool2d(size)`` where ONNX can express it exactly.

        Emits nothing when the input already has that spatial size, a
        ``GlobalAveragePool`` for size 1, and an ``AveragePool`` with
        ``kernel = stride = H / size`` when the input extent is a multiple of
        the output extent.

        Raises
        ------
        ShapeError
            When an input extent is not a multiple of the output extent
            (adaptive pooling then uses windows of varying size, which a
            single ONNX op cannot express).
        """
        h, w = self._spatial(x, "adaptive_avgpool")
        oh, ow = _pair(size, "size")
        if (h, w) == (oh, ow):
            return x
        if (oh, ow) == (1, 1):
            return self.global_avgpool(x, name=name)
        if h % oh or w % ow:
            raise ShapeError(
                f"AdaptiveAvgPool2d to {oh}x{ow} from a {h}x{w} feature map needs "
                f"windows of varying size, which no single ONNX op expresses; choose "
                f"a resolution whose feature map here is a multiple of {oh}x{ow}")
        return self.avgpool(x, (h // oh, w // ow), name=name or "avgpool")

    def global_avgpool(self, x: str, name: Optional[str] = None) -> str:
        """ONNX ``GlobalAveragePool`` → ``(N, C, 1, 1)``."""
        self._spatial(x, "global_avgpool")
        return self._emit("GlobalAveragePool", name or "global_avgpool", [x], None,
                          [("N", self.channels(x), 1, 1)],
                          lambda v: v.mean(axis=(2, 3), keepdims=True))[0]

    # ------------------------------------------------------------------ reshaping
    def flatten(self, x: str, name: Optional[str] = None) -> str:
        """ONNX ``Flatten`` with ``axis=1`` → ``(N, C*H*W)``."""
        rest = int(np.prod([int(d) for d in self.shape(x)[1:]]))  # type: ignore[arg-type]
        return self._emit("Flatten", name, [x], {"axis": 1}, [("N", rest)],
                          lambda v: v.reshape(v.shape[0], -1))[0]

    def reshape(self, x: str, shape: Sequence[int], name: Optional[str] = None) -> str:
        """ONNX ``Reshape`` with an int64 initializer ``shape`` input (0 copies a dim)."""
        src = self.shape(x)
        dims: List[Dim] = [src[i] if int(v) == 0 else int(v) for i, v in enumerate(shape)]
        if -1 in dims:
            known = int(np.prod([int(d) for d in src[1:]]))  # type: ignore[arg-type]
            other = int(np.prod([int(d) for d in dims[1:] if d != -1]))  # type: ignore[arg-type]
            dims[dims.index(-1)] = known // other
        name = self._fresh(name or "reshape")
        sname = self._add_init(f"{name}.shape", np.asarray(shape, np.int64))
        target = [int(d) for d in dims[1:]]  # type: ignore[arg-type]
        return self._emit("Reshape", name, [x, sname], None, [tuple(dims)],
                          lambda v, _s: v.reshape(v.shape[0], *target), reserved=True)[0]

    def transpose(self, x: str, perm: Sequence[int], name: Optional[str] = None) -> str:
        """ONNX ``Transpose`` (the batch dimension must stay first)."""
        perm = [int(p) for p in perm]
        if perm[0] != 0:
            raise ValidationError("transpose: the batch dimension must stay first")
        src = self.shape(x)
        return self._emit("Transpose", name, [x], {"perm": perm},
                          [tuple(src[p] for p in perm)],
                          lambda v: np.ascontiguousarray(v.transpose(perm)))[0]

    def channel_shuffle(self, x: str, groups: int, name: Optional[str] = None) -> str:
        """ShuffleNet's channel shuffle: Reshape → Transpose → Reshape.

        ``(N, C, H, W) → (N, g, C/g, H, W) → (N, C/g, g, H, W) → (N, C, H, W)``,
        exactly ``torchvision.models.shufflenetv2.channel_shuffle``.
        """
        c = self.channels(x)
        h, w = self._spatial(x, "channel_shuffle")
        g = int(groups)
        if g < 1 or c % g:
            raise ValidationError(f"channel_shuffle: {c} channels not divisible by {g} groups")
        base = name or "channel_shuffle"
        r1 = self.reshape(x, [0, g, c // g, h, w], name=f"{base}.reshape")
        t = self.transpose(r1, [0, 2, 1, 3, 4], name=f"{base}.transpose")
        return self.reshape(t, [0, c, h, w], name=base)

    def concat(self, xs: Sequence[str], axis: int = 1, name: Optional[str] = None) -> str:
        """ONNX ``Concat`` (along channels)."""
        if axis != 1:
            raise ValidationError("concat: only axis=1 (channels) is supported")
        shapes = [self.shape(t) for t in xs]
        if any(len(s) != len(shapes[0]) or s[2:] != shapes[0][2:] for s in shapes):
            raise ShapeError(f"concat: incompatible shapes {shapes}")
        c = sum(int(s[1]) for s in shapes)  # type: ignore[arg-type]
        return self._emit("Concat", name, list(xs), {"axis": 1}, [("N", c, *shapes[0][2:])],
                          lambda *vs: np.concatenate(vs, axis=1))[0]

    def split(self, x: str, sizes: Sequence[int], axis: int = 1,
              name: Optional[str] = None) -> List[str]:
        """ONNX ``Split`` (opset >= 13 form: ``split`` sizes as an int64 initializer input)."""
        if axis != 1:
            raise ValidationError("split: only axis=1 (channels) is supported")
        sizes = [int(s) for s in sizes]
        if sum(sizes) != self.channels(x) or min(sizes) < 1:
            raise ValidationError(f"split: sizes {sizes} do not add up to {self.channels(x)}")
        name = self._fresh(name or "split")
        sname = self._add_init(f"{name}.split", np.asarray(sizes, np.int64))
        bounds = np.cumsum(sizes)[:-1]
        shapes = [("N", n, *self.shape(x)[2:]) for n in sizes]
        return self._emit("Split", name, [x, sname], {"axis": 1}, shapes,
                          lambda v, _s: [np.ascontiguousarray(a)
                                         for a in np.split(v, bounds, axis=1)],
                          reserved=True)

    def dropout(self, x: str, ratio: float = 0.5, name: Optional[str] = None) -> str:
        """ONNX ``Dropout`` (an identity at inference).

        The ratio is passed as the optional float32 ``ratio`` input (a shared
        ``const.dropout_ratio_<p>`` initializer) only when it differs from
        ONNX's default of 0.5.
        """
        extra = []
        if float(ratio) != 0.5:
            extra.append(self._const(f"dropout_ratio_{float(ratio):g}", float(ratio)))
        return self._unary("Dropout", name, x, lambda v, *_: v, extra=extra)

    def gemm(self, x: str, out_features: int, bias: bool = True,
             name: Optional[str] = None) -> str:
        """Fully connected layer: ONNX ``Gemm`` with ``transB=1``.

        The weight has PyTorch's ``(out_features, in_features)`` layout
        (He-normal); the bias is small random.
        """
        s = self.shape(x)
        if len(s) != 2:
            raise ShapeError(f"gemm expects a 2-D (N, F) tensor, {x!r} has shape {s}; "
                             "flatten first")
        fin, fout = int(s[1]), int(out_features)  # type: ignore[arg-type]
        name = self._fresh(name or "fc")
        ins = [x, self._add_init(f"{name}.weight", self._he((fout, fin), fin))]
        if bias:
            ins.append(self._add_init(f"{name}.bias", self._bias(fout)))

        def fn(v: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None) -> np.ndarray:
            y = v @ w.T
            return y + b if b is not None else y

        return self._emit("Gemm", name, ins, {"transB": 1}, [("N", fout)], fn, reserved=True)[0]

    linear = gemm
