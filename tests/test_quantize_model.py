"""Model-level post-training quantization: quantize_model, choose_bits.

Oracles: onnxruntime runs the exported QDQ file (literal Q/DQ, optimizations
off), NumPy re-derives the quantized weights, and accuracy is measured on the
embedded Fashion-MNIST sample (first 2000 test images) with the shipped
reference models.
"""
import os

import numpy as np
import onnxruntime as ort
import pytest

import lpcv
from lpcv.exceptions import UnsupportedError, ValidationError
from lpcv.graph import Model, Node, ValueInfo
from lpcv.quantize import choose_bits, quantizable_layers, quantize_model

X, Y = lpcv.data.load_sample()
CALIB = X[:256]


def ort_outputs(model, x, tmp_path, optimize=False):
    path = os.path.join(tmp_path, f"m{np.random.randint(1 << 30)}.onnx")
    lpcv.save(model, path)
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def accuracy(model, tmp_path, optimize=False):
    return float((ort_outputs(model, X, tmp_path, optimize).argmax(1) == Y).mean() * 100)


@pytest.fixture(scope="module")
def float_acc(tmp_path_factory):
    d = tmp_path_factory.mktemp("float")
    return {n: accuracy(lpcv.zoo.reference(n), d) for n in lpcv.zoo.reference_names()}


@pytest.mark.parametrize("name", ["fmnist-lenet300", "fmnist-lenet5", "fmnist-resnet",
                                  "fmnist-mobilenet"])
def test_w8a8_per_channel_keeps_accuracy(name, float_acc, tmp_path):
    qm, rep = quantize_model(lpcv.zoo.reference(name), CALIB, "w8a8", progress=False)
    acc = accuracy(qm, tmp_path)
    # Issue goal on the full test set: <= 0.3 pp; the 2000-image sample is noisier.
    assert acc >= float_acc[name] - 0.5, (name, acc, float_acc[name])
    assert 3.5 < rep.compression <= 4.0


def test_qdq_structure_and_weights_match_numpy(tmp_path):
    m = lpcv.zoo.reference("fmnist-resnet")
    qm, rep = quantize_model(m, CALIB, weights=4, weight_range="minmax", progress=False)
    fm = lpcv.transforms.fold_batchnorm(m)
    dq = {n.outputs[0]: n for n in qm.nodes if n.op == "DequantizeLinear"}
    convs = [n for n in qm.nodes if n.op in ("Conv", "Gemm")]
    assert len(convs) == len(quantizable_layers(m)) == 14
    for n in convs:
        d = dq[n.inputs[1]]
        q = qm.initializers[d.inputs[0]]
        s = qm.initializers[d.inputs[1]]
        assert q.dtype == np.int8 and q.min() >= -8 and q.max() <= 7
        w = fm.initializers[fm.node(n.name).inputs[1]]
        axis = d.attrs.get("axis", 1)
        shape = [1] * w.ndim
        shape[axis] = -1
        absmax = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis))
        np.testing.assert_allclose(s, absmax / 7, rtol=1e-6)
        ref = np.clip(np.rint(w / s.reshape(shape)), -8, 7)
        assert np.mean(ref == q) > 0.999  # float division ties may differ
    # A Conv feeding a residual Add has no quantizer of its own: the Add has.
    readers = {}
    for n in qm.nodes:
        for t in n.inputs:
            readers.setdefault(t, []).append(n.op)
    adds = [n for n in qm.nodes if n.op == "Add"]
    assert adds
    for a in adds:
        producers = [p for p in qm.nodes if set(p.outputs) & set(a.inputs)]
        assert any(p.op == "Conv" for p in producers)
    relu_after_add = [n for n in qm.nodes if n.op == "Relu" and any(
        p.op == "Add" and p.outputs[0] == n.inputs[0] for p in qm.nodes)]
    assert relu_after_add and all("QuantizeLinear" in readers[r.outputs[0]] for r in relu_after_add)
    assert rep.to_pandas().shape[0] == 14
    assert "bits" in rep.to_markdown() and "<table" in rep._repr_html_()


def _x86_without_vnni() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx2" in flags and "vnni" not in flags


def test_exported_file_matches_literal_simulation(tmp_path):
    """The QDQ graph is what onnxruntime executes; its optimized int8 path agrees."""
    qm, _ = quantize_model(lpcv.zoo.reference("fmnist-lenet5"), CALIB, "w8a8", progress=False)
    path = os.path.join(tmp_path, "q.onnx")
    lpcv.save(qm, path)
    back = lpcv.load(path)
    assert back.initializers[next(k for k in back.initializers if k.endswith("_quantized"))].dtype == np.int8
    if _x86_without_vnni():
        # onnxruntime's fused u8 x s8 kernels add product pairs in saturating
        # 16-bit lanes on such CPUs (seen: 96.8 % agreement on an AVX2
        # EPYC); lpcv's own int8 session stays exact there
        # (test_int8_session_agrees_with_simulation).
        pytest.skip("onnxruntime's int8 kernels saturate on x86 CPUs without VNNI")
    literal = ort_outputs(qm, X[:500], tmp_path)
    fused = ort_outputs(qm, X[:500], tmp_path, optimize=True)
    assert np.mean(literal.argmax(1) == fused.argmax(1)) >= 0.99


def test_mse_weight_range_beats_minmax_at_4_bits():
    m = lpcv.zoo.reference("fmnist-mobilenet")
    _, mse = quantize_model(m, CALIB, "w4", progress=False)
    _, mm = quantize_model(m, CALIB, "w4", weight_range="minmax", progress=False)
    sq_mse = mse.to_pandas().sqnr_db.to_numpy()
    sq_mm = mm.to_pandas().sqnr_db.to_numpy()
    assert np.all(sq_mse >= sq_mm - 1e-6) and sq_mse.mean() > sq_mm.mean() + 0.5


def test_weight_only_keeps_float_activations():
    qm, rep = quantize_model(lpcv.zoo.reference("fmnist-lenet300"), CALIB, "w8", progress=False)
    assert not [n for n in qm.nodes if n.op == "QuantizeLinear"]
    assert rep.activations.rows == []


def test_layer_bits_and_skip():
    m = lpcv.zoo.reference("fmnist-lenet300")
    fc1, fc2, fc3 = quantizable_layers(m)
    qm, rep = quantize_model(m, CALIB, "w8a8", layer_bits={fc1: 4}, skip=[fc3], progress=False)
    df = rep.to_pandas().set_index("layer")
    assert df.loc[fc1, "bits"] == 4 and df.loc[fc2, "bits"] == 8 and fc3 not in df.index
    fc3 = qm.node(fc3)
    assert fc3.inputs[1] in qm.initializers  # float weight kept
    import json
    bits = json.loads(qm.metadata["lpcv.weight_bits"])
    assert sorted(bits.values()) == [4, 8]


def test_concat_inputs_share_the_output_range():
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    w2 = 3 * rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    w3 = rng.standard_normal((2, 8, 1, 1)).astype(np.float32)
    nodes = [Node("Conv", "c1", ["x", "w1"], ["a"], {"pads": [1, 1, 1, 1]}),
             Node("Relu", "r1", ["a"], ["ar"]),
             Node("Conv", "c2", ["x", "w2"], ["b"], {"pads": [1, 1, 1, 1]}),
             Node("Relu", "r2", ["b"], ["br"]),
             Node("Concat", "cat", ["ar", "br"], ["c"], {"axis": 1}),
             Node("Conv", "c3", ["c", "w3"], ["y"])]
    m = Model(nodes, [ValueInfo("x", ("N", 1, 8, 8))], [ValueInfo("y", ("N", 2, 8, 8))],
              {"w1": w1, "w2": w2, "w3": w3}, opset=13)
    x = rng.random((16, 1, 8, 8)).astype(np.float32)
    qm, rep = quantize_model(m, x, "w8a8", progress=False)
    acts = {r["tensor"]: r for r in rep.activations.rows}
    assert acts["ar"]["scale"] == acts["br"]["scale"] == acts["c"]["scale"]
    assert acts["c"]["range_hi"] >= max(acts["ar"]["max"], acts["br"]["max"]) - 1e-6


def test_choose_bits_meets_size_budget_and_prefers_insensitive_layers():
    m = lpcv.zoo.reference("fmnist-lenet5")
    res = choose_bits(m, CALIB[:128], fraction=0.7, progress=False)
    assert res.cost <= res.budget <= res.max_cost
    df = res.to_pandas().set_index("layer")
    low = df[df.bits == 4]
    high = df[df.bits == 8]
    assert len(low) and len(high)
    # Within equal cost, a layer lowered to 4 bits is not more sensitive per byte
    # saved than one kept at 8 (greedy order).
    ratio = (df.sensitivity_w4 - df.sensitivity_w8) / (df.size_w8 - df.size_w4)
    assert ratio[low.index].max() <= ratio[high.index].min() + 1e-12
    qm, rep = quantize_model(m, CALIB, "w8a8", layer_bits=res.layer_bits, progress=False)
    assert rep.quantized_weight_bytes <= res.budget


def test_choose_bits_latency_uses_the_cost_model():
    m = lpcv.zoo.reference("fmnist-lenet300")
    full = choose_bits(m, CALIB[:64], fraction=1.0, metric="latency", device="rpi4", progress=False)
    assert full.unit == "ms" and set(full.layer_bits.values()) == {8}
    assert full.min_cost < full.max_cost  # int4 weights move fewer bytes
    res = choose_bits(m, CALIB[:64], budget=(full.min_cost + full.max_cost) / 2, metric="latency",
                      device="rpi4", progress=False)
    assert res.cost <= res.budget and 4 in res.layer_bits.values()
    with pytest.raises(ValidationError, match="candidates"):
        choose_bits(m, CALIB[:64], fraction=0.9, metric="latency", candidates=(8, 6))
    with pytest.raises(ValidationError, match="below the cheapest"):
        choose_bits(m, CALIB[:64], budget=1.0, progress=False)
    with pytest.raises(ValidationError, match="exactly one"):
        choose_bits(m, CALIB[:64])


def test_inputs_not_mutated():
    m = lpcv.zoo.reference("fmnist-lenet5")
    before = {k: v.copy() for k, v in m.initializers.items()}
    calib = CALIB.copy()
    quantize_model(m, calib, "w4a8", bias_correction=False, progress=False)
    assert all(np.array_equal(before[k], m.initializers[k]) for k in before)
    assert np.array_equal(calib, CALIB)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(config="w9a8"), ValidationError, "weights"),
    (dict(config="w1a8"), ValidationError, "weights|bits"),
    (dict(config="foo"), ValidationError, "config"),
    (dict(config="w8a4"), ValidationError, "activations"),
    (dict(config="w8a8", weights=4), ValidationError, "contradicts"),
    (dict(method="bogus"), ValidationError, "method"),
    (dict(granularity="per_group"), ValidationError, "granularity"),
    (dict(bias_correction="sometimes"), ValidationError, "bias_correction"),
    (dict(skip=["nope"]), ValidationError, "unknown layer"),
    (dict(layer_bits={"/net/net.1/Gemm": 12}), ValidationError, "layer_bits"),
    (dict(batch_size=0), ValidationError, "batch_size"),
])
def test_bad_settings(kwargs, err, match):
    with pytest.raises(err, match=match):
        quantize_model(lpcv.zoo.reference("fmnist-lenet300"), CALIB[:32], progress=False, **kwargs)


def test_bad_calibration_data():
    m = lpcv.zoo.reference("fmnist-lenet300")
    with pytest.raises(ValidationError, match="re-iterable"):
        quantize_model(m, (b for b in [CALIB]), progress=False)
    with pytest.raises(ValidationError, match="empty"):
        quantize_model(m, CALIB[:0], progress=False)
    with pytest.raises(ValidationError, match="empty"):
        quantize_model(m, [], progress=False)
    bad = CALIB[:8].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValidationError, match="NaN"):
        quantize_model(m, bad, progress=False)
    with pytest.raises(TypeError, match="floating"):
        quantize_model(m, (CALIB[:8] * 255).astype(np.uint8), progress=False)
    with pytest.raises(ValidationError, match="rank"):
        quantize_model(m, CALIB[:8, 0], progress=False)
    with pytest.raises(ValidationError, match="required"):
        quantize_model(m, None, progress=False)
    with pytest.raises(TypeError, match="lpcv.Model"):
        quantize_model("model.onnx", CALIB, progress=False)


def test_old_opset_is_refused():
    m = lpcv.zoo.reference("fmnist-lenet300").with_changes(opset=11)
    with pytest.raises(UnsupportedError, match="opset"):
        quantize_model(m, CALIB[:8], progress=False)


def test_constant_calibration_data_is_handled():
    """All-zero inputs: a degenerate but valid range; the model still runs."""
    m = lpcv.zoo.reference("fmnist-lenet300")
    qm, rep = quantize_model(m, np.zeros((8, 1, 28, 28), np.float32), "w8a8", progress=False)
    row = next(r for r in rep.activations.rows if r["tensor"] == "input")
    assert row["scale"] > 0 and row["zero_point"] == 0


def test_cle_and_analytic_bias_correction_recover_per_tensor_loss(float_acc, tmp_path):
    """MobileNetV2-style model, per-tensor 4-bit min-max weights (8-bit shows no
    measurable loss on this model): CLE + analytic bias correction recover most
    of the loss (sample figures: 87.30 -> 91.55 %, float 93.05 %)."""
    m = lpcv.zoo.reference("fmnist-mobilenet")
    base = dict(config="w4a8_per_tensor", weight_range="minmax", progress=False)
    plain, _ = quantize_model(m, CALIB, **base)
    fixed, rep = quantize_model(m, CALIB, equalize=True, bias_correction="analytic", **base)
    loss_plain = float_acc["fmnist-mobilenet"] - accuracy(plain, tmp_path)
    loss_fixed = float_acc["fmnist-mobilenet"] - accuracy(fixed, tmp_path)
    assert loss_plain > 3.0
    assert loss_fixed < 0.5 * loss_plain, (loss_plain, loss_fixed)
    assert rep.equalization is not None and len(rep.equalization.rows) > 0
    assert rep.to_pandas().bias_corrected.sum() > 10  # layers fed by Conv-BN-ReLU6


def test_expected_activation_matches_monte_carlo():
    from lpcv.quantize.model import _expected_activation
    rng = np.random.default_rng(0)
    beta = np.array([-1.0, 0.0, 0.5, 3.0, 7.0])
    std = np.array([0.5, 1.0, 2.0, 1.5, 2.0])
    z = beta + std * rng.standard_normal((400_000, 5))
    np.testing.assert_allclose(_expected_activation(beta, std, "relu"), np.maximum(z, 0).mean(0),
                               atol=0.01)
    np.testing.assert_allclose(_expected_activation(beta, std, "relu6"), np.clip(z, 0, 6).mean(0),
                               atol=0.01)
    np.testing.assert_allclose(_expected_activation(beta, std, None), beta)


def session_accuracy(model, quantized="simulate"):
    kw = {"quantized": quantized} if any(n.op == "QuantizeLinear" for n in model.nodes) else {}
    sess = lpcv.Session(model, batch_size=500, **kw)
    name = sess.input_names[0]
    out = np.concatenate([sess.run({name: X[i:i + 500]})[sess.output_names[0]]
                          for i in range(0, len(X), 500)])
    return float((out.argmax(1) == Y).mean() * 100)


@pytest.mark.parametrize("name", ["fmnist-lenet5", "fmnist-resnet"])
def test_gptq_w4a8_loses_at_most_half_of_nearest(name, float_acc):
    m = lpcv.zoo.reference(name)
    near, _ = quantize_model(m, CALIB, "w4a8", progress=False)
    gq, rep = quantize_model(m, CALIB, "w4a8", method="gptq", progress=False)
    loss_near = float_acc[name] - session_accuracy(near)
    loss_gptq = float_acc[name] - session_accuracy(gq)
    assert loss_gptq <= 1.5 and loss_gptq <= 0.5 * max(loss_near, 0.5), (loss_near, loss_gptq)
    assert set(rep.to_pandas().method) == {"gptq"}


def test_empirical_bias_correction_removes_the_mean_output_shift():
    m = lpcv.zoo.reference("fmnist-lenet5")
    ref = lpcv.Session(m, batch_size=256).run({"input": CALIB})
    ref = next(iter(ref.values()))

    def mean_shift(qm):
        out = lpcv.Session(qm, batch_size=256, quantized="simulate").run({"input": CALIB})
        return float(np.abs((next(iter(out.values())) - ref).mean(axis=0)).mean())

    plain, _ = quantize_model(m, CALIB, "w3", progress=False)
    fixed, rep = quantize_model(m, CALIB, "w3", bias_correction=True, progress=False)
    assert rep.to_pandas().bias_corrected.all()
    assert mean_shift(fixed) < 0.5 * mean_shift(plain)


def test_session_simulation_matches_onnxruntime_literal_qdq(tmp_path):
    qm, _ = quantize_model(lpcv.zoo.reference("fmnist-resnet"), CALIB, "w4a8", progress=False)
    sim = lpcv.Session(qm, batch_size=200, quantized="simulate").run({"input": X[:200]})
    sim = next(iter(sim.values()))
    lit = ort_outputs(qm, X[:200], tmp_path)
    # Float accumulation order differs between the engines, so a value on a
    # rounding boundary may land one step apart and carry that to the logits.
    close = np.abs(sim - lit) <= 1e-3 * np.abs(lit).max()
    assert close.mean() >= 0.99
    assert np.mean(sim.argmax(1) == lit.argmax(1)) >= 0.995


def test_adaround_w4a8_loses_at_most_half_of_nearest(float_acc):
    m = lpcv.zoo.reference("fmnist-lenet5")
    near, _ = quantize_model(m, CALIB, "w4a8", progress=False)
    ada, rep = quantize_model(m, CALIB, "w4a8", method="adaround", adaround_iters=500,
                              progress=False)
    loss_near = float_acc["fmnist-lenet5"] - session_accuracy(near)
    loss_ada = float_acc["fmnist-lenet5"] - session_accuracy(ada)
    assert loss_near > 1.0
    assert loss_ada <= 1.5 and loss_ada <= 0.5 * loss_near, (loss_near, loss_ada)
    # Every AdaRound weight is the floor or the ceiling of w/s (never further).
    fm = lpcv.transforms.fold_batchnorm(m)
    for n in ada.nodes:
        if n.op == "DequantizeLinear" and n.inputs[0] in ada.initializers \
                and ada.initializers[n.inputs[0]].dtype == np.int8:
            q = ada.initializers[n.inputs[0]].astype(np.float64)
            s = ada.initializers[n.inputs[1]].astype(np.float64)
            layer = next(k for k in ada.nodes if n.outputs[0] in k.inputs)
            w = fm.initializers[fm.node(layer.name).inputs[1]].astype(np.float64)
            axis = n.attrs.get("axis", 1)
            shape = [1] * w.ndim
            shape[axis] = -1
            r = w / s.reshape(shape)
            assert np.all((q >= np.floor(r) - 1e-9) & (q <= np.ceil(r) + 1e-9) | (q == -8) | (q == 7))


@pytest.mark.parametrize("name", ["fmnist-lenet300", "fmnist-lenet5", "fmnist-resnet",
                                  "fmnist-mobilenet"])
def test_int8_session_agrees_with_simulation(name):
    """Real int8 kernels vs the float simulation of the same QDQ graph: >= 99.9 %
    of the logits within one quantization step of the logits quantizer."""
    qm, rep = quantize_model(lpcv.zoo.reference(name), CALIB, "w8a8", progress=False)
    step = next(r["scale"] for r in rep.activations.rows if r["tensor"] == "logits")
    outs = {}
    for mode in ("simulate", "int8"):
        sess = lpcv.Session(qm, batch_size=500, quantized=mode)
        outs[mode] = np.concatenate([sess.run({"input": X[i:i + 500]})["logits"]
                                     for i in range(0, 1000, 500)])
    assert not sess.int8_fallbacks
    assert any("int8" in r["impl"] for r in sess.steps().rows)
    steps = np.abs(outs["simulate"] - outs["int8"]) / step
    assert np.mean(steps <= 1 + 1e-4) >= 0.999
    assert np.mean(outs["simulate"].argmax(1) == outs["int8"].argmax(1)) >= 0.995


def _with_weight(m, fill):
    k = quantizable_layers(m)[0]
    name = m.node(k).inputs[1]
    inits = dict(m.initializers)
    w = inits[name].copy()
    fill(w)
    inits[name] = w
    return m.with_changes(initializers=inits), k


def test_nan_weights_are_refused_and_zero_weights_are_exact():
    m = lpcv.zoo.reference("fmnist-lenet300")
    bad, k = _with_weight(m, lambda w: w.__setitem__((0, 0), np.nan))
    with pytest.raises(ValidationError, match="NaN"):
        quantize_model(bad, CALIB[:32], progress=False)
    zero, k = _with_weight(m, lambda w: w.fill(0))
    qm, rep = quantize_model(zero, CALIB[:32], "w4a8", progress=False)
    row = next(r for r in rep.layers.rows if r["layer"] == k)
    assert row["sqnr_db"] == float("inf")
    dq = next(n for n in qm.nodes if n.op == "DequantizeLinear" and n.outputs[0] == qm.node(k).inputs[1])
    assert not qm.initializers[dq.inputs[0]].any()


def test_calibration_streams_in_bounded_memory():
    """A data loader's batches are released as they are consumed."""
    import gc
    import weakref

    class Loader:
        def __init__(self):
            self.alive, self.peak = 0, 0

        def _gone(self):
            self.alive -= 1

        def __iter__(self):
            for i in range(0, 256, 16):
                b = np.array(CALIB[i:i + 16])
                self.alive += 1
                self.peak = max(self.peak, self.alive)
                weakref.finalize(b, self._gone)
                yield b
                del b
                gc.collect()

    loader = Loader()
    quantize_model(lpcv.zoo.reference("fmnist-lenet5"), loader, "w4a8", bias_correction=True,
                   progress=False)
    assert loader.peak <= 3, loader.peak


def test_docstring_examples_run():
    import doctest
    import importlib

    for name in ("lpcv.quantize.model", "lpcv.quantize.mixed", "lpcv._capture", "lpcv.graph",
                 "lpcv.cli"):
        mod = importlib.import_module(name)
        res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert res.failed == 0, name
