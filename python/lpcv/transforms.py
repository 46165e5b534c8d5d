"""Graph rewrites shared by the runtime, the quantizers and the other passes.

Each function takes a :class:`~lpcv.graph.Model` and returns a new one; the
input model and its arrays are never modified.

Examples
--------
>>> import lpcv
>>> m = lpcv.zoo.resnet18()
>>> folded = lpcv.transforms.fold_batchnorm(m)
>>> m.op_types()["BatchNormalization"], folded.op_types().get("BatchNormalization", 0)
(20, 0)
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Set

import numpy as np

from ._shapes import (FOLDABLE_OPS, SHAPE_FUNCTIONS, check_required_inputs, constant_value,
                      infer_shapes)
from .exceptions import LpcvError
from .graph import Model, Node, TensorInfo, unique_name

__all__ = ["fold_constants", "fold_batchnorm", "remove_identities", "prune_unused",
           "replace_node"]

# Two batch sizes unlikely to appear elsewhere in a shape: a folded value that
# differs between them depends on the batch dimension.
_PROBE_BATCHES = (7, 11)


def fold_constants(model: Model, batch_size: Optional[int] = None) -> Model:
    """Replace sub-graphs whose values are known at compile time by initializers.

    ``Constant`` nodes become initializers; shape arithmetic
    (``Shape``/``Gather``/``Unsqueeze``/``Concat``/...) on static shapes is
    evaluated. When the batch dimension is symbolic and a ``Reshape`` target
    depends on it, the batch entry becomes ``0`` (copy the input's dimension)
    or ``-1``, so the folded model stays valid for every batch size.

    Parameters
    ----------
    model : Model
    batch_size : int, optional
        Fold for this batch size only (what a compiled session needs).
    """
    runs: List[Dict[str, TensorInfo]] = []
    for b in ([batch_size] if batch_size else _PROBE_BATCHES):
        try:
            runs.append(infer_shapes(model, batch_size=b))
        except LpcvError:
            runs = []
            break
    if not runs:
        runs = [_constant_values(model)]

    inits = dict(model.initializers)
    nodes: List[Node] = []
    for node in model.nodes:
        if node.op == "Constant" and node.domain in ("", "ai.onnx") and len(node.outputs) == 1:
            inits[node.outputs[0]] = np.asarray(constant_value(node), order="C")
            continue
        if node.op in FOLDABLE_OPS:
            values = [[r[o].value if o in r else None for r in runs] for o in node.outputs]
            if values and all(v is not None for vs in values for v in vs) and all(
                    all(_same(vs[0], v) for v in vs[1:]) for vs in values):
                for o, vs in zip(node.outputs, values):
                    inits[o] = np.asarray(vs[0], order="C")  # keeps 0-d tensors 0-d
                continue
        nodes.append(node)
    nodes = _symbolic_reshape_targets(model, nodes, inits, runs)
    return prune_unused(model.with_changes(nodes=nodes, initializers=inits))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def _constant_values(model: Model) -> Dict[str, TensorInfo]:
    """Values computable from initializers alone (no input shapes needed)."""
    infos: Dict[str, TensorInfo] = {
        k: TensorInfo(tuple(v.shape), v.dtype, v) for k, v in model.initializers.items()}
    for node in model.nodes:
        if node.op not in FOLDABLE_OPS or node.op == "Shape":
            continue
        ins = [infos.get(t) if t else None for t in node.inputs]
        if any(t and (infos.get(t) is None or infos[t].value is None) for t in node.inputs):
            continue
        try:
            check_required_inputs(node)
            outs = SHAPE_FUNCTIONS[node.op](node, ins, model.opset)
        except (LpcvError, ValueError, TypeError, IndexError, AttributeError):
            continue
        for o, info in zip(node.outputs, outs):
            if o and info.value is not None:
                infos[o] = info
    return infos


def _symbolic_reshape_targets(model: Model, nodes: List[Node], inits: Dict[str, np.ndarray],
                              runs: List[Dict[str, TensorInfo]]) -> List[Node]:
    """Turn batch-dependent Reshape targets into 0/-1 entries."""
    if len(runs) != 2:
        return nodes
    out = []
    for node in nodes:
        if node.op == "Reshape" and len(node.inputs) > 1 and node.inputs[1] not in inits:
            spec = _batch_free_spec(node, runs)
            if spec is not None:
                name = node.inputs[1] + "_folded"
                inits[name] = spec
                node = Node(node.op, node.name, [node.inputs[0], name], node.outputs,
                            node.attrs, node.domain)
        out.append(node)
    return out


def _batch_free_spec(node: Node, runs: List[Dict[str, TensorInfo]]) -> Optional[np.ndarray]:
    s0, s1 = (r.get(node.inputs[1]) for r in runs)
    d0, d1 = (r.get(node.inputs[0]) for r in runs)
    if None in (s0, s1, d0, d1) or s0.value is None or s1.value is None:
        return None
    if node.attrs.get("allowzero", 0):
        return None
    a, b = s0.value.astype(np.int64), s1.value.astype(np.int64)
    if a.shape != b.shape:
        return None
    spec = a.copy()
    diff = np.nonzero(a != b)[0]
    for i in diff:
        batch_here = (a[i] == _PROBE_BATCHES[0] and b[i] == _PROBE_BATCHES[1] and i < len(d0.shape)
                      and d0.shape[i] == _PROBE_BATCHES[0] and d1.shape[i] == _PROBE_BATCHES[1])
        if batch_here:
            spec[i] = 0
        elif len(diff) == 1 and -1 not in a:
            spec[i] = -1
        else:
            return None
    return spec


def prune_unused(model: Model) -> Model:
    """Drop nodes whose outputs nobody reads and initializers nobody uses."""
    needed = set(model.output_names)
    keep: List[Node] = []
    for node in reversed(model.nodes):
        if any(o in needed for o in node.outputs):
            keep.append(node)
            needed.update(t for t in node.inputs if t)
    keep.reverse()
    inits = {k: v for k, v in model.initializers.items() if k in needed}
    return model.with_changes(nodes=keep, initializers=inits)


def remove_identities(model: Model) -> Model:
    """Remove Identity and inference-time Dropout nodes by rewiring their readers."""
    rename: Dict[str, str] = {}
    graph_outputs = set(model.output_names)
    nodes = []
    for node in model.nodes:
        node = Node(node.op, node.name, [rename.get(t, t) for t in node.inputs], node.outputs,
                    node.attrs, node.domain)
        removable = bool(node.inputs) and node.inputs[0] and (node.op == "Identity" or (
            node.op == "Dropout" and len(
            [o for o in node.outputs if o]) == 1 and not node.attrs.get("training_mode", 0)
            and len(node.inputs) < 3))
        if removable and node.outputs[0] not in graph_outputs:
            rename[node.outputs[0]] = node.inputs[0]
            continue
        nodes.append(node)
    return model.with_changes(nodes=nodes)


def replace_node(model: Model, name: str, chain: Sequence[Node],
                 new_initializers: Optional[Dict[str, np.ndarray]] = None) -> Model:
    """Replace the node ``name`` by ``chain`` (which must write its outputs)."""
    target = model.node(name)
    written = {o for n in chain for o in n.outputs}
    missing = [o for o in target.outputs if o and o not in written]
    if missing:
        raise ValueError(f"replacement for {name!r} does not write {missing}")
    nodes: List[Node] = []
    for n in model.nodes:
        nodes.extend(chain if n.name == name else [n])
    inits = dict(model.initializers)
    inits.update(new_initializers or {})
    return prune_unused(model.with_changes(nodes=nodes, initializers=inits))


def fold_batchnorm(model: Model, numeric: bool = True) -> Model:
    """Fold inference BatchNormalization into the preceding Conv or Gemm.

    ``W' = W · γ/√(σ²+ε)`` per output channel and ``b' = (b − μ)·γ/√(σ²+ε) + β``,
    computed in float64. A BatchNormalization whose input is read by other
    nodes too, or whose producer has non-constant weights, is kept.

    With ``numeric=False`` only the graph is rewritten: the folded layers keep
    their original weights (same shapes, unscaled) and take the BN shift as
    bias. That is what a cost estimate needs, at a fraction of the time.
    """
    inits = dict(model.initializers)
    readers: Dict[str, int] = {}
    for n in model.nodes:
        for t in n.inputs:
            readers[t] = readers.get(t, 0) + 1
    producer = {o: n for n in model.nodes for o in n.outputs}
    graph_outputs = set(model.output_names)
    replaced: Dict[str, Node] = {}   # producer name -> folded producer
    dropped: Set[str] = set()        # BN nodes folded away
    for bn in model.nodes:
        if bn.op != "BatchNormalization" or len(bn.inputs) < 5:
            continue
        src = producer.get(bn.inputs[0])
        if (src is None or src.op not in ("Conv", "Gemm") or readers.get(bn.inputs[0], 0) != 1
                or bn.inputs[0] in graph_outputs or src.name in replaced
                or not all(t in inits for t in bn.inputs[1:5])
                or src.inputs[1] not in inits
                or (len(src.inputs) > 2 and src.inputs[2] and src.inputs[2] not in inits)):
            continue
        if src.op == "Gemm" and (src.attrs.get("alpha", 1.0) != 1.0 or src.attrs.get("beta", 1.0) != 1.0
                                 or src.attrs.get("transA", 0)):
            continue
        if not numeric:
            w_name = src.inputs[1]
            b_name = src.inputs[2] if len(src.inputs) > 2 and src.inputs[2] else bn.inputs[2]
            replaced[src.name] = Node(src.op, src.name, [src.inputs[0], w_name, b_name],
                                      [bn.outputs[0]], src.attrs, src.domain)
            dropped.add(bn.name)
            continue
        gamma, beta, mean, var = (inits[t].astype(np.float64) for t in bn.inputs[1:5])
        eps = float(bn.attrs.get("epsilon", 1e-5))
        scale = gamma / np.sqrt(var + eps)
        w = inits[src.inputs[1]].astype(np.float64)
        if src.op == "Conv":
            w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
            out_ch = w.shape[0]
        elif src.attrs.get("transB", 0):
            w = w * scale[:, None]
            out_ch = w.shape[0]
        else:
            w = w * scale[None, :]
            out_ch = w.shape[1]
        if out_ch != scale.shape[0]:
            continue
        has_bias = len(src.inputs) > 2 and bool(src.inputs[2])
        b = inits[src.inputs[2]].astype(np.float64) if has_bias else np.zeros(out_ch)
        if b.shape != (out_ch,):
            continue
        b = (b - mean) * scale + beta
        dtype = inits[src.inputs[1]].dtype
        w_name, b_name = unique_name(inits, src.name + ".weight_bnfolded"), unique_name(inits, src.name + ".bias_bnfolded")
        inits[w_name] = w.astype(dtype)
        inits[b_name] = b.astype(dtype)
        replaced[src.name] = Node(src.op, src.name, [src.inputs[0], w_name, b_name],
                                  [bn.outputs[0]], src.attrs, src.domain)
        dropped.add(bn.name)
    nodes = [replaced.get(n.name, n) for n in model.nodes if n.name not in dropped]
    return prune_unused(model.with_changes(nodes=nodes, initializers=inits))


