"""The model IR: a list of ONNX-style nodes in topological order.

Op names and attribute semantics are ONNX's (DESIGN.md §2), so the ONNX
specification defines every op. A :class:`Model` owns its initializers as a
``dict[str, numpy.ndarray]``; passes build new models and never mutate the one
they were given.

Examples
--------
>>> import numpy as np
>>> from lpcv.graph import Model, Node, ValueInfo
>>> w = np.ones((4, 3), np.float32)
>>> m = Model(
...     nodes=[Node("Gemm", "fc", ["x", "w"], ["y"], {"transB": 1})],
...     inputs=[ValueInfo("x", ("N", 3))],
...     outputs=[ValueInfo("y", ("N", 4))],
...     initializers={"w": w},
... )
>>> m.num_parameters()
12
>>> m.infer_shapes(batch_size=2)["y"].shape
(2, 4)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .exceptions import ModelError

__all__ = ["Node", "ValueInfo", "TensorInfo", "Model", "unique_name"]

Dim = Union[int, str, None]

# Inputs (by position) of ONNX ops that hold settings or statistics, not
# learnable weights; initializers read only there are not parameters.
_NON_PARAMETER_INPUTS: Dict[str, Tuple[int, ...]] = {
    "BatchNormalization": (3, 4),   # running mean and variance
    "Clip": (1, 2),                 # min, max
    "Dropout": (1, 2),              # ratio, training_mode
    "Pad": (1, 2, 3),               # pads, constant_value, axes
    "Resize": (1, 2, 3),            # roi, scales, sizes
    "Upsample": (1,),               # scales
}


def unique_name(taken: Any, base: str) -> str:
    """``base``, else ``base_1``, ``base_2``, ...: the first name not in ``taken``.

    A ``set`` passed as ``taken`` records the name, so successive calls never
    return it twice.

    Examples
    --------
    >>> taken = {"conv", "conv_1"}
    >>> unique_name(taken, "conv"), unique_name(taken, "conv")
    ('conv_2', 'conv_3')
    """
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    if isinstance(taken, set):
        taken.add(name)
    return name


@dataclass
class Node:
    """One operator application.

    Parameters
    ----------
    op : str
        ONNX operator type (``"Conv"``, ``"Relu"``, ...).
    name : str
        Unique node name.
    inputs, outputs : list of str
        Tensor names; ``""`` marks an omitted optional input.
    attrs : dict
        ONNX attributes as Python values (int, float, str, lists, ndarray).
    domain : str
        Operator domain; ``""`` is the default ONNX domain.
    """

    op: str
    name: str
    inputs: List[str]
    outputs: List[str]
    attrs: Dict[str, Any] = field(default_factory=dict)
    domain: str = ""

    def __post_init__(self) -> None:
        self.inputs = list(self.inputs)
        self.outputs = list(self.outputs)
        self.attrs = dict(self.attrs)

    def __repr__(self) -> str:
        attrs = ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.attrs.items()))
        ins = ", ".join(self.inputs)
        outs = ", ".join(self.outputs)
        return f"{self.name}: {self.op}({ins}{'; ' + attrs if attrs else ''}) -> {outs}"


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"<{v.dtype} {tuple(v.shape)}>"
    return repr(v)


@dataclass(frozen=True)
class ValueInfo:
    """A graph input or output: name, shape (ints or symbolic names), dtype."""

    name: str
    shape: Tuple[Dim, ...] = ()
    dtype: np.dtype = field(default=np.dtype(np.float32))

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))


@dataclass(frozen=True)
class TensorInfo:
    """Static shape and dtype of a tensor, from :meth:`Model.infer_shapes`.

    ``value`` holds the tensor's contents when they are known at compile time
    (initializers and results of constant folding).
    """

    shape: Tuple[int, ...]
    dtype: np.dtype
    value: Optional[np.ndarray] = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class Model:
    """A neural network as a list of nodes in topological order.

    Parameters
    ----------
    nodes : sequence of Node
        In any order; the constructor sorts them topologically and rejects
        cycles, duplicate outputs and inputs that nothing defines.
    inputs, outputs : sequence of ValueInfo
        Graph inputs (fed at run time) and outputs.
    initializers : mapping of str to ndarray
        Weights. Arrays are copied, so the caller's arrays are never shared,
        and the model's copies are read-only: passes derive new models that
        share unchanged arrays instead of copying them (replace an entry of
        ``initializers`` to change a weight).
    opset : int
        Default-domain opset version the attributes follow.
    name : str
        Model name.
    metadata : mapping of str to str
        Free-form metadata (kept in ONNX ``metadata_props``).

    Raises
    ------
    ModelError
        When the graph is malformed.
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        inputs: Sequence[ValueInfo],
        outputs: Sequence[ValueInfo],
        initializers: Optional[Mapping[str, np.ndarray]] = None,
        opset: int = 17,
        name: str = "model",
        metadata: Optional[Mapping[str, str]] = None,
        *,
        copy_arrays: bool = True,
    ) -> None:
        # copy_arrays=False (for lpcv's own loaders and passes) shares arrays
        # that are already read-only and copies writable ones.
        self.name = str(name)
        self.opset = int(opset)
        self.metadata: Dict[str, str] = dict(metadata or {})
        self.inputs: List[ValueInfo] = _check_value_infos(inputs, "inputs")
        self.outputs: List[ValueInfo] = _check_value_infos(outputs, "outputs")
        self.initializers: Dict[str, np.ndarray] = {}
        for k, v in (initializers or {}).items():
            if not isinstance(k, str) or not k:
                raise ModelError(f"initializer names must be non-empty strings, got {k!r}")
            if not isinstance(v, np.ndarray):
                raise ModelError(f"initializer {k!r}: expected a numpy array, got {type(v).__name__}")
            arr = np.array(v, copy=True) if copy_arrays or v.flags.writeable else v
            arr.flags.writeable = False
            self.initializers[k] = arr
        self.nodes: List[Node] = _toposort([_copy_node(n) for n in nodes], self)
        self._shape_cache: Dict[Any, Dict[str, TensorInfo]] = {}

    # ------------------------------------------------------------------ basics
    def copy(self) -> "Model":
        """A deep copy (nodes, attributes and initializers)."""
        return Model([copy.deepcopy(n) for n in self.nodes], self.inputs, self.outputs,
                     self.initializers, self.opset, self.name, self.metadata)

    def with_changes(self, **changes: Any) -> "Model":
        """A new model with some of nodes/inputs/outputs/initializers/... replaced.

        Unchanged (read-only) initializer arrays are shared, not copied;
        writable arrays passed in ``changes`` are copied.
        """
        kw = dict(nodes=self.nodes, inputs=self.inputs, outputs=self.outputs,
                  initializers=self.initializers, opset=self.opset, name=self.name,
                  metadata=self.metadata)
        kw.update(changes)
        return Model(**kw, copy_arrays=False)

    @property
    def input_names(self) -> List[str]:
        return [v.name for v in self.inputs]

    @property
    def output_names(self) -> List[str]:
        return [v.name for v in self.outputs]

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}")

    def producer(self, tensor: str) -> Optional[Node]:
        """The node that writes ``tensor``, or None for inputs/initializers."""
        for n in self.nodes:
            if tensor in n.outputs:
                return n
        return None

    def consumers(self, tensor: str) -> List[Node]:
        """The nodes that read ``tensor``."""
        return [n for n in self.nodes if tensor in n.inputs]

    def op_types(self) -> Dict[str, int]:
        """How many nodes of each op type the model has."""
        counts: Dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    def num_parameters(self) -> int:
        """Number of learnable parameters.

        Counts the elements of floating-point initializers, except those that
        only feed non-learnable operands: BatchNormalization running statistics
        (mean and variance), which are buffers rather than parameters, and
        settings stored as tensors (Clip bounds, Dropout ratio, Pad values,
        Resize scales). This matches how PyTorch and the papers count (e.g.
        ResNet-18 has 11,689,512 and MobileNetV2 3,504,872).
        """
        learnable: Dict[str, bool] = {}
        for n in self.nodes:
            skip = _NON_PARAMETER_INPUTS.get(n.op, ()) if n.domain in ("", "ai.onnx") else ()
            for i, t in enumerate(n.inputs):
                if t in self.initializers:
                    learnable[t] = learnable.get(t, False) or i not in skip
        return int(sum(v.size for k, v in self.initializers.items()
                       if np.issubdtype(v.dtype, np.floating) and learnable.get(k, True)))

    # ------------------------------------------------------------------ shapes
    def infer_shapes(self, batch_size: Optional[int] = None,
                     input_shapes: Optional[Mapping[str, Sequence[int]]] = None
                     ) -> Dict[str, TensorInfo]:
        """Static shape and dtype of every tensor.

        Parameters
        ----------
        batch_size : int, optional
            Value for symbolic (non-integer) leading dimensions of the inputs.
            Other symbolic dimensions need ``input_shapes``.
        input_shapes : mapping, optional
            Concrete shapes for some inputs, overriding the declared ones.

        Returns
        -------
        dict of str to TensorInfo

        Raises
        ------
        ShapeError
            When the shapes are inconsistent or an input shape is unknown.
        """
        from ._shapes import infer_shapes

        key = (batch_size, tuple(sorted((k, tuple(v)) for k, v in (input_shapes or {}).items())))
        if key not in self._shape_cache:
            self._shape_cache[key] = infer_shapes(self, batch_size, input_shapes)
        return self._shape_cache[key]

    # ------------------------------------------------------------------ display
    def summary(self, batch_size: int = 1) -> str:
        """A table of nodes with output shapes and parameter counts."""
        infos = self.infer_shapes(batch_size=batch_size)
        rows = [("node", "op", "output shape", "params")]
        for n in self.nodes:
            params = sum(self.initializers[i].size for i in n.inputs if i in self.initializers)
            shape = infos[n.outputs[0]].shape if n.outputs and n.outputs[0] in infos else ()
            rows.append((n.name, n.op, "x".join(map(str, shape)) or "scalar", f"{params:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(r[c].ljust(widths[c]) if c < 3 else r[c].rjust(widths[c])
                           for c in range(4)) for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append("-" * len(lines[0]))
        lines.append(f"{len(self.nodes)} nodes, {self.num_parameters():,} parameters")
        return "\n".join(lines)

    def __repr__(self) -> str:
        ins = ", ".join(f"{v.name}{list(v.shape)}" for v in self.inputs)
        outs = ", ".join(f"{v.name}{list(v.shape)}" for v in self.outputs)
        ops = ", ".join(f"{k}×{v}" for k, v in sorted(self.op_types().items()))
        return (f"<lpcv.Model {self.name!r}: {len(self.nodes)} nodes, "
                f"{self.num_parameters():,} params, opset {self.opset}; "
                f"inputs {ins}; outputs {outs}; ops {ops}>")

    def __eq__(self, other: object) -> bool:  # structural equality, for tests
        if not isinstance(other, Model):
            return NotImplemented
        return (self.inputs == other.inputs and self.outputs == other.outputs
                and [repr(n) for n in self.nodes] == [repr(n) for n in other.nodes]
                and self.initializers.keys() == other.initializers.keys()
                and all(np.array_equal(self.initializers[k], other.initializers[k])
                        for k in self.initializers))

    __hash__ = None  # type: ignore[assignment]


def _check_value_infos(values: Sequence[ValueInfo], what: str) -> List[ValueInfo]:
    out = list(values)
    seen = set()
    for i, v in enumerate(out):
        if not isinstance(v, ValueInfo):
            raise ModelError(f"{what}[{i}]: expected lpcv.graph.ValueInfo, got {type(v).__name__}")
        if not isinstance(v.name, str) or not v.name:
            raise ModelError(f"{what}[{i}]: the name must be a non-empty string, got {v.name!r}")
        if v.name in seen:
            raise ModelError(f"{what}: {v.name!r} is listed twice")
        seen.add(v.name)
        for d in v.shape:
            if isinstance(d, (bool, np.bool_)) or not (
                    d is None or isinstance(d, str)
                    or (isinstance(d, (int, np.integer)) and d >= 0)):
                raise ModelError(f"{what}: {v.name!r} has shape {v.shape}; dimensions must be "
                                 "non-negative ints, symbolic names (str) or None")
    return out


def _check_node(i: int, n: Node) -> None:
    """Field types of a node (a corrupt file can carry bytes or garbage)."""
    if not isinstance(n.op, str) or not n.op:
        raise ModelError(f"nodes[{i}]: op must be a non-empty string, got {n.op!r}")
    if not isinstance(n.name, str):
        raise ModelError(f"nodes[{i}] ({n.op}): name must be a string, got {n.name!r}")
    if not isinstance(n.domain, str):
        raise ModelError(f"node {n.name!r} ({n.op}): domain must be a string, got {n.domain!r}")
    for kind, names in (("inputs", n.inputs), ("outputs", n.outputs)):
        for t in names:
            if not isinstance(t, str):
                raise ModelError(f"node {n.name!r} ({n.op}): {kind} must be strings, got {t!r}")
    for k in n.attrs:
        if not isinstance(k, str) or not k:
            raise ModelError(f"node {n.name!r} ({n.op}): attribute names must be non-empty "
                             f"strings, got {k!r}")


def _copy_node(n: Any) -> Any:
    """A node with its own input/output lists and attribute dict."""
    if not isinstance(n, Node):
        return n  # _toposort reports the type error
    attrs = {k: (list(v) if isinstance(v, list) else v.copy() if isinstance(v, np.ndarray) else v)
             for k, v in n.attrs.items()}
    return Node(n.op, n.name, n.inputs, n.outputs, attrs, n.domain)


def _toposort(nodes: List[Node], model: Model) -> List[Node]:
    """Sort nodes topologically (stable), validating names on the way."""
    defined = set(model.initializers) | set(model.input_names)
    producers: Dict[str, int] = {}
    names = set()
    for i, n in enumerate(nodes):
        if not isinstance(n, Node):
            raise ModelError(f"nodes[{i}]: expected lpcv.graph.Node, got {type(n).__name__}")
        _check_node(i, n)
        if not n.name:
            n.name = f"{n.op}_{i}"
        if n.name in names:
            raise ModelError(f"duplicate node name {n.name!r}")
        names.add(n.name)
        for o in n.outputs:
            if not o:
                continue
            if o in producers or o in defined:
                raise ModelError(f"tensor {o!r} is written twice (node {n.name!r})")
            producers[o] = i
    for i, n in enumerate(nodes):
        for t in n.inputs:
            if t and t not in defined and t not in producers:
                raise ModelError(
                    f"node {n.name!r} ({n.op}) reads tensor {t!r}, which is not a graph "
                    "input, an initializer or the output of any node")
    for v in model.outputs:
        if v.name not in defined and v.name not in producers:
            raise ModelError(f"graph output {v.name!r} is not produced by any node")
    # Kahn's algorithm, keeping the given order among ready nodes.
    deps = [{producers[t] for t in n.inputs if t in producers} for n in nodes]
    users: Dict[int, List[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(i)
    remaining = [len(d) for d in deps]
    import heapq
    ready = [i for i, r in enumerate(remaining) if r == 0]
    heapq.heapify(ready)
    order: List[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users.get(i, ()):
            remaining[u] -= 1
            if remaining[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        stuck = [nodes[i].name for i in range(len(nodes)) if remaining[i] > 0][:5]
        raise ModelError(f"the graph has a cycle through nodes {stuck}")
    return [nodes[i] for i in order]


def iter_tensor_names(nodes: Iterable[Node]) -> Iterable[str]:
    """Every tensor name read or written by ``nodes``."""
    for n in nodes:
        yield from (t for t in n.inputs if t)
        yield from (t for t in n.outputs if t)
