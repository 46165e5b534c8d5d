"""Shared fixtures: reference model paths, cached zoo models, ONNX builders, an
onnxruntime runner (the independent oracle for load/save and execution)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Sequence

import numpy as np
import pytest

import lpcv

REFERENCE_DIR = Path(lpcv.__file__).resolve().parent / "_reference"
REFERENCE_PATHS = sorted(REFERENCE_DIR.glob("*.onnx"))


@pytest.fixture(params=REFERENCE_PATHS, ids=[p.stem for p in REFERENCE_PATHS])
def reference_path(request) -> Path:
    """Each trained reference model file shipped in lpcv/_reference."""
    return request.param


_ZOO_CACHE: Dict[tuple, lpcv.Model] = {}


@pytest.fixture(scope="session")
def zoo_model() -> Callable[..., lpcv.Model]:
    """``zoo_model(name, **kwargs)``: a zoo model built once per test session.

    Callers must not mutate the returned model (use ``.copy()``).
    """
    def get(name: str, **kwargs) -> lpcv.Model:
        key = (name, tuple(sorted(kwargs.items())))
        if key not in _ZOO_CACHE:
            _ZOO_CACHE[key] = getattr(lpcv.zoo, name)(**kwargs)
        return _ZOO_CACHE[key]
    return get


def make_onnx(nodes, inputs, outputs, initializers: Dict[str, np.ndarray] = None,
              opset: int = 13, ir_version: int = 8):
    """An ``onnx.ModelProto`` from onnx.helper pieces.

    ``inputs``/``outputs`` are ``(name, shape)`` pairs (float32) or ValueInfoProtos.
    """
    from onnx import TensorProto, helper, numpy_helper

    def vi(v):
        if isinstance(v, tuple):
            return helper.make_tensor_value_info(v[0], TensorProto.FLOAT, v[1])
        return v

    graph = helper.make_graph(list(nodes), "test", [vi(v) for v in inputs],
                              [vi(v) for v in outputs],
                              [numpy_helper.from_array(np.asarray(a), k)
                               for k, a in (initializers or {}).items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = ir_version
    return proto


def ort_run(source, feeds: Dict[str, np.ndarray]) -> Sequence[np.ndarray]:
    """Run an ONNX file (path or bytes) in onnxruntime on one thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    if isinstance(source, Path):
        source = str(source)
    sess = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def random_feeds(model: lpcv.Model, batch: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Seeded uniform [0, 1) float32 inputs with the symbolic batch set to ``batch``."""
    rng = np.random.default_rng(seed)
    infos = model.infer_shapes(batch_size=batch)
    return {v.name: rng.random(infos[v.name].shape, dtype=np.float32) for v in model.inputs}


def exporter_chain_model(opset: int = 13):
    """Conv -> Relu -> PyTorch-exporter ``x.view(x.size(0), -1)`` -> Gemm, symbolic batch.

    The flatten is the ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``
    chain (with ``Constant`` nodes) that ``torch.onnx.export`` emits.
    """
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    const = lambda name, arr: helper.make_node(  # noqa: E731
        "Constant", [], [name], name=name + "_const", value=numpy_helper.from_array(arr, name))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["s"], name="shape"),
        const("i0", np.array(0, np.int64)),
        helper.make_node("Gather", ["s", "i0"], ["g"], name="gather", axis=0),
        const("ax", np.array([0], np.int64)),
        helper.make_node("Unsqueeze", ["g", "ax"], ["u"], name="unsqueeze"),
        const("m1", np.array([-1], np.int64)),
        helper.make_node("Concat", ["u", "m1"], ["shp"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "shp"], ["flat"], name="reshape"),
        helper.make_node("Gemm", ["flat", "fcw"], ["y"], name="fc", transB=1),
    ]
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "fcw": rng.standard_normal((5, 4 * 6 * 6)).astype(np.float32)}
    return make_onnx(nodes, [("x", ["batch", 3, 8, 8])], [("y", ["batch", 5])], inits,
                     opset=opset)
