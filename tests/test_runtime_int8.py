"""Quantized (QDQ) models in lpcv.Session: simulation and real int8 kernels.

Oracles: onnxruntime with graph optimizations disabled (QuantizeLinear /
DequantizeLinear executed literally) for the simulation, NumPy for the
rounding rules, the simulation itself for the int8 kernels (within one
quantization step), and onnxruntime's own int8 kernels (optimized QDQ) for
the predictions.
"""
from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)

import lpcv
from lpcv.exceptions import LpcvError, UnsupportedError, ValidationError

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------- helpers
def _ort(proto: onnx.ModelProto, feeds, optimized: bool = False):
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(proto.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _expose_quantized(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose every QuantizeLinear output is also a graph output."""
    p = onnx.ModelProto()
    p.CopyFrom(proto)
    inits = {i.name: i for i in p.graph.initializer}
    have = {o.name for o in p.graph.output}
    for n in p.graph.node:
        if n.op_type == "QuantizeLinear" and n.output[0] not in have:
            et = inits[n.input[2]].data_type if len(n.input) > 2 else TensorProto.UINT8
            p.graph.output.append(helper.make_tensor_value_info(n.output[0], et, None))
    return p


class _Reader(CalibrationDataReader):
    def __init__(self, batches):
        self._it = iter(batches)

    def get_next(self):
        return next(self._it, None)


@functools.lru_cache(maxsize=None)
def _ort_qdq(name: str, per_channel: bool, act: str, fold_bn: bool = True) -> bytes:
    """A shipped reference model quantized by onnxruntime (QDQ format)."""
    import tempfile
    import os
    model = lpcv.zoo.reference(name)
    if fold_bn:
        model = lpcv.transforms.fold_batchnorm(model)
    x, _ = lpcv.data.load_sample(64)
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f.onnx"), os.path.join(d, "q.onnx")
        lpcv.save(model, src, overwrite=True)
        quantize_static(src, dst, _Reader([{"input": x[i:i + 16]} for i in range(0, 64, 16)]),
                        quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8 if act == "u8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8)
        return onnx.load(dst).SerializeToString()


def _proto(data: bytes) -> onnx.ModelProto:
    return onnx.load_from_string(data)


def _mismatch(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.astype(np.int64) != b.astype(np.int64)))


def _steps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int64) - b.astype(np.int64))


CONFIGS = [("fmnist-resnet", True, "u8"), ("fmnist-mobilenet", True, "s8"),
           ("fmnist-lenet5", False, "u8"), ("fmnist-lenet300", True, "s8")]


# ------------------------------------------------------------ simulation
def _qdq_graph(x_shape, body, inits, opset=13, out_type=TensorProto.FLOAT, out_shape=None):
    g = helper.make_graph(body, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                    list(x_shape))],
                          [helper.make_tensor_value_info("y", out_type, out_shape)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def test_quantize_rounds_half_to_even_and_saturates():
    s = np.float32(0.5)
    # Exact ties k + 0.5 after division, plus values beyond the grid.
    x = np.array([[0.25, 0.75, 1.25, -0.25, -0.75, -1.25, 1000.0, -1000.0, 63.25, 63.75]],
                 np.float32)
    for zp in (np.uint8(3), np.int8(-2)):
        m = _qdq_graph(x.shape, [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])],
                       {"s": np.array(s), "z": np.array(zp)},
                       out_type=helper.np_dtype_to_tensor_dtype(np.asarray(zp).dtype),
                       out_shape=list(x.shape))
        info = np.iinfo(np.asarray(zp).dtype)
        want = np.clip(np.rint(x / s) + int(zp), info.min, info.max).astype(np.asarray(zp).dtype)
        for mode in ("simulate", "int8"):
            got = lpcv.Session(lpcv.load(m.SerializeToString()), quantized=mode).run({"x": x})["y"]
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(_ort(m, {"x": x})["y"], want)


@pytest.mark.parametrize("qtype", [np.uint8, np.int8])
def test_per_axis_qdq_matches_numpy_and_onnxruntime(qtype):
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32) * 3
    s = np.array([0.02, 0.05, 0.1], np.float32)
    z = np.array([120, 128, 3], np.uint8) if qtype == np.uint8 else np.array([0, -5, 7], np.int8)
    body = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)]
    m = _qdq_graph(x.shape, body, {"s": s, "z": z}, out_shape=list(x.shape))
    info = np.iinfo(qtype)
    q = np.clip(np.rint(x / s[None, :, None, None]) + z[None, :, None, None].astype(np.int64),
                info.min, info.max)
    want = ((q - z[None, :, None, None].astype(np.int64)).astype(np.float32)
            * s[None, :, None, None])
    got = lpcv.Session(lpcv.load(m.SerializeToString()), quantized="simulate").run({"x": x})["y"]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, _ort(m, {"x": x})["y"])


@pytest.mark.parametrize("name,per_channel,act", CONFIGS)
def test_simulate_matches_onnxruntime_literal_qdq(name, per_channel, act):
    proto = _expose_quantized(_proto(_ort_qdq(name, per_channel, act)))
    x, _ = lpcv.data.load_sample(64)
    ref = _ort(proto, {"input": x})
    got = lpcv.Session(lpcv.load(proto.SerializeToString()), batch_size=64,
                       quantized="simulate").run({"input": x})
    assert set(ref) == set(got)
    for k, r in ref.items():
        assert got[k].dtype == r.dtype, k
        if r.dtype.kind in "iu":
            # Bit for bit, but for the rare value next to a rounding boundary
            # that a different float accumulation order in Conv flips; such
            # flips propagate and grow slowly with depth.
            assert _mismatch(got[k], r) <= 1e-2, k
            assert _steps(got[k], r).max() <= 4, k
        else:
            close = np.abs(got[k] - r) <= 1e-4 * np.abs(r).max() + 1e-6
            assert close.mean() >= 0.97, k
    # The first quantized tensors (before any flip can propagate) are exact.
    first = [k for k in ref if k != "logits"][:2]
    for k in first:
        assert _mismatch(got[k], ref[k]) <= 1e-5, k
    assert np.mean(got["logits"].argmax(1) == ref["logits"].argmax(1)) >= 0.98


def test_simulate_keeps_batchnorm_between_qdq():
    # onnxruntime quantizes a model with BatchNormalization kept: Q/DQ around
    # the BN, whose own parameters are quantized (int32 bias via DQ).
    proto = _proto(_ort_qdq("fmnist-resnet", False, "u8", fold_bn=False))
    x, _ = lpcv.data.load_sample(32)
    ref = _ort(proto, {"input": x})["logits"]
    m = lpcv.load(proto.SerializeToString())
    for mode in ("simulate", "int8"):
        y = lpcv.Session(m, batch_size=32, quantized=mode).run({"input": x})["logits"]
        assert np.mean(y.argmax(1) == ref.argmax(1)) >= 0.95
        assert np.abs(y - ref).max() <= 0.05 * np.abs(ref).max()


# ------------------------------------------------------------- bad input
def _conv_qdq(scale=np.float32(0.1), zp=np.uint8(0), axis=None, w_scale=None, scale_input=False):
    w = RNG.integers(-20, 20, (4, 3, 3, 3)).astype(np.int8)
    ws = np.full(4, 0.01, np.float32) if w_scale is None else w_scale
    inits = {"s": np.array(scale), "z": np.array(zp), "w": w, "ws": ws,
             "wz": np.zeros(ws.shape, np.int8)}
    kw = {"axis": 0 if axis is None else axis}
    body = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
            helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], **kw),
            helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1])]
    g_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    if scale_input:
        del inits["s"]
        g_inputs.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, []))
    g = helper.make_graph(body, "g", g_inputs,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def test_good_conv_qdq_runs_both_ways():
    m = lpcv.load(_conv_qdq(axis=0).SerializeToString())
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    ys = lpcv.Session(m, quantized="simulate").run({"x": x})["y"]
    yi = lpcv.Session(m, quantized="int8").run({"x": x})["y"]
    np.testing.assert_allclose(yi, ys, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(scale_input=True), UnsupportedError, "constant"),
    (dict(scale=np.float32(0.0)), ValueError, "> 0"),
    (dict(scale=np.float32(np.inf)), ValueError, "> 0|NaN or Inf"),
    (dict(axis=4), ValidationError, "axis"),
    (dict(axis=-5), ValidationError, "axis"),
    (dict(w_scale=np.full(3, 0.01, np.float32), axis=0), ValidationError, "axis"),
])
def test_bad_qdq_is_rejected_at_construction(kwargs, exc, words):
    proto = _conv_qdq(**kwargs)
    with pytest.raises(exc, match=words) as info:
        m = lpcv.load(proto.SerializeToString())
        lpcv.Session(m)
    assert isinstance(info.value, LpcvError)


def test_mismatched_zero_point_dtype_is_rejected():
    proto = _conv_qdq()
    for n in proto.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] == "xq":
            n.input[2] = "wz"  # int8 zero point for a uint8 tensor
    with pytest.raises((ValueError, LpcvError), match="zero.point|dtype"):
        lpcv.Session(lpcv.load(proto.SerializeToString()))


def test_quantized_option_is_validated():
    m = lpcv.zoo.reference("fmnist-lenet300")
    for bad in ("INT8", "fp32", 8, None):
        with pytest.raises(ValidationError, match="quantized"):
            lpcv.Session(m, quantized=bad)


# -------------------------------------------------------------- int8 kernels
def _int8_rows(sess):
    return [r for r in sess.steps().rows if "int8" in r["impl"]]


class _G:
    """A small QDQ graph written the way quantize_model / onnxruntime do."""

    def __init__(self, x_shape, act="u8"):
        self.nodes, self.inits, self.k = [], {}, 0
        self.x_shape = list(x_shape)
        self.act = act

    def _name(self, base):
        self.k += 1
        return f"{base}{self.k}"

    def const(self, value, base="c"):
        name = self._name(base)
        self.inits[name] = np.asarray(value)
        return name

    def qdq(self, t, scale, zp=None, act=None):
        act = act or self.act
        if zp is None:
            zp = 128 if act == "u8" else 0
        s = self.const(np.float32(scale), "s")
        z = self.const(np.uint8(zp) if act == "u8" else np.int8(zp), "z")
        q, d = self._name("q"), self._name("d")
        self.nodes += [helper.make_node("QuantizeLinear", [t, s, z], [q]),
                       helper.make_node("DequantizeLinear", [q, s, z], [d])]
        return d

    def weight(self, shape, axis, per_channel=True, lim=20, scale=0.02):
        w = RNG.integers(-lim, lim + 1, shape).astype(np.int8)
        n = shape[axis] if per_channel else 1
        ws = (scale * RNG.uniform(0.5, 1.5, n)).astype(np.float32)
        wq, s = self.const(w, "w"), self.const(ws if per_channel else ws[0], "ws")
        z = self.const(np.zeros(n, np.int8) if per_channel else np.int8(0), "wz")
        d = self._name("wd")
        self.nodes.append(helper.make_node("DequantizeLinear", [wq, s, z], [d], axis=axis))
        return d, ws

    def node(self, op, ins, **attrs):
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    def model(self, out):
        self.nodes.append(helper.make_node("Identity", [out], ["y"]))
        g = helper.make_graph(
            self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                            self.x_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(v, k) for k, v in self.inits.items()])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        return m


def _synthetic(kind, act):
    z_relu = 0 if act == "u8" else -128
    if kind in ("conv", "residual", "depthwise", "pertensor", "int4"):
        g = _G((2, 8, 10, 10), act)
        x = g.qdq("x", 4 / 127)
        if kind == "depthwise":
            w, _ = g.weight((8, 1, 3, 3), 0, lim=60)
            c = g.node("Conv", [x, w, g.const(RNG.standard_normal(8).astype(np.float32) * .1)],
                       pads=[1, 1, 1, 1], group=8)
            c = g.node("Clip", [c, g.const(np.float32(0)), g.const(np.float32(6))])
            return g.model(g.qdq(c, 6 / 255 if act == "u8" else 6 / 255, z_relu))
        per_channel = kind != "pertensor"
        lim = 7 if kind == "int4" else 20
        w, _ = g.weight((16, 8, 3, 3), 0, per_channel, lim=lim, scale=0.02 * 20 / lim)
        c = g.node("Conv", [x, w, g.const(RNG.standard_normal(16).astype(np.float32) * .1)],
                   pads=[1, 1, 1, 1], strides=[1, 1])
        c = g.node("Relu" if kind != "conv" else "LeakyRelu", [c])
        c = g.qdq(c, 6 / 255 if act == "u8" else 4 / 127, z_relu if kind != "conv" else None)
        if kind != "residual":
            return g.model(c)
        w2, _ = g.weight((8, 16, 3, 3), 0)
        c2 = g.node("Conv", [c, w2], pads=[1, 1, 1, 1])
        s = g.node("Add", [c2, x])       # residual straight into the next quantizer:
        s = g.node("Relu", [s])           # a sum post-op with the input's scale
        return g.model(g.qdq(s, 8 / 255 if act == "u8" else 6 / 127, z_relu))
    if kind == "projection":  # float shortcut conv added into the main conv
        g = _G((2, 8, 10, 10), act)
        x = g.qdq("x", 4 / 127)
        w1, _ = g.weight((16, 8, 1, 1), 0)
        short = g.node("Conv", [x, w1, g.const(RNG.standard_normal(16).astype(np.float32))])
        w2, _ = g.weight((16, 8, 3, 3), 0)
        c = g.node("Conv", [x, w2], pads=[1, 1, 1, 1])
        s = g.node("Relu", [g.node("Add", [c, short])])
        return g.model(g.qdq(s, 8 / 255 if act == "u8" else 6 / 127, z_relu))
    if kind == "gemm":  # int32 bias via DequantizeLinear, as onnxruntime writes it
        g = _G((4, 48), act)
        x = g.qdq("x", 4 / 127)
        w, ws = g.weight((10, 48), 0)
        bq = RNG.integers(-2000, 2000, 10).astype(np.int32)
        b = g.node("DequantizeLinear", [g.const(bq, "b"), g.const((ws * (4 / 127)).astype(
            np.float32)), g.const(np.zeros(10, np.int32))], axis=0)
        y = g.node("Gemm", [x, w, b], transB=1)
        return g.model(g.qdq(y, 8 / 127, None))
    if kind == "matmul":
        g = _G((4, 48), act)
        x = g.qdq("x", 4 / 127)
        w, _ = g.weight((48, 10), 1)
        y = g.node("Relu", [g.node("MatMul", [x, w])])
        return g.model(g.qdq(y, 6 / 255 if act == "u8" else 4 / 127, z_relu))
    raise AssertionError(kind)


KINDS = ["conv", "residual", "projection", "depthwise", "pertensor", "int4", "gemm", "matmul"]


@pytest.mark.parametrize("act", ["u8", "s8"])
@pytest.mark.parametrize("kind", KINDS)
def test_int8_kernels_match_simulation_on_small_graphs(kind, act):
    proto = _synthetic(kind, act)
    shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    x = RNG.standard_normal(shape).astype(np.float32)
    m = lpcv.load(proto.SerializeToString())
    si = lpcv.Session(m, batch_size=x.shape[0], quantized="int8")
    ss = lpcv.Session(m, batch_size=x.shape[0], quantized="simulate")
    yi, ys = si.run({"x": x})["y"], ss.run({"x": x})["y"]
    # The simulation is onnxruntime's literal QDQ...
    ref = _ort(proto, {"x": x})["y"]
    np.testing.assert_allclose(ys, ref, rtol=1e-6, atol=1e-6)
    # ... and the integer kernels land on the same grid point but for rare
    # float ties: at most one quantization step anywhere.
    assert np.isfinite(yi).all()
    q_last = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"][-1]
    s_last = float(numpy_helper.to_array(
        [i for i in proto.graph.initializer if i.name == q_last.input[1]][0]))
    diff = np.abs(yi - ys) / s_last
    assert diff.max() <= 1.0 + 1e-4
    assert np.mean(diff > 1e-4) <= 1e-3
    assert len(np.unique(ys)) > 8, "degenerate test data (everything saturated)"
    # The fused layers run as int8 primitives.
    rows = _int8_rows(si)
    n_linear = sum(n.op_type in ("Conv", "Gemm", "MatMul") for n in proto.graph.node)
    assert sum(r["kind"] in ("convolution", "matmul") for r in rows) == n_linear, si.steps().rows
    assert all(f"int8 {act}" in r["impl"] for r in rows if r["kind"] in ("convolution",
                                                                           "matmul"))
    assert not _int8_rows(ss)
    if kind in ("residual", "projection"):  # the Add became a post-op of the second conv
        assert [r["node"].count("Add") for r in rows] == [0, 1]
        assert not any(r["kind"] == "add_int8" for r in si.steps().rows)


@pytest.mark.parametrize("name,per_channel,act", CONFIGS)
def test_int8_reference_models(name, per_channel, act):
    proto = _expose_quantized(_proto(_ort_qdq(name, per_channel, act)))
    x, _ = lpcv.data.load_sample(64)
    m = lpcv.load(proto.SerializeToString())
    si = lpcv.Session(m, batch_size=64, quantized="int8")
    ss = lpcv.Session(m, batch_size=64, quantized="simulate")
    yi, ys = si.run({"input": x}), ss.run({"input": x})
    # (b) every int8 tensor within one quantization step of the simulation.
    # Rare float-tie flips propagate through the depth, more so in the
    # depthwise MobileNet, whose deepest tensors get a looser bound.
    within = 0.995 if name == "fmnist-mobilenet" else 0.999
    for k, v in ys.items():
        if v.dtype.kind in "iu":
            assert np.mean(_steps(yi[k], v) <= 1) >= within, k
    assert np.mean(yi["logits"].argmax(1) == ys["logits"].argmax(1)) >= 0.98
    # (c) same predictions as onnxruntime's own int8 kernels on its QDQ file.
    opt = _ort(_proto(_ort_qdq(name, per_channel, act)), {"input": x}, optimized=True)
    assert np.mean(yi["logits"].argmax(1) == opt["logits"].argmax(1)) >= 0.99
    # (d) every Conv/Gemm is one int8 primitive; no fallbacks.
    n_linear = sum(n.op_type in ("Conv", "Gemm", "MatMul") for n in proto.graph.node)
    rows = [r for r in _int8_rows(si) if r["kind"] in ("convolution", "matmul")]
    assert len(rows) == n_linear
    assert si.int8_fallbacks == []
    kinds = si.steps().column("kind")
    if name == "fmnist-resnet":
        adds = sum(n.op_type == "Add" for n in proto.graph.node)
        assert kinds.count("add_int8") == adds >= 4  # residual additions stay integer
    if name == "fmnist-lenet5":               # max pooling on the integers
        assert any(r["kind"] == "pooling" and "int" in r["impl"] for r in si.steps().rows)


def test_unmatched_pattern_falls_back_to_simulation():
    # uint8 weights: no int8 kernel for them, so the layer is simulated.
    proto = _synthetic("conv", "u8")
    for init in proto.graph.initializer:
        if init.data_type == TensorProto.INT8 and len(init.dims) == 4:
            arr = numpy_helper.to_array(init).astype(np.int16) + 128
            init.CopyFrom(numpy_helper.from_array(arr.astype(np.uint8), init.name))
        elif init.name.startswith("wz"):
            init.CopyFrom(numpy_helper.from_array(np.full(init.dims, 128, np.uint8), init.name))
    x = RNG.standard_normal((2, 8, 10, 10)).astype(np.float32)
    m = lpcv.load(proto.SerializeToString())
    si = lpcv.Session(m, batch_size=2)
    assert not _int8_rows(si)
    np.testing.assert_allclose(si.run({"x": x})["y"], _ort(proto, {"x": x})["y"], rtol=1e-6,
                               atol=1e-6)


def test_int8_session_other_batch_and_profile():
    proto = _proto(_ort_qdq("fmnist-lenet5", True, "u8"))
    m = lpcv.load(proto.SerializeToString())
    sess = lpcv.Session(m, batch_size=4)
    x, _ = lpcv.data.load_sample(5)
    y5 = sess.run({"input": x})["logits"]
    y1 = np.concatenate([sess.run({"input": x[i:i + 1]})["logits"] for i in range(5)])
    np.testing.assert_allclose(y5, y1, rtol=1e-5, atol=1e-5)
    prof = sess.profile(repeats=2, warmup=1)
    assert abs(sum(prof.column("share")) - 1) < 1e-9
    assert any("int8" in r["impl"] for r in prof.rows)


def test_cost_profile_prices_int8_layers_at_int8():
    q = lpcv.load(_ort_qdq("fmnist-resnet", True, "u8"))
    f = lpcv.transforms.fold_batchnorm(lpcv.zoo.reference("fmnist-resnet"))
    rq, rf = lpcv.cost.profile(q, "rpi4"), lpcv.cost.profile(f, "rpi4")
    assert rq.total.macs == rf.total.macs
    conv_q = [r for r in rq.rows if r["op"] == "QConv"]
    conv_f = [r for r in rf.rows if r["op"] == "Conv"]
    assert len(conv_q) == len(conv_f) > 0
    assert all(r["precision"] == "int8" for r in conv_q)
    for a, b in zip(conv_q, conv_f):
        w = a["macs"] // max(1, np.prod([int(v) for v in a["output_shape"].split("x")]))
        assert a["params"] == b["params"]
        # int8 weights (1 byte) plus the float32 bias, vs 4 bytes per weight
        assert a["weight_bytes"] < 0.35 * b["weight_bytes"] + 4 * w
        assert a["output_bytes"] * 4 == b["output_bytes"]   # uint8 activations
    assert rq.total.latency < rf.total.latency


@pytest.mark.parametrize("case", ["conv1d", "conv3d", "dilated_grouped", "matmul3d", "strided"])
def test_int8_unusual_shapes(case):
    act = "u8"
    if case == "matmul3d":
        g = _G((2, 5, 48), act)
        x = g.qdq("x", 4 / 127)
        w, _ = g.weight((48, 10), 1)
        y = g.qdq(g.node("MatMul", [x, w]), 8 / 255)
    else:
        shape = {"conv1d": (2, 8, 12), "conv3d": (1, 8, 5, 6, 7)}.get(case, (2, 8, 11, 11))
        nd = len(shape) - 2
        g = _G(shape, act)
        x = g.qdq("x", 4 / 127)
        group = 2 if case == "dilated_grouped" else 1
        w, _ = g.weight((12, 8 // group) + (3,) * nd, 0)
        kw = dict(pads=[1] * 2 * nd, group=group)
        if case == "dilated_grouped":
            kw["dilations"] = [2, 2]
        if case == "strided":
            kw.update(strides=[2, 2], pads=[0, 1, 1, 0])
        y = g.qdq(g.node("Relu", [g.node("Conv", [x, w], **kw)]), 6 / 255, 0)
    proto = g.model(y)
    x = RNG.standard_normal(g.x_shape).astype(np.float32)
    m = lpcv.load(proto.SerializeToString())
    si = lpcv.Session(m, batch_size=g.x_shape[0])
    ys = lpcv.Session(m, batch_size=g.x_shape[0], quantized="simulate").run({"x": x})["y"]
    np.testing.assert_allclose(ys, _ort(proto, {"x": x})["y"], rtol=1e-6, atol=1e-6)
    yi = si.run({"x": x})["y"]
    step = 8 / 255 if case == "matmul3d" else 6 / 255
    assert np.abs(yi - ys).max() <= step * (1 + 1e-4)
    assert len(_int8_rows(si)) == 1 and si.int8_fallbacks == []


def test_oneDNN_refusal_falls_back_to_simulation(monkeypatch):
    # Pretend oneDNN has no kernel for the first int8 convolution.
    proto = _synthetic("residual", "u8")
    m = lpcv.load(proto.SerializeToString())
    real = lpcv.runtime._core.Plan

    def picky(tensors, ops, *args):
        for op in ops:
            if op[0] == "QConv" and "Add" not in op[1]:
                raise lpcv.exceptions.UnsupportedError(f"QConv {op[1]}: no oneDNN int8 kernel")
        return real(tensors, ops, *args)

    monkeypatch.setattr(lpcv.runtime._core, "Plan", picky)
    si = lpcv.Session(m, batch_size=2)
    assert len(si.int8_fallbacks) == 1
    rows = _int8_rows(si)
    assert len(rows) == 1 and "Add" in rows[0]["node"]
    x = RNG.standard_normal((2, 8, 10, 10)).astype(np.float32)
    ys = lpcv.Session(m, batch_size=2, quantized="simulate").run({"x": x})["y"]
    assert np.abs(si.run({"x": x})["y"] - ys).max() <= 8 / 255 * (1 + 1e-4)


def test_runtime_docstring_examples():
    import doctest
    res = doctest.testmod(lpcv.runtime, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 10 and res.failed == 0


@pytest.mark.parametrize("name", ["fmnist-resnet", "fmnist-mobilenet"])
def test_lpcv_quantize_model_output_runs_all_int8(name):
    x, _ = lpcv.data.load_sample(128)
    q, _ = lpcv.quantize.quantize_model(lpcv.zoo.reference(name), x[:64], "w8a8",
                                        progress=False, activation_range="minmax")
    si = lpcv.Session(q, batch_size=128)
    ss = lpcv.Session(q, batch_size=128, quantized="simulate")
    n_linear = sum(n.op in ("Conv", "Gemm", "MatMul") for n in q.nodes)
    rows = [r for r in _int8_rows(si) if r["kind"] in ("convolution", "matmul")]
    assert len(rows) == n_linear and si.int8_fallbacks == []
    assert not [r for r in si.steps().rows if r["kind"] in ("binary", "eltwise")]
    a, b = si.run({"input": x})["logits"], ss.run({"input": x})["logits"]
    assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.98
