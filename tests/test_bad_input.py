"""Bad input of every kind gives a clear lpcv exception, never a crash or a hang.

Covers malformed files, malformed graphs, inconsistent and absurd shapes,
non-finite weights, unsupported ops, bad feeds and bad session settings, and
two mutation tests: seeded random corruptions of serialized models (bytes) and
of their structure (attributes, ops, inputs, dims), each run in subprocesses so
that a segfault or an abort shows up as a failed test naming the seed.

This file doubles as the mutation worker:
``python test_bad_input.py --worker {bytes,struct} MODEL HOT SEED...``.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

# ----------------------------------------------------------------------------- mutations
# (Kept above the test imports: the worker subprocess needs only these.)
INTS = [-2 ** 40, -2 ** 31, -7, -2, -1, 0, 1, 2, 3, 5, 64, 2 ** 20, 2 ** 31 - 1, 2 ** 40]
OPS = ["Conv", "Relu", "Gemm", "MatMul", "Add", "Mul", "Concat", "Reshape", "Flatten",
       "MaxPool", "AveragePool", "GlobalAveragePool", "Softmax", "Transpose", "Split", "Pad",
       "Clip", "BatchNormalization", "Squeeze", "Unsqueeze", "Gather", "Shape", "Slice",
       "Identity", "Dropout", "HardSwish", "Sigmoid", "Sub", "Div", "LeakyRelu", "Cast",
       "ConstantOfShape", "LSTM"]


def mutate_bytes(data: bytes, seed: int, hot: Sequence[Tuple[int, int]]) -> Tuple[str, bytes]:
    """A seeded corruption of ``data``: bit flips, byte overwrites, truncation,
    duplicated or deleted chunks, or an oversized varint. Positions fall in the
    ``hot`` ranges (the graph structure, not the weight payloads) 80 % of the time."""
    rng = random.Random(seed)
    b = bytearray(data)

    def pos() -> int:
        if hot and rng.random() < 0.8:
            lo, hi = rng.choice(hot)
            return rng.randrange(lo, hi)
        return rng.randrange(len(b))

    kind = rng.choice(("flip", "flip", "overwrite", "overwrite", "truncate", "duplicate",
                       "delete", "varint"))
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            p = pos()
            b[p] ^= 1 << rng.randrange(8)
    elif kind == "overwrite":
        for _ in range(rng.randint(1, 4)):
            b[pos()] = rng.randrange(256)
    elif kind == "truncate":
        del b[pos():]
    elif kind == "duplicate":
        p = pos()
        b[p:p] = b[p:p + rng.randint(1, 64)]
    elif kind == "delete":
        p = pos()
        del b[p:p + rng.randint(1, 16)]
    else:  # a huge varint where a small one was: lengths, dims, enums, opsets
        p = pos()
        b[p:p + 1] = bytes([0xff, 0xff, 0xff, 0xff, rng.randrange(0x10)])
    return kind, bytes(b)


def mutate_structure(data: bytes, seed: int) -> Tuple[str, bytes]:
    """A seeded, still-parseable corruption of an ONNX model: attribute values,
    new attributes, op types, rewired or dropped inputs, initializer shapes and
    dtypes, input dims, opset."""
    import onnx
    from onnx import helper, numpy_helper

    rng = random.Random(seed)
    p = onnx.load_from_string(data)
    g = p.graph
    kinds = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["attr", "attr", "attr", "newattr", "op", "inputs", "dims", "indim",
                           "dtype", "opset"])
        kinds.append(kind)
        n = rng.choice(g.node)
        if kind == "attr" and n.attribute:
            a = rng.choice(n.attribute)
            if a.type == a.INT:
                a.i = rng.choice(INTS)
            elif a.type == a.INTS:
                del a.ints[:]
                a.ints.extend(rng.choice(INTS) for _ in range(rng.choice([0, 1, 2, 3, 4, 6, 8])))
            elif a.type == a.FLOAT:
                a.f = rng.choice([float("nan"), float("inf"), -1.0, 0.0, 1e30])
        elif kind == "newattr":
            name = rng.choice(["axis", "group", "kernel_shape", "strides", "pads", "dilations",
                               "perm", "transA", "transB", "ceil_mode", "auto_pad", "allowzero",
                               "count_include_pad", "to", "split", "num_outputs", "axes"])
            for a in list(n.attribute):
                if a.name == name:
                    n.attribute.remove(a)
            if name == "auto_pad":
                value = rng.choice(["SAME_UPPER", "SAME_LOWER", "VALID", "BOGUS"])
                n.attribute.append(helper.make_attribute(name, value))
            elif name in ("kernel_shape", "strides", "pads", "dilations", "perm", "split", "axes"):
                values = [rng.choice(INTS) for _ in range(rng.choice([0, 1, 2, 4]))]
                n.attribute.append(helper.make_attribute(name, values,
                                                         attr_type=onnx.AttributeProto.INTS))
            else:
                n.attribute.append(helper.make_attribute(name, rng.choice(INTS)))
        elif kind == "op":
            n.op_type = rng.choice(OPS)
        elif kind == "inputs":
            names = [t for m in g.node for t in m.input] + [""]
            r = rng.random()
            if n.input and r < 0.5:
                n.input[rng.randrange(len(n.input))] = rng.choice(names)
            elif n.input and r < 0.75:
                del n.input[-1]
            else:
                n.input.append(rng.choice(names))
        elif kind == "dims":
            t = rng.choice(g.initializer)
            arr = numpy_helper.to_array(t).ravel()
            shape = rng.choice([(arr.size,), (1, arr.size), (arr.size, 1), (), (0,)])
            size = int(np.prod(shape))
            new = arr[:size].reshape(shape) if size <= arr.size else arr
            t.CopyFrom(numpy_helper.from_array(np.asarray(new, order="C"), t.name))
        elif kind == "indim":
            d = rng.choice(g.input[0].type.tensor_type.shape.dim)
            d.dim_value = rng.choice([0, 1, 2, 3, 7, 100, 2 ** 20])
        elif kind == "dtype":
            t = rng.choice(g.initializer)
            arr = numpy_helper.to_array(t)
            dtype = rng.choice([np.float16, np.float64, np.int64, np.int8, np.bool_])
            t.CopyFrom(numpy_helper.from_array(arr.astype(dtype), t.name))
        elif kind == "opset":
            p.opset_import[0].version = rng.choice([11, 12, 13, 14, 17, 18, 19, 21])
    return "+".join(kinds), p.SerializeToString()


def _worker(argv: List[str]) -> None:
    """Load (and when that works, compile and run) each mutated model.

    Prints ``START seed`` before and ``DONE seed outcome`` after each one, and
    ``UNEXPECTED seed ...`` when an exception other than LpcvError escapes.
    """
    import lpcv
    from lpcv.exceptions import LpcvError

    mode, path, hot_spec = argv[0], argv[1], argv[2]
    data = Path(path).read_bytes()
    hot = [tuple(map(int, r.split(":"))) for r in hot_spec.split(",") if r]
    for seed in map(int, argv[3:]):
        print(f"START {seed}", flush=True)
        if mode == "selftest":  # the harness's own test: 1 raises, 2 segfaults, 4 hangs
            blob = data
            kind = "selftest"
        else:
            kind, blob = (mutate_bytes(data, seed, hot) if mode == "bytes"
                          else mutate_structure(data, seed))
        stage = "load"
        try:
            if mode == "selftest" and seed == 1:
                raise KeyError("simulated validation gap")
            if mode == "selftest" and seed == 2:
                import signal
                os.kill(os.getpid(), signal.SIGSEGV)
            if mode == "selftest" and seed == 4:
                time.sleep(600)
            m = lpcv.load(blob)
            stage = "session"
            sess = lpcv.Session(m, batch_size=2, threads=1)
            stage = "run"
            sess.run({v.name: np.zeros(sess.input_shape(v.name), np.float32) for v in m.inputs})
            outcome = "ok"
        except LpcvError as e:
            outcome = f"{type(e).__name__}@{stage}"
        except Exception as e:  # the library failed to validate its input
            where = traceback.extract_tb(e.__traceback__)[-1]
            msg = f"{type(e).__name__}: {e} [{Path(where.filename).name}:{where.lineno}]"
            print(f"UNEXPECTED {seed} {kind} at {stage}: {msg}".replace("\n", " ")[:400],
                  flush=True)
            outcome = "unexpected"
        print(f"DONE {seed} {outcome}", flush=True)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--worker":
    _worker(sys.argv[2:])
    sys.exit(0)

# ----------------------------------------------------------------------------- tests
import pytest  # noqa: E402

import lpcv  # noqa: E402
from conftest import REFERENCE_DIR, make_onnx  # noqa: E402
from lpcv.exceptions import (  # noqa: E402
    LpcvError,
    ModelError,
    ONNXLoadError,
    ShapeError,
    UnsupportedError,
    UnsupportedOpError,
    ValidationError,
)
from lpcv.graph import Model, Node, ValueInfo  # noqa: E402

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

LENET300 = REFERENCE_DIR / "fmnist-lenet300.onnx"
F32 = np.float32


def small_model_proto():
    """A small exporter-style CNN: Conv, BN, Clip (ReLU6), MaxPool, the
    Shape/Gather/Unsqueeze/Concat/Reshape flatten chain, Gemm, Softmax."""
    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(F32)  # noqa: E731
    inits = {"conv.w": f(4, 1, 3, 3), "conv.b": f(4), "bn.s": np.abs(f(4)) + 0.5,
             "bn.b": f(4), "bn.m": f(4), "bn.v": np.abs(f(4)) + 0.5,
             "fc.w": f(10, 4 * 4 * 4), "fc.b": f(10),
             "lo": np.array(0, F32), "hi": np.array(6, F32)}
    const = lambda name, arr: helper.make_node(  # noqa: E731
        "Constant", [], [name], name=name + "_c", value=numpy_helper.from_array(arr, name))
    nodes = [
        helper.make_node("Conv", ["input", "conv.w", "conv.b"], ["c"], name="conv",
                         pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn.s", "bn.b", "bn.m", "bn.v"], ["bn"],
                         name="bn"),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["r"], name="relu6"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Shape", ["p"], ["s"], name="shape"),
        const("i0", np.array(0, np.int64)),
        helper.make_node("Gather", ["s", "i0"], ["g"], name="gather", axis=0),
        const("ax", np.array([0], np.int64)),
        helper.make_node("Unsqueeze", ["g", "ax"], ["u"], name="unsqueeze"),
        const("m1", np.array([-1], np.int64)),
        helper.make_node("Concat", ["u", "m1"], ["shp"], name="concat", axis=0),
        helper.make_node("Reshape", ["p", "shp"], ["flat"], name="reshape"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["fc"], name="fc", transB=1),
        helper.make_node("Softmax", ["fc"], ["probs"], name="softmax", axis=1),
    ]
    proto = make_onnx(nodes, [("input", ["N", 1, 8, 8])], [("probs", ["N", 10])], inits)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def single(op_nodes, inputs, outputs, inits=None, opset=13) -> bytes:
    return make_onnx(op_nodes, inputs, outputs, inits, opset=opset).SerializeToString()


def relu_model(in_shape, out_shape=None) -> bytes:
    return single([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                  [("x", in_shape)], [("y", out_shape if out_shape is not None else in_shape)])


@pytest.fixture(scope="module")
def lenet():
    return lpcv.load(LENET300)


@pytest.fixture(scope="module")
def lenet_session(lenet):
    return lpcv.Session(lenet, threads=1)


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize("make", [
    lambda d: d[: len(d) // 2],
    lambda d: d[:10],
    lambda d: d[:-1],
    lambda d: d[:700],
    lambda d: np.random.default_rng(0).bytes(5000),
    lambda d: b"\x89PNG\r\n\x1a\n" + d[8:],
    lambda d: b"\xff\xd8\xff\xe0" + b"\0" * 200,
    lambda d: b"PK\x03\x04" + d[4:2000],
    lambda d: b"hello, this is not a model\n" * 20,
], ids=["half", "10-bytes", "minus-1-byte", "header-only", "random", "png", "jpeg", "zip", "text"])
def test_corrupt_bytes_raise_onnx_load_error(make, tmp_path):
    data = make(LENET300.read_bytes())
    with pytest.raises(ONNXLoadError, match="ONNX|protobuf"):
        lpcv.load(data)
    (tmp_path / "bad.onnx").write_bytes(data)
    with pytest.raises(ONNXLoadError, match="bad.onnx"):
        lpcv.load(tmp_path / "bad.onnx")


def test_empty_file(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ONNXLoadError, match="empty"):
        lpcv.load(tmp_path / "empty.onnx")
    with pytest.raises(ONNXLoadError, match="empty"):
        lpcv.load(b"")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ONNXLoadError, match="nope.onnx.*does not exist"):
        lpcv.load(tmp_path / "nope.onnx")
    with pytest.raises(ONNXLoadError, match="not a file"):
        lpcv.load(tmp_path)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.onnx"
    path.write_bytes(LENET300.read_bytes())

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # chmod does not stop root
    with pytest.raises(ONNXLoadError, match="cannot read ONNX file .*Permission denied"):
        lpcv.load(path)


def test_protobuf_that_is_not_a_model():
    tensor = numpy_helper.from_array(np.ones(3, F32), "t").SerializeToString()
    with pytest.raises(ONNXLoadError, match="ONNX"):
        lpcv.load(tensor)


# ----------------------------------------------------------------------------- graphs
def test_file_with_a_cycle():
    data = single([helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
                   helper.make_node("Relu", ["a"], ["b"], name="n2")],
                  [("x", ["N", 4])], [("b", ["N", 4])])
    with pytest.raises(ModelError, match=r"cycle through nodes \['n1', 'n2'\]"):
        lpcv.load(data)


def test_file_with_missing_initializer():
    data = single([helper.make_node("Gemm", ["x", "fc.w"], ["y"], name="fc")],
                  [("x", ["N", 4])], [("y", ["N", 3])])
    with pytest.raises(ModelError, match=r"node 'fc' \(Gemm\) reads tensor 'fc.w'"):
        lpcv.load(data)


def test_file_with_dangling_input():
    data = single([helper.make_node("Relu", ["x"], ["a"], name="r"),
                   helper.make_node("Add", ["a", "ghost"], ["y"], name="add")],
                  [("x", ["N", 4])], [("y", ["N", 4])])
    with pytest.raises(ModelError, match="'ghost', which is not a graph input"):
        lpcv.load(data)


def test_file_with_unproduced_output():
    data = single([helper.make_node("Relu", ["x"], ["y"], name="r")],
                  [("x", ["N", 4])], [("z", ["N", 4])])
    with pytest.raises(ModelError, match="graph output 'z' is not produced"):
        lpcv.load(data)


def test_file_without_outputs():
    data = single([helper.make_node("Relu", ["x"], ["y"], name="r")], [("x", ["N", 4])], [])
    with pytest.raises(ModelError, match="no outputs"):
        lpcv.load(data)


# ----------------------------------------------------------------------------- shapes
INCONSISTENT = {
    "conv-channels": (
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], ("x", ["N", 4, 8, 8]),
        {"w": np.ones((8, 3, 3, 3), F32)},
        r"node 'conv' \(Conv\): channels do not match: X has 4 channels"),
    "gemm-inner": (
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)], ("x", ["N", 4]),
        {"w": np.ones((3, 5), F32)},
        r"node 'fc' \(Gemm\): inner dimensions differ: A gives K=4, B gives K=5"),
    "add-broadcast": (
        [helper.make_node("Add", ["x", "b"], ["y"], name="add")], ("x", ["N", 4]),
        {"b": np.ones(3, F32)},
        r"node 'add' \(Add\): shapes \(1, 4\) and \(3,\) cannot be broadcast"),
    "matmul-inner": (
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], ("x", ["N", 4]),
        {"w": np.ones((5, 2), F32)}, r"node 'mm' \(MatMul\): inner dimensions differ"),
    "reshape-size": (
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")], ("x", ["N", 6]),
        {"s": np.array([1, 4], np.int64)}, r"node 'rs' \(Reshape\): cannot reshape"),
    "concat-mismatch": (
        [helper.make_node("Concat", ["x", "b"], ["y"], name="cat", axis=1)], ("x", ["N", 4]),
        {"b": np.ones((2, 3, 1), F32)}, r"node 'cat' \(Concat\): input shapes"),
    "kernel-too-big": (
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], ("x", ["N", 1, 2, 2]),
        {"w": np.ones((1, 1, 3, 3), F32)}, r"node 'conv' \(Conv\): kernel extent 3 exceeds"),
}


@pytest.mark.parametrize("case", INCONSISTENT)
def test_inconsistent_shapes_raise_shape_error(case):
    nodes, x, inits, pattern = INCONSISTENT[case]
    m = lpcv.load(single(nodes, [x], [("y", None)], inits))
    with pytest.raises(ShapeError, match=pattern):
        m.infer_shapes(batch_size=1)
    with pytest.raises(ShapeError, match=pattern):
        lpcv.Session(m, threads=1)


@pytest.mark.parametrize("shape", [[10 ** 7, 10 ** 7], ["N", 10 ** 7, 10 ** 7],
                                   [2 ** 40], [2 ** 20, 2 ** 20, 2 ** 20]])
def test_absurd_input_dimensions_fail_fast(shape):
    m = lpcv.load(relu_model(shape))
    t0 = time.perf_counter()
    with pytest.raises(ShapeError, match="elements, more than"):
        m.infer_shapes()
    with pytest.raises(ShapeError, match="'x' of shape"):
        lpcv.Session(m, threads=1)
    assert time.perf_counter() - t0 < 2.0


def test_absurd_intermediate_tensor_fails_fast():
    # A small input padded into a 10^14-element tensor.
    node = helper.make_node("Pad", ["x", "p"], ["y"], name="pad")
    m = lpcv.load(single([node], [("x", ["N", 4, 4])], [("y", None)],
                         {"p": np.array([0, 10 ** 7, 10 ** 7, 0, 0, 0], np.int64)}))
    t0 = time.perf_counter()
    with pytest.raises(ShapeError, match="tensor 'y' .* elements, more than"):
        lpcv.Session(m, threads=1)
    assert time.perf_counter() - t0 < 2.0


def test_absurd_initializer_dims_without_data():
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[10 ** 7, 10 ** 7])
    proto = make_onnx([helper.make_node("Add", ["x", "w"], ["y"], name="add")],
                      [("x", ["N", 4])], [("y", ["N", 4])])
    proto.graph.initializer.append(t)
    t0 = time.perf_counter()
    with pytest.raises(ModelError, match="'w' claims 1e\\+14 elements"):
        lpcv.load(proto.SerializeToString())
    assert time.perf_counter() - t0 < 2.0


def test_initializer_whose_data_disagrees_with_dims():
    t = numpy_helper.from_array(np.ones(6, F32), "w")
    t.dims[:] = [2, 4]
    proto = make_onnx([helper.make_node("Add", ["x", "w"], ["y"], name="add")],
                      [("x", ["N", 4])], [("y", ["N", 4])])
    proto.graph.initializer.append(t)
    with pytest.raises(ONNXLoadError):
        lpcv.load(proto.SerializeToString())


def test_negative_dimensions():
    with pytest.raises(ModelError, match="'x' has negative dimension -3"):
        lpcv.load(relu_model([-3, 4], [3, 4]))
    t = numpy_helper.from_array(np.ones(4, F32), "w")
    t.dims[:] = [-4]
    proto = make_onnx([helper.make_node("Add", ["x", "w"], ["y"], name="add")],
                      [("x", ["N", 4])], [("y", ["N", 4])])
    proto.graph.initializer.append(t)
    with pytest.raises(ModelError, match="negative dimensions"):
        lpcv.load(proto.SerializeToString())
    node = helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")
    m = lpcv.load(single([node], [("x", ["N", 6])], [("y", None)],
                         {"s": np.array([-2, -3], np.int64)}))
    with pytest.raises(ShapeError, match="negative entry -2"):
        lpcv.Session(m, threads=1)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(value):
    w = np.ones((3, 4), F32)
    w[1, 2] = value
    data = single([helper.make_node("Gemm", ["x", "fc.w"], ["y"], name="fc", transB=1)],
                  [("x", ["N", 4])], [("y", ["N", 3])], {"fc.w": w})
    with pytest.raises(ModelError, match="initializer 'fc.w' contains NaN or Inf"):
        lpcv.load(data)


def test_non_finite_constant_node():
    c = helper.make_node("Constant", [], ["b"], name="bias",
                         value=numpy_helper.from_array(np.array([1, np.nan, 3, 4], F32)))
    data = single([c, helper.make_node("Add", ["x", "b"], ["y"], name="add")],
                  [("x", ["N", 4])], [("y", ["N", 4])])
    with pytest.raises(ModelError, match="Constant node 'bias'.*NaN or Inf"):
        lpcv.load(data)


# ----------------------------------------------------------------------------- ops
def lstm_model() -> lpcv.Model:
    rng = np.random.default_rng(0)
    node = helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="lstm1", hidden_size=2)
    return lpcv.load(single([node], [("x", [5, 1, 4])], [("y", None)],
                            {"W": rng.standard_normal((1, 8, 4)).astype(F32),
                             "R": rng.standard_normal((1, 8, 2)).astype(F32)}))


def test_unsupported_op_names_op_node_and_supported_ops():
    m = lstm_model()
    with pytest.raises(UnsupportedOpError) as info:
        lpcv.Session(m, threads=1)
    e = info.value
    assert e.op == "LSTM" and e.node == "lstm1"
    assert {"Conv", "Gemm", "Relu"} <= set(e.supported)
    msg = str(e)
    assert "'LSTM'" in msg and "'lstm1'" in msg and "Conv" in msg and "Gemm" in msg
    assert isinstance(e, NotImplementedError)


def test_unsupported_op_lists_only_ops_the_runtime_runs():
    with pytest.raises(UnsupportedOpError) as info:
        lpcv.Session(lstm_model(), threads=1)
    assert set(info.value.supported) <= set(lpcv.runtime.SUPPORTED_OPS)


def test_op_known_to_shapes_but_not_runtime():
    data = single([helper.make_node("Elu", ["x"], ["y"], name="elu")],
                  [("x", ["N", 4])], [("y", ["N", 4])])
    with pytest.raises(UnsupportedOpError, match="'Elu' in node 'elu'") as info:
        lpcv.Session(lpcv.load(data), threads=1)
    assert "Relu" in info.value.supported


def test_custom_domain_op_is_unsupported():
    node = helper.make_node("Fancy", ["x"], ["y"], name="f", domain="com.example")
    proto = make_onnx([node], [("x", ["N", 4])], [("y", ["N", 4])])
    proto.opset_import.append(helper.make_opsetid("com.example", 1))
    m = lpcv.load(proto.SerializeToString())
    with pytest.raises(UnsupportedOpError, match="com.example.Fancy|Fancy"):
        lpcv.Session(m, threads=1)


# ----------------------------------------------------------------------------- feeds
def test_wrong_feed_names(lenet_session):
    with pytest.raises(ValidationError, match=r"expected inputs \['input'\]; unknown \['image'\]"):
        lenet_session.run({"image": np.zeros((1, 1, 28, 28), F32)})
    with pytest.raises(ValidationError, match=r"unknown \['extra'\]"):
        lenet_session.run({"input": np.zeros((1, 1, 28, 28), F32),
                           "extra": np.zeros(1, F32)})


def test_missing_feeds(lenet_session):
    with pytest.raises(ValidationError, match=r"missing \['input'\]"):
        lenet_session.run({})


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64, object])
def test_non_float_feeds_raise_type_error(lenet_session, dtype):
    with pytest.raises(TypeError, match="'input': expected a floating-point array"):
        lenet_session.run({"input": np.zeros((1, 1, 28, 28), dtype)})


def test_float64_feed_is_converted(lenet_session):
    x = np.random.default_rng(0).random((1, 1, 28, 28))
    np.testing.assert_array_equal(lenet_session.run({"input": x})["logits"],
                                  lenet_session.run({"input": x.astype(F32)})["logits"])


@pytest.mark.parametrize("shape,pattern", [
    ((1, 1, 28, 27), r"expected shape \(1, 1, 28, 28\), got \(1, 1, 28, 27\)"),
    ((1, 28, 28), r"expected rank 4"),
    ((1, 1, 1, 28, 28), r"expected rank 4"),
    ((), r"expected rank 4"),
    ((0, 1, 28, 28), r"the batch is empty"),
])
def test_wrong_feed_shapes(lenet_session, shape, pattern):
    with pytest.raises(ShapeError, match=pattern):
        lenet_session.run({"input": np.zeros(shape, F32)})


def test_feeds_must_be_a_mapping(lenet_session):
    with pytest.raises(ValidationError, match="feeds must be a dict"):
        lenet_session.run([np.zeros((1, 1, 28, 28), F32)])


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "2", None, True])
def test_bad_batch_size(lenet, batch_size):
    with pytest.raises(ValidationError, match="batch_size must be a positive int"):
        lpcv.Session(lenet, batch_size=batch_size)


@pytest.mark.parametrize("threads", [-1, 0, 1.5, "2"])
def test_bad_threads(lenet, threads):
    with pytest.raises(ValidationError, match="threads must be None or a positive int"):
        lpcv.Session(lenet, threads=threads)


def test_session_needs_a_model():
    with pytest.raises(ValidationError, match="model must be an lpcv.Model"):
        lpcv.Session(str(LENET300))


# ------------------------------------------------------- regressions (formerly known bugs)
def test_batchnorm_size_mismatch_after_conv_is_a_shape_error():
    v = np.ones(8, F32)
    m = Model([Node("Conv", "conv", ["x", "w"], ["c"]),
               Node("BatchNormalization", "bn", ["c", "s", "b", "m", "v"], ["y"])],
              [ValueInfo("x", ("N", 1, 8, 8))], [ValueInfo("y", ("N", 4, 6, 6))],
              {"w": np.ones((4, 1, 3, 3), F32), "s": v, "b": v, "m": v, "v": v})
    with pytest.raises(ShapeError, match="node 'bn'"):
        lpcv.Session(m, threads=1)


def test_identity_without_input_is_a_model_error():
    m = Model([Node("Identity", "id", [], ["a"]), Node("Relu", "r", ["a"], ["y"])],
              [ValueInfo("x", ("N", 4))], [ValueInfo("y", ("N", 4))])
    with pytest.raises(LpcvError, match="'id'"):
        lpcv.Session(m, threads=1)


@pytest.mark.parametrize("op", ["MatMul", "Gather"])
def test_omitted_required_input_is_a_shape_error(op):
    data = single([helper.make_node(op, ["w", ""], ["i"], name="n"),
                   helper.make_node("Add", ["x", "i"], ["y"], name="add")],
                  [("x", ["N", 3])], [("y", ["N", 3])], {"w": np.arange(3, dtype=F32)})
    with pytest.raises(LpcvError, match="'n'"):
        lpcv.Session(lpcv.load(data), threads=1)


# ----------------------------------------------------------------------------- mutations
WORKER_TIMEOUT = 120  # seconds per batch of mutations


def hot_ranges(data: bytes) -> str:
    """Byte ranges of ``data`` outside the large raw weight payloads ("lo:hi,...")."""
    proto = onnx.load_from_string(data)
    payloads = sorted((data.find(t.raw_data), data.find(t.raw_data) + len(t.raw_data))
                      for t in proto.graph.initializer if len(t.raw_data) > 64)
    ranges, prev = [], 0
    for lo, hi in payloads:
        if lo > prev:
            ranges.append((prev, lo))
        prev = max(prev, hi)
    if prev < len(data):
        ranges.append((prev, len(data)))
    return ",".join(f"{a}:{b}" for a, b in ranges)


def run_mutations(mode: str, model_path: Path, seeds: Sequence[int], per_process: int = 50,
                  parallel: int = 2) -> Dict[str, object]:
    """Run the worker on ``seeds`` in batches; collect outcomes, crashes and hangs."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(lpcv.__file__).resolve().parent.parent)]
        + env.get("PYTHONPATH", "").split(os.pathsep))
    env["OMP_NUM_THREADS"] = "1"
    hot = hot_ranges(model_path.read_bytes()) if mode == "bytes" else ""
    batches = [list(seeds[i:i + per_process]) for i in range(0, len(seeds), per_process)]
    outcomes: Dict[int, str] = {}
    unexpected: List[str] = []
    deaths: List[str] = []
    running: List[Tuple[subprocess.Popen, List[int], float]] = []

    def finish(proc: subprocess.Popen, batch: List[int], started: float) -> None:
        try:
            left = WORKER_TIMEOUT - (time.monotonic() - started)
            out, err = proc.communicate(timeout=max(1.0, left))
            hung = False
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            hung = True
        last = None
        for line in out.splitlines():
            if line.startswith("START "):
                last = int(line.split()[1])
            elif line.startswith("DONE "):
                _, seed, outcome = line.split(" ", 2)
                outcomes[int(seed)] = outcome
                last = None
            elif line.startswith("UNEXPECTED "):
                unexpected.append(line)
        if hung:
            deaths.append(f"seed {last}: hung for over {WORKER_TIMEOUT} s")
        elif proc.returncode != 0:
            deaths.append(f"seed {last}: worker exited with code {proc.returncode} "
                          f"(negative = killed by signal); stderr tail: {err[-800:]}")

    for batch in batches:
        if len(running) >= parallel:
            finish(*running.pop(0))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode,
               str(model_path), hot] + [str(s) for s in batch]
        running.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, env=env), batch, time.monotonic()))
    while running:
        finish(*running.pop(0))
    missing = sorted(set(seeds) - set(outcomes))
    return {"outcomes": outcomes, "unexpected": unexpected, "deaths": deaths,
            "missing": missing}


@pytest.fixture(scope="module")
def small_model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mutations") / "small.onnx"
    path.write_bytes(small_model_proto().SerializeToString())
    return path


def test_small_model_is_valid(small_model_path):
    from conftest import ort_run
    m = lpcv.load(small_model_path)
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(F32)
    np.testing.assert_allclose(lpcv.Session(m, batch_size=3, threads=1).run({"input": x})["probs"],
                               ort_run(small_model_path, {"input": x})[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("which,seeds", [("small", range(0, 300)), ("lenet300", range(1000, 1100))])
def test_corrupted_bytes_never_crash(which, seeds, small_model_path):
    path = small_model_path if which == "small" else LENET300
    res = run_mutations("bytes", path, list(seeds))
    assert not res["deaths"], res["deaths"]
    assert not res["unexpected"], "\n".join(res["unexpected"])
    assert not res["missing"], f"no result for seeds {res['missing']}"
    outcomes = list(res["outcomes"].values())
    # The test must exercise both paths: most corruptions are rejected, some still run.
    assert sum(o != "ok" for o in outcomes) > len(outcomes) // 2
    if which == "small":
        assert any(o == "ok" for o in outcomes)
        assert any(o.endswith("@session") for o in outcomes)


def test_mutation_harness_reports_crashes_and_unexpected_errors(small_model_path):
    res = run_mutations("selftest", small_model_path, [0, 1, 2, 3], per_process=4)
    assert res["outcomes"] == {0: "ok", 1: "unexpected"}
    assert len(res["unexpected"]) == 1 and "KeyError" in res["unexpected"][0]
    assert len(res["deaths"]) == 1 and res["deaths"][0].startswith("seed 2: worker exited "
                                                                    "with code -11")
    assert res["missing"] == [2, 3]


def test_mutation_harness_reports_hangs(small_model_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "WORKER_TIMEOUT", 10)
    res = run_mutations("selftest", small_model_path, [3, 4], per_process=2)
    assert res["outcomes"] == {3: "ok"}
    assert res["deaths"] == ["seed 4: hung for over 10 s"]


@pytest.fixture(scope="module")
def structural_results(small_model_path):
    return run_mutations("struct", small_model_path, list(range(200)), per_process=50)


def test_structural_mutations_never_crash_or_hang(structural_results):
    res = structural_results
    assert not res["deaths"], res["deaths"]
    assert not res["missing"], f"no result for seeds {res['missing']}"
    outcomes = list(res["outcomes"].values())
    assert any(o == "ok" for o in outcomes) and any(o.endswith("@session") for o in outcomes)


def test_structural_mutations_raise_only_lpcv_errors(structural_results):
    assert not structural_results["unexpected"], "\n".join(structural_results["unexpected"])
