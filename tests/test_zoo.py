"""Tests of lpcv.zoo (standard architectures, reference models) and lpcv._builder.

Oracles: the published parameter and MAC counts, ONNX's own checker and shape
inference, onnxruntime (run through a converter written here, independent of
lpcv.onnx_io) and, when PyTorch is installed, PyTorch re-implementations of
torchvision's modules loaded with the zoo's weights by name.
"""
from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

import lpcv
from lpcv import _builder, zoo
from lpcv.exceptions import ShapeError, ValidationError
from lpcv.graph import Model

ARCHS = zoo.architectures()

PUBLISHED_PARAMS = {
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
    "shufflenet_v2_x1_0": 2_278_604,
    "efficientnet_b0": 5_288_548,
}

ALLOWED_OPS = {
    "Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip", "LeakyRelu", "Sigmoid",
    "Tanh", "HardSigmoid", "HardSwish", "Add", "Sub", "Mul", "Div", "MaxPool", "AveragePool",
    "GlobalAveragePool", "Flatten", "Reshape", "Transpose", "Concat", "Softmax", "Pad",
    "Identity", "Dropout", "Squeeze", "Unsqueeze", "Constant",
}

# Which input positions of an op hold learnable parameters.
_PARAM_INPUTS = {"Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1,), "BatchNormalization": (1, 2)}


@pytest.fixture(scope="module", params=ARCHS)
def arch(request):
    """(name, model) at the defaults; module-scoped so pytest groups tests per model."""
    return request.param, getattr(zoo, request.param)()


def learnable(m: Model) -> int:
    """Parameter count from the op roles (independent of Model.num_parameters)."""
    names = {n.inputs[i] for n in m.nodes for i in _PARAM_INPUTS.get(n.op, ())
             if len(n.inputs) > i and n.inputs[i] in m.initializers}
    return sum(m.initializers[k].size for k in names)


def scalar_constants(m: Model) -> int:
    """Elements of float initializers that are constants, not weights (Clip bounds,
    Dropout ratio)."""
    names = {t for n in m.nodes if n.op in ("Clip", "Dropout") for t in n.inputs[1:]
             if t in m.initializers}
    return sum(m.initializers[k].size for k in names)


# ----------------------------------------------------------------------------- ONNX oracle
def to_onnx(m: Model):
    """A tiny IR → ONNX converter, independent of lpcv.onnx_io."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    def attr(k, v):
        if isinstance(v, np.ndarray):
            return helper.make_attribute(k, numpy_helper.from_array(v))
        return helper.make_attribute(k, v)

    nodes = []
    for n in m.nodes:
        node = helper.make_node(n.op, n.inputs, n.outputs, name=n.name)
        node.attribute.extend(attr(k, v) for k, v in n.attrs.items())
        nodes.append(node)

    def vi(v):
        return helper.make_tensor_value_info(
            v.name, helper.np_dtype_to_tensor_dtype(v.dtype),
            [d if isinstance(d, int) else str(d) for d in v.shape])

    graph = helper.make_graph(
        nodes, m.name, [vi(v) for v in m.inputs], [vi(v) for v in m.outputs],
        [numpy_helper.from_array(a, k) for k, a in m.initializers.items()])
    om = helper.make_model(graph, opset_imports=[helper.make_opsetid("", m.opset)])
    om.ir_version = 8
    onnx.checker.check_model(om, full_check=True)  # includes ONNX shape inference
    return om


_PROTO_CACHE: dict = {}


def cached_proto(m: Model):
    """to_onnx(m), remembered for the last model (tests are grouped per model)."""
    if _PROTO_CACHE.get("model") is not m:
        _PROTO_CACHE.clear()
        _PROTO_CACHE.update(model=m, proto=to_onnx(m))
    return _PROTO_CACHE["proto"]


def ort_run(m: Model, x: np.ndarray, proto=None) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    proto = proto if proto is not None else cached_proto(m)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": x})[0]


def conv_gemm_macs(m: Model) -> int:
    """MACs of Conv and Gemm nodes, with shapes from ONNX shape inference."""
    onnx = pytest.importorskip("onnx")
    om = onnx.shape_inference.infer_shapes(cached_proto(m), strict_mode=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(om.graph.value_info) + list(om.graph.output)}
    total = 0
    for n in m.nodes:
        w = m.initializers.get(n.inputs[1]) if len(n.inputs) > 1 else None
        if n.op == "Conv":
            total += int(np.prod(shapes[n.outputs[0]][1:])) * int(np.prod(w.shape[1:]))
        elif n.op == "Gemm":
            total += w.size
    return total


# ----------------------------------------------------------------------------- counts
def test_parameter_counts_match_published(arch):
    name, m = arch
    published = PUBLISHED_PARAMS[name]
    assert learnable(m) == published
    assert zoo.published(name)["params"] == published
    # Model.num_parameters() also counts float scalar constants (Clip bounds,
    # Dropout ratio) unless it learns to skip them.
    assert m.num_parameters() in (published, published + scalar_constants(m))
    assert scalar_constants(m) <= 3
    if name == "mobilenet_v1":  # the paper says 4.2 M
        assert abs(learnable(m) - 4.2e6) / 4.2e6 < 0.01


def test_mac_counts_match_published(arch):
    name, m = arch
    macs = conv_gemm_macs(m)
    assert macs == pytest.approx(zoo.published(name)["macs"], rel=0.02)


def test_interface(arch):
    name, m = arch
    assert m.name == name
    assert [(v.name, v.shape, v.dtype) for v in m.inputs] == [
        ("input", ("N", 3, 224, 224), np.dtype(np.float32))]
    assert [(v.name, v.shape) for v in m.outputs] == [("logits", ("N", 1000))]
    assert m.opset == 17
    assert m.metadata["architecture"] == name
    ops = set(m.op_types())
    extra = ops - ALLOWED_OPS
    assert extra == ({"Split"} if name == "shufflenet_v2_x1_0" else set())
    for k, v in m.initializers.items():
        assert v.dtype in (np.float32, np.int64), k
        assert np.all(np.isfinite(v)), k


def test_passes_model_validation(arch):
    _, m = arch
    again = Model(m.nodes, m.inputs, m.outputs, m.initializers, opset=m.opset, name=m.name)
    assert again == m
    names = [n.name for n in m.nodes]
    assert len(names) == len(set(names))
    # every initializer is used, and BN statistics are sane
    used = {t for n in m.nodes for t in n.inputs}
    assert set(m.initializers) <= used
    for n in m.nodes:
        if n.op == "BatchNormalization":
            assert np.all(m.initializers[n.inputs[4]] > 0)


def test_lpcv_shape_inference_agrees(arch):
    _, m = arch
    infos = m.infer_shapes(batch_size=3)
    assert infos["logits"].shape == (3, 1000)


def test_torchvision_style_names(arch):
    name, m = arch
    expected = {
        "alexnet": ["features.0.weight", "classifier.6.bias"],
        "vgg16": ["features.28.weight", "classifier.6.weight"],
        "resnet18": ["conv1.weight", "layer2.0.downsample.1.running_var", "fc.weight"],
        "resnet50": ["layer4.2.conv3.weight", "layer1.0.downsample.0.weight", "fc.bias"],
        "mobilenet_v1": ["features.13.3.weight", "fc.weight"],
        "mobilenet_v2": ["features.1.conv.0.0.weight", "features.18.0.weight",
                         "classifier.1.weight"],
        "mobilenet_v3_small": ["features.1.block.1.fc1.weight", "features.12.0.weight",
                               "classifier.3.weight"],
        "mobilenet_v3_large": ["features.16.0.weight", "classifier.0.weight"],
        "squeezenet1_0": ["features.3.squeeze.weight", "features.12.expand3x3.bias",
                          "classifier.1.weight"],
        "squeezenet1_1": ["features.12.expand1x1.weight"],
        "shufflenet_v2_x1_0": ["stage2.0.branch1.0.weight", "stage4.3.branch2.5.weight",
                               "conv5.1.weight"],
        "efficientnet_b0": ["features.1.0.block.0.0.weight", "features.6.3.block.2.fc2.bias",
                            "features.8.0.weight", "classifier.1.weight"],
    }[name]
    for k in expected:
        assert k in m.initializers, k


# ----------------------------------------------------------------------------- onnxruntime
def test_onnxruntime_runs_it(arch):
    _, m = arch
    x = np.random.default_rng(123).standard_normal((1, 3, 224, 224)).astype(np.float32)
    y = ort_run(m, x)
    assert y.shape == (1, 1000)
    assert np.all(np.isfinite(y))
    # numerically tame: O(1) logits, not exploded or vanished
    assert 0.05 < float(y.std()) < 20.0, float(y.std())


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "mobilenet_v3_large"])
def test_activations_stay_order_one(name):
    """Every BatchNormalization output has a standard deviation close to its gamma."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m = getattr(zoo, name)()
    bn = [n for n in m.nodes if n.op == "BatchNormalization"]
    proto = to_onnx(m)
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n.outputs[0])
                              for n in bn)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(5).standard_normal((2, 3, 224, 224)).astype(np.float32)
    outs = sess.run([n.outputs[0] for n in bn], {"input": x})
    for n, o in zip(bn, outs):
        gamma = float(m.initializers[n.inputs[1]][0])
        assert 0.5 * gamma < o.std() < 2.0 * gamma, (n.name, float(o.std()), gamma)
        assert abs(float(o.mean())) < 0.5 * gamma, (n.name, float(o.mean()))


def test_onnx_io_roundtrip_agrees():
    from lpcv import onnx_io
    pytest.importorskip("onnxruntime")
    m = zoo.mobilenet_v3_small(num_classes=10, resolution=96)
    x = np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32)
    ours = ort_run(m, x)
    theirs = ort_run(m, x, proto=onnx_io.to_onnx(m))
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)
    back = onnx_io.load(onnx_io.to_onnx(m).SerializeToString())
    assert back.num_parameters() == m.num_parameters()


# ----------------------------------------------------------------------------- options
def test_width_mult():
    full = PUBLISHED_PARAMS["mobilenet_v2"]
    half = zoo.mobilenet_v2(width_mult=0.5, resolution=64)
    assert half.num_parameters() < full
    # torchvision mobilenet_v2(width_mult=0.5): 1,968,680 parameters
    assert learnable(half) == 1_968_680
    assert learnable(zoo.mobilenet_v2(width_mult=1.0, resolution=64)) == full
    assert zoo.mobilenet_v2(width_mult=1.4, resolution=64).num_parameters() > full
    assert learnable(zoo.mobilenet_v1(width_mult=0.5, resolution=64)) < 4_231_976
    assert (learnable(zoo.mobilenet_v3_small(width_mult=0.75, resolution=64))
            < PUBLISHED_PARAMS["mobilenet_v3_small"])
    assert (learnable(zoo.mobilenet_v3_large(width_mult=0.75, resolution=64))
            < PUBLISHED_PARAMS["mobilenet_v3_large"])
    m = zoo.mobilenet_v1(width_mult=0.25, resolution=64)
    assert min(w.shape[0] for k, w in m.initializers.items() if k.endswith(".weight")
               and w.ndim == 4) == 8
    assert half.metadata["width_mult"] == "0.5"


def test_num_classes_and_resolution():
    m = zoo.resnet18(num_classes=10, resolution=160)
    assert m.inputs[0].shape == ("N", 3, 160, 160)
    assert m.outputs[0].shape == ("N", 10)
    assert learnable(m) == 11_689_512 - 1000 * 513 + 10 * 513
    x = np.random.default_rng(0).standard_normal((2, 3, 160, 160)).astype(np.float32)
    assert ort_run(m, x).shape == (2, 10)


@pytest.mark.parametrize("fn,res,fc", [(zoo.alexnet, 415, 4097), (zoo.vgg16, 448, 4097)])
def test_adaptive_pool_at_other_resolutions(fn, res, fc):
    m = fn(num_classes=10, resolution=res)
    avg = [n for n in m.nodes if n.op == "AveragePool"]
    assert len(avg) == 1 and avg[0].attrs["kernel_shape"] == [2, 2]
    # the classifier keeps its input size; only the last layer shrinks
    assert learnable(m) == PUBLISHED_PARAMS[m.name] - 1000 * fc + 10 * fc


def test_alexnet_bad_resolution_raises_clearly():
    with pytest.raises(ShapeError, match="6x6"):
        zoo.alexnet(resolution=256)


@pytest.mark.parametrize("kwargs", [
    {"num_classes": 0}, {"num_classes": 2.5}, {"num_classes": True}, {"resolution": 8},
    {"resolution": "224"},
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValidationError):
        zoo.squeezenet1_1(**kwargs)


@pytest.mark.parametrize("w", [0, -1.0, float("nan"), "wide"])
def test_bad_width(w):
    with pytest.raises(ValidationError):
        zoo.mobilenet_v2(width_mult=w)


def test_determinism():
    a = zoo.mobilenet_v3_small(random_state=7, resolution=96)
    b = zoo.mobilenet_v3_small(random_state=7, resolution=96)
    c = zoo.mobilenet_v3_small(random_state=8, resolution=96)
    assert a == b
    assert a.initializers.keys() == c.initializers.keys()
    assert a != c
    differing = [k for k in a.initializers
                 if not np.array_equal(a.initializers[k], c.initializers[k])]
    assert any(k.endswith("running_var") for k in differing)
    assert any(k.endswith(".weight") for k in differing)
    # a Generator works too and is consumed
    g = np.random.default_rng(7)
    assert zoo.squeezenet1_1(random_state=g) != zoo.squeezenet1_1(random_state=g)


def _check_alexnet(m):
    assert "AveragePool" not in m.op_types()  # the feature map is already 6x6 at 224
    assert m.node("features.0").attrs["strides"] == [4, 4]


def _check_resnet18(m):
    w = m.initializers["layer1.0.conv1.weight"]
    assert w.std() == pytest.approx(np.sqrt(2.0 / (64 * 9)), rel=0.05)  # He-normal
    assert np.all(m.initializers["bn1.weight"] == 1.0)
    assert np.abs(m.initializers["bn1.bias"]).max() < 0.2
    assert np.all(m.initializers["layer1.0.bn2.weight"] < 1.0)  # residual branch end
    assert m.op_types()["Add"] == 8


def _check_resnet50(m):
    # v1.5: the stride is on the 3x3 convolution of the first block of a stage
    assert m.node("layer2.0.conv2").attrs["strides"] == [2, 2]
    assert m.node("layer2.0.conv1").attrs["strides"] == [1, 1]
    assert m.op_types()["Add"] == 16


def _check_mobilenet_v2(m):
    clip = [n for n in m.nodes if n.op == "Clip"]
    assert len(clip) == 35
    assert all(len(n.inputs) == 3 and float(m.initializers[n.inputs[1]]) == 0.0
               and float(m.initializers[n.inputs[2]]) == 6.0 for n in clip)
    assert m.op_types()["Add"] == 10


def _check_mobilenet_v3(m):
    hs = [n for n in m.nodes if n.op == "HardSigmoid"]
    assert hs and all(n.attrs["alpha"] == pytest.approx(1 / 6) and n.attrs["beta"] == 0.5
                      for n in hs)
    assert {n.attrs["epsilon"] for n in m.nodes if n.op == "BatchNormalization"} == {0.001}
    assert m.op_types()["Mul"] == len(hs)  # one SE scale each


def _check_squeezenet(m):
    assert all(n.attrs["ceil_mode"] == 1 for n in m.nodes if n.op == "MaxPool")
    assert m.op_types()["Concat"] == 8


def _check_shufflenet(m):
    splits = [n for n in m.nodes if n.op == "Split"]
    assert len(splits) == 13
    assert all(m.initializers[n.inputs[1]].tolist() == [m.initializers[n.inputs[1]][0]] * 2
               and m.initializers[n.inputs[1]].dtype == np.int64 for n in splits)
    assert m.op_types()["Transpose"] == 16


def _check_efficientnet(m):
    # every SiLU and every SE scale is a Sigmoid followed by a Mul
    assert m.op_types()["Sigmoid"] == m.op_types()["Mul"] == 49 + 16
    assert m.op_types()["Add"] == 9


def test_specific_structure(arch):
    name, m = arch
    {"alexnet": _check_alexnet, "resnet18": _check_resnet18, "resnet50": _check_resnet50,
     "mobilenet_v2": _check_mobilenet_v2, "mobilenet_v3_small": _check_mobilenet_v3,
     "mobilenet_v3_large": _check_mobilenet_v3, "squeezenet1_0": _check_squeezenet,
     "squeezenet1_1": _check_squeezenet, "shufflenet_v2_x1_0": _check_shufflenet,
     "efficientnet_b0": _check_efficientnet}.get(name, lambda m: None)(m)


# ----------------------------------------------------------------------------- builder
def test_builder_doctests():
    res = doctest.testmod(_builder, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 0


def test_zoo_doctests():
    res = doctest.testmod(zoo, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 0


def test_builder_unique_names_and_errors():
    b = _builder.GraphBuilder("t", random_state=0)
    x = b.input("input", ("N", 4, 8, 8))
    y1 = b.conv(x, 4, 3, name="c")
    y2 = b.conv(y1, 4, 3, name="c")
    assert (y1, y2) == ("c", "c_1")
    with b.scope("blk"):
        z = b.relu(y2)
    assert z == "blk.relu"
    parts = b.split(z, [1, 3])
    assert [b.channels(p) for p in parts] == [1, 3]
    with pytest.raises(ValidationError):
        b.conv(x, 6, 3, groups=4)
    with pytest.raises(ShapeError):
        b.add(parts[0], parts[1])
    with pytest.raises(ShapeError):
        b.gemm(x, 3)
    with pytest.raises(ShapeError):
        b.conv(x, 4, 11, pad=0)
    with pytest.raises(ValidationError):
        b.relu("nope")
    m = b.build({"out": b.concat(parts)})
    assert m.output_names == ["out"]
    assert m.node("split").outputs == ["split.out0", "split.out1"]


def test_builder_probe_matches_onnxruntime():
    """The builder's NumPy probe kernels agree with onnxruntime (pools with ceil
    mode and padding, grouped and strided convolutions, shuffle)."""
    b = _builder.GraphBuilder("probe", random_state=1, probe_batch=2)
    x = b.input("input", ("N", 3, 17, 17))
    y = b.conv(x, 8, 3, 2, pad=(1, 0, 0, 1), bias=True)
    y = b.bn(y)
    y = b.maxpool(y, 3, 2, pad=1, ceil_mode=True)
    y = b.conv(y, 8, 3, 1, groups=4, dilation=2, bias=False)
    y = b.relu6(b.bn(y))
    y = b.conv(y, 8, 3, groups=8)
    y = b.avgpool(y, 2, 2, ceil_mode=True, pad=1, count_include_pad=True)
    y = b.hardswish(b.bn(y))
    a, c = b.split(y, [4, 4])
    y = b.channel_shuffle(b.concat([b.silu(a), b.hardsigmoid(c)]), 2)
    y = b.mul(y, b.sigmoid(b.global_avgpool(y)))
    y = b.linear(b.dropout(b.flatten(y), 0.2), 5)
    m = b.build({"logits": y})
    probe = b._value("input")
    ours = b._value(y)
    ref = ort_run(m, probe)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- reference models
def test_reference_names_and_unknown_name():
    names = zoo.reference_names()
    assert names == sorted(names)
    with pytest.raises(ValidationError, match="valid names"):
        zoo.reference("imagenet-resnet")
    with pytest.raises(ValidationError):
        zoo.model_card("imagenet-resnet")
    with pytest.raises(ValidationError):
        zoo.reference(3)


def test_reference_models_load():
    names = zoo.reference_names()
    assert len(names) == 4, names  # the package ships four reference models
    for name in names:
        m = zoo.reference(name)
        assert isinstance(m, Model)
        assert m.output_names == ["logits"]
        card = zoo.model_card(name)
        assert card["name"] == name
        assert learnable(m) == card["params"]


def test_reference_lookup_with_fake_directory(tmp_path, monkeypatch):
    (tmp_path / "b-model.onnx").write_bytes(b"x")
    (tmp_path / "a-model.onnx").write_bytes(b"y")
    (tmp_path / "notes.txt").write_text("z")
    monkeypatch.setattr(zoo, "_reference_dir", lambda: tmp_path)
    assert zoo.reference_names() == ["a-model", "b-model"]
    with pytest.raises(lpcv.exceptions.DataNotFoundError):
        zoo.model_card("a-model")
    card = {"models": {"a-model": {"name": "a-model", "params": 5}}, "generator": {}}
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    assert zoo.model_card("a-model") == {"name": "a-model", "params": 5}
    assert zoo.model_card("a-model") is not zoo.model_card("a-model")
    with pytest.raises(lpcv.exceptions.DataNotFoundError):
        zoo.model_card("b-model")
    with pytest.raises(ValidationError, match="a-model, b-model"):
        zoo.reference("c-model")
    (tmp_path / "model_card.json").write_text(json.dumps([{"name": "b-model", "x": 1}]))
    assert zoo.model_card("b-model") == {"name": "b-model", "x": 1}
    monkeypatch.setattr(zoo, "_reference_dir", lambda: tmp_path / "missing")
    assert zoo.reference_names() == []


# ----------------------------------------------------------------------------- PyTorch oracle
def _torch_models():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class CNA(nn.Sequential):  # torchvision Conv2dNormActivation
        def __init__(self, cin, cout, k, stride=1, groups=1, act=nn.ReLU, eps=1e-5):
            layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                      nn.BatchNorm2d(cout, eps=eps)]
            if act is not None:
                layers.append(act())
            super().__init__(*layers)

    class SE(nn.Module):
        def __init__(self, c, sq, act, scale_act):
            super().__init__()
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc1, self.fc2 = nn.Conv2d(c, sq, 1), nn.Conv2d(sq, c, 1)
            self.activation, self.scale_activation = act(), scale_act()

        def forward(self, x):
            s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
            return s * x

    class Bottleneck(nn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            out = planes * 4
            self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3, self.bn3 = nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out)
            self.relu = nn.ReLU()
            self.downsample = None
            if stride != 1 or cin != out:
                self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False),
                                                nn.BatchNorm2d(out))

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return self.relu(y + (x if self.downsample is None else self.downsample(x)))

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = 64
            for i, (planes, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
                blocks = []
                for j in range(n):
                    blocks.append(Bottleneck(cin, planes, 2 if (j == 0 and i > 0) else 1))
                    cin = planes * 4
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(2048, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            for i in range(1, 5):
                x = getattr(self, f"layer{i}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class V3Block(nn.Module):
        def __init__(self, cin, k, exp, out, use_se, act, stride):
            super().__init__()
            act = nn.Hardswish if act == "hardswish" else nn.ReLU
            layers = []
            if exp != cin:
                layers.append(CNA(cin, exp, 1, act=act, eps=1e-3))
            layers.append(CNA(exp, exp, k, stride, groups=exp, act=act, eps=1e-3))
            if use_se:
                sq = zoo._make_divisible(exp // 4, 8)
                layers.append(SE(exp, sq, nn.ReLU, nn.Hardsigmoid))
            layers.append(CNA(exp, out, 1, act=None, eps=1e-3))
            self.block = nn.Sequential(*layers)
            self.res = stride == 1 and cin == out

        def forward(self, x):
            y = self.block(x)
            return y + x if self.res else y

    class MobileNetV3Small(nn.Module):
        def __init__(self):
            super().__init__()
            layers, cin = [CNA(3, 16, 3, 2, act=nn.Hardswish, eps=1e-3)], 16
            for k, exp, out, se, act, s in zoo._V3_SMALL:
                layers.append(V3Block(cin, k, exp, out, se, act, s))
                cin = out
            layers.append(CNA(cin, 6 * cin, 1, act=nn.Hardswish, eps=1e-3))
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(),
                                            nn.Dropout(0.2), nn.Linear(1024, 1000))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def dw(c, stride):
        return nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False)

    class ShuffleUnit(nn.Module):
        def __init__(self, cin, out, stride):
            super().__init__()
            bf, self.stride = out // 2, stride
            if stride > 1:
                self.branch1 = nn.Sequential(dw(cin, stride), nn.BatchNorm2d(cin),
                                             nn.Conv2d(cin, bf, 1, bias=False),
                                             nn.BatchNorm2d(bf), nn.ReLU())
            self.branch2 = nn.Sequential(
                nn.Conv2d(cin if stride > 1 else bf, bf, 1, bias=False), nn.BatchNorm2d(bf),
                nn.ReLU(), dw(bf, stride), nn.BatchNorm2d(bf), nn.Conv2d(bf, bf, 1, bias=False),
                nn.BatchNorm2d(bf), nn.ReLU())

        def forward(self, x):
            if self.stride == 1:
                x1, x2 = x.chunk(2, dim=1)
                out = torch.cat((x1, self.branch2(x2)), dim=1)
            else:
                out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
            n, c, h, w = out.shape
            return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)

    class ShuffleNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False),
                                       nn.BatchNorm2d(24), nn.ReLU())
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = 24
            for i, (reps, out) in enumerate(zip((4, 8, 4), (116, 232, 464)), start=2):
                units = [ShuffleUnit(cin, out, 2)] + [ShuffleUnit(out, out, 1)
                                                      for _ in range(reps - 1)]
                setattr(self, f"stage{i}", nn.Sequential(*units))
                cin = out
            self.conv5 = nn.Sequential(nn.Conv2d(464, 1024, 1, bias=False),
                                       nn.BatchNorm2d(1024), nn.ReLU())
            self.fc = nn.Linear(1024, 1000)

        def forward(self, x):
            x = self.maxpool(self.conv1(x))
            x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
            return self.fc(x.mean([2, 3]))

    class MBConv(nn.Module):
        def __init__(self, t, k, stride, cin, cout):
            super().__init__()
            exp = zoo._make_divisible(cin * t, 8)
            layers = []
            if exp != cin:
                layers.append(CNA(cin, exp, 1, act=nn.SiLU))
            layers.append(CNA(exp, exp, k, stride, groups=exp, act=nn.SiLU))
            layers.append(SE(exp, max(1, cin // 4), nn.SiLU, nn.Sigmoid))
            layers.append(CNA(exp, cout, 1, act=None))
            self.block = nn.Sequential(*layers)
            self.res = stride == 1 and cin == cout

        def forward(self, x):
            y = self.block(x)
            return y + x if self.res else y

    class EfficientNetB0(nn.Module):
        def __init__(self):
            super().__init__()
            setting = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
                       (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
                       (6, 3, 1, 192, 320, 1)]
            layers = [CNA(3, 32, 3, 2, act=nn.SiLU)]
            for t, k, s, cin, cout, n in setting:
                layers.append(nn.Sequential(*[MBConv(t, k, s if j == 0 else 1,
                                                     cin if j == 0 else cout, cout)
                                              for j in range(n)]))
            layers.append(CNA(320, 1280, 1, act=nn.SiLU))
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return torch, {"resnet50": ResNet50, "mobilenet_v3_small": MobileNetV3Small,
                   "shufflenet_v2_x1_0": ShuffleNetV2, "efficientnet_b0": EfficientNetB0}


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3_small", "shufflenet_v2_x1_0",
                                  "efficientnet_b0"])
def test_matches_pytorch_reimplementation(name):
    """PyTorch versions of torchvision's modules have the published count, accept
    the zoo's initializers by name (same keys and shapes as a torchvision
    state_dict) and then compute the same logits as onnxruntime."""
    torch, defs = _torch_models()
    net = defs[name]().eval()
    assert sum(p.numel() for p in net.parameters()) == PUBLISHED_PARAMS[name]
    m = getattr(zoo, name)(resolution=128)
    state = {k: torch.from_numpy(v.copy()) for k, v in m.initializers.items()
             if v.dtype == np.float32 and not k.startswith("const.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert unexpected == []
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    x = np.random.default_rng(2).standard_normal((2, 3, 128, 128)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    got = ort_run(m, x)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * float(np.abs(ref).max()))
