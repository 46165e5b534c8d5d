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
