"""Cross-layer equalization (lpcv.quantize.equalize) against NumPy references.

Oracles: the runtime's outputs on the original (BN-folded) model, NumPy
re-computation of the scales and biases, per-channel ranges recomputed here
from the result's weights, and accuracy on the bundled Fashion-MNIST sample.
"""
from __future__ import annotations

import doctest

import numpy as np
import pytest

import lpcv
from lpcv.exceptions import LpcvError, ShapeError, ValidationError
from lpcv.graph import Model, Node, ValueInfo
from lpcv.quantize import equalize as eqmod
from lpcv.quantize import fake_quantize
from lpcv.quantize.equalize import cross_layer_equalization
from lpcv.transforms import fold_batchnorm

F32 = np.float32


# ------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def sample():
    return lpcv.data.load_sample()


@pytest.fixture(scope="module")
def mobilenet():
    return lpcv.zoo.reference("fmnist-mobilenet")


@pytest.fixture(scope="module")
def resnet():
    return lpcv.zoo.reference("fmnist-resnet")


def run(model, x, batch=500):
    sess = lpcv.Session(model, batch_size=min(batch, len(x)))
    name, out = model.input_names[0], model.output_names[0]
    return np.concatenate([sess.run({name: x[i:i + batch]})[out] for i in range(0, len(x), batch)])


def out_ranges(model, node):
    w = np.abs(model.initializers[node.inputs[1]].astype(np.float64))
    if node.op == "Conv":
        return w.reshape(w.shape[0], -1).max(axis=1)
    return w.max(axis=1) if node.attrs.get("transB", 0) else w.max(axis=0)


def in_ranges(model, node):
    """Per input channel max |w|, channel by channel (grouped conv: the
    output channels of the group that reads it)."""
    w = np.abs(model.initializers[node.inputs[1]].astype(np.float64))
    if node.op == "Gemm":
        return w.max(axis=0) if node.attrs.get("transB", 0) else w.max(axis=1)
    g = node.attrs.get("group", 1)
    cout, cin_g = w.shape[:2]
    r = np.zeros(cin_g * g)
    for c in range(cin_g * g):
        grp, j = divmod(c, cin_g)
        r[c] = w[grp * (cout // g):(grp + 1) * (cout // g), j].max()
    return r


def quantize_weights(model, bits):
    inits = dict(model.initializers)
    for n in model.nodes:
        if n.op in ("Conv", "Gemm"):
            inits[n.inputs[1]] = fake_quantize(inits[n.inputs[1]], bits=bits, axis=None)
    return model.with_changes(initializers=inits)


def relu6_to_relu(model, names):
    nodes = [Node("Relu", n.name, [n.inputs[0]], n.outputs) if n.name in names else n
             for n in model.nodes]
    return lpcv.transforms.prune_unused(model.with_changes(nodes=nodes))


def conv(name, x, w, b, y, group=1, pads=0):
    ins = [x, w] + ([b] if b else [])
    return Node("Conv", name, ins, [y], {"group": group, "pads": [pads] * 4})


def rng_conv_w(rng, cout, cin_g, k, spread=1.0):
    """Weights whose output channels have very different ranges."""
    w = rng.standard_normal((cout, cin_g, k, k))
    return (w * np.exp(spread * rng.standard_normal(cout))[:, None, None, None]).astype(F32)


def triple(rng, c_in=3, c_mid=8, c_out=5, dw_pad=1, group=None, biases=(0.1, 0.1, 0.1)):
    """Conv1x1 -> Relu -> grouped/depthwise Conv3x3 -> Relu -> Conv1x1."""
    group = c_mid if group is None else group
    inits = {
        "w1": rng_conv_w(rng, c_mid, c_in, 1, 1.5),
        "b1": (biases[0] * rng.standard_normal(c_mid) + biases[0]).astype(F32),
        "w2": rng_conv_w(rng, c_mid, c_mid // group, 3, 1.5),
        "b2": (biases[1] * rng.standard_normal(c_mid) + biases[1]).astype(F32),
        "w3": rng_conv_w(rng, c_out, c_mid, 1, 1.0),
        "b3": (0.1 * rng.standard_normal(c_out)).astype(F32),
    }
    nodes = [conv("pw1", "x", "w1", "b1", "z1"), Node("Relu", "r1", ["z1"], ["h1"]),
             conv("dw", "h1", "w2", "b2", "z2", group=group, pads=dw_pad),
             Node("Relu", "r2", ["z2"], ["h2"]),
             conv("pw2", "h2", "w3", "b3", "y")]
    h = 8
    hout = h if dw_pad else h - 2
    return Model(nodes, [ValueInfo("x", ("N", c_in, h, h))],
                 [ValueInfo("y", ("N", c_out, hout, hout))], inits)


# ------------------------------------------------------- function preserved
def test_resnet_function_preserved(resnet, sample):
    x = sample[0][:300]
    ref = run(fold_batchnorm(resnet), x)
    for kw in ({"absorb_bias": False}, {}, {"calib": x}):
        eq, rep = cross_layer_equalization(resnet, **kw)
        assert len(rep) == 5 and rep.converged
        out = run(eq, x)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_mobilenet_function_preserved_with_relu6_replaced(mobilenet, sample):
    x = sample[0][:300]
    # The ReLU6 nodes that sit between two convolutions (Conv -> BN -> Clip -> Conv
    # with single readers), found here independently of the pass.
    readers = {}
    for n in mobilenet.nodes:
        for t in n.inputs:
            readers.setdefault(t, []).append(n)
    producer = {o: n for n in mobilenet.nodes for o in n.outputs}
    expected = set()
    for n in mobilenet.nodes:
        if n.op != "Clip":
            continue
        bn = producer.get(n.inputs[0])
        conv_ = producer.get(bn.inputs[0]) if bn is not None else None
        nxt = readers.get(n.outputs[0], [])
        if (bn is not None and bn.op == "BatchNormalization" and conv_ is not None
                and conv_.op == "Conv" and len(readers[n.inputs[0]]) == 1
                and len(readers[bn.inputs[0]]) == 1 and len(nxt) == 1 and nxt[0].op == "Conv"):
            expected.add(n.name)
    assert len(expected) == 14
    eq, rep = cross_layer_equalization(mobilenet, absorb_bias=False)
    assert set(rep.replaced_relu6) == expected
    assert eq.op_types().get("Clip", 0) == 2  # the stem's and the head's stay
    ref = run(fold_batchnorm(relu6_to_relu(mobilenet, expected)), x)
    for model in (eq, cross_layer_equalization(mobilenet)[0],
                  cross_layer_equalization(mobilenet, calib=x, batch_size=128)[0]):
        np.testing.assert_allclose(run(model, x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_mobilenet_relu6_skip_is_exact_and_crosses_no_clip(mobilenet, sample):
    x = sample[0][:200]
    eq, rep = cross_layer_equalization(mobilenet, relu6="skip")
    assert rep.replaced_relu6 == []
    assert all(r["activation"] == "none" for r in rep)  # only the linear project->head pair
    assert len(rep) == 1
    assert eq.op_types()["Clip"] == mobilenet.op_types()["Clip"]
    ref = run(fold_batchnorm(mobilenet), x)
    np.testing.assert_allclose(run(eq, x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_relu6_replacement_changes_float_accuracy_little(mobilenet, sample):
    x, y = sample
    _, rep = cross_layer_equalization(mobilenet, absorb_bias=False)
    acc = (run(mobilenet, x).argmax(1) == y).mean()
    acc_relu = (run(relu6_to_relu(mobilenet, rep.replaced_relu6), x).argmax(1) == y).mean()
    # measured: 93.05 % -> 92.95 % on the 2000-image sample
    assert abs(acc - acc_relu) < 0.01


# ---------------------------------------------------------- ranges equalized
@pytest.mark.parametrize("name", ["fmnist-mobilenet", "fmnist-resnet"])
def test_ranges_equal_after_convergence(name):
    model = lpcv.zoo.reference(name)
    eq, rep = cross_layer_equalization(model)
    assert rep.converged and rep.iterations < 100
    for row in rep:
        n1, n2 = eq.node(row["layer_1"]), eq.node(row["layer_2"])
        r1, r2 = out_ranges(eq, n1), in_ranges(eq, n2)
        np.testing.assert_allclose(r1, r2, rtol=1e-4)
        assert row["range_ratio_1_after"] == pytest.approx(r1.max() / r1.min(), rel=1e-4)
        assert row["range_ratio_2_after"] == pytest.approx(r2.max() / r2.min(), rel=1e-4)
    before = fold_batchnorm(model)
    row = rep[0]
    r1b = out_ranges(before, before.node(row["layer_1"]))
    assert row["range_ratio_1_before"] == pytest.approx(r1b.max() / r1b.min(), rel=1e-6)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_two_layer_gemm_formula(trans_b):
    rng = np.random.default_rng(1)
    w1 = (rng.standard_normal((6, 4)) * np.exp(2 * rng.standard_normal(6))[:, None])
    w2 = rng.standard_normal((3, 6)) * np.exp(rng.standard_normal(6))[None, :]
    b1, b2 = rng.standard_normal(6), rng.standard_normal(3)
    inits = {"w1": (w1 if trans_b else w1.T).astype(F32), "b1": b1.astype(F32),
             "w2": (w2 if trans_b else w2.T).astype(F32), "b2": b2.astype(F32)}
    m = Model([Node("Gemm", "fc1", ["x", "w1", "b1"], ["z"], {"transB": trans_b}),
               Node("Relu", "relu", ["z"], ["h"]),
               Node("Gemm", "fc2", ["h", "w2", "b2"], ["y"], {"transB": trans_b})],
              [ValueInfo("x", ("N", 4))], [ValueInfo("y", ("N", 3))], inits)
    w1, w2 = w1.astype(F32).astype(np.float64), w2.astype(F32).astype(np.float64)
    b1, b2 = b1.astype(F32).astype(np.float64), b2.astype(F32).astype(np.float64)
    eq, rep = cross_layer_equalization(m)
    # NumPy reference: r1 = max |row i of W1|, r2 = max |column i of W2|
    r1, r2 = np.abs(w1).max(axis=1), np.abs(w2).max(axis=0)
    s = np.sqrt(r1 * r2) / r2
    w1e = eq.initializers["w1"] if trans_b else eq.initializers["w1"].T
    w2e = eq.initializers["w2"] if trans_b else eq.initializers["w2"].T
    np.testing.assert_allclose(w1e, w1 / s[:, None], rtol=1e-5)
    np.testing.assert_allclose(eq.initializers["b1"], b1 / s, rtol=1e-5)
    np.testing.assert_allclose(w2e, w2 * s[None, :], rtol=1e-5)
    np.testing.assert_allclose(eq.initializers["b2"], b2, rtol=1e-6)
    np.testing.assert_allclose(np.abs(w1e).max(axis=1), np.sqrt(r1 * r2), rtol=1e-5)
    np.testing.assert_allclose(rep.scales["fc1"], s, rtol=1e-9)
    assert rep.iterations == 2 and rep.converged   # one sweep, one to confirm
    assert rep[0]["mean_scale"] == pytest.approx(np.exp(np.log(s).mean()))
    x = rng.standard_normal((7, 4)).astype(F32)
    ref = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    np.testing.assert_allclose(run(eq, x), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("act, bounds, paired, kind", [
    ("LeakyRelu", None, True, "LeakyRelu"), (None, None, True, "none"),
    ("Clip", (0.0, None), True, "Relu"), ("Clip", (0.0, 6.0), True, "ReLU6→Relu"),
    ("Clip", (-1.0, 1.0), False, None), ("Sigmoid", None, False, None),
])
def test_activations_between_gemms(act, bounds, paired, kind):
    rng = np.random.default_rng(9)
    inits = {"w1": (rng.standard_normal((6, 4)) * np.exp(rng.standard_normal(6))[:, None]
                    ).astype(F32),
             "b1": rng.standard_normal(6).astype(F32),
             "w2": rng.standard_normal((3, 6)).astype(F32)}
    nodes = [Node("Gemm", "fc1", ["x", "w1", "b1"], ["z"], {"transB": 1})]
    h = "z"
    if act == "Clip":
        ins = ["z", "lo"] + (["hi"] if bounds[1] is not None else [])
        inits["lo"] = np.array(bounds[0], F32)
        if bounds[1] is not None:
            inits["hi"] = np.array(bounds[1], F32)
        nodes.append(Node("Clip", "act", ins, ["h"]))
        h = "h"
    elif act is not None:
        nodes.append(Node(act, "act", ["z"], ["h"], {"alpha": 0.1} if act == "LeakyRelu" else {}))
        h = "h"
    nodes.append(Node("Gemm", "fc2", [h, "w2"], ["y"], {"transB": 1}))
    m = Model(nodes, [ValueInfo("x", ("N", 4))], [ValueInfo("y", ("N", 3))], inits)
    eq, rep = cross_layer_equalization(m)
    assert len(rep) == int(paired)
    x = (3 * rng.standard_normal((16, 4))).astype(F32)
    if not paired:
        assert eq == m
        return
    assert rep[0]["activation"] == kind
    ref = m if kind != "ReLU6→Relu" else relu6_to_relu(m, ["act"])
    np.testing.assert_allclose(run(eq, x), run(ref, x), rtol=1e-4, atol=1e-4)
    r1, r2 = out_ranges(eq, eq.node("fc1")), in_ranges(eq, eq.node("fc2"))
    np.testing.assert_allclose(r1, r2, rtol=1e-5)


def test_two_layer_conv_formula_and_no_absorption_without_bn():
    rng = np.random.default_rng(2)
    m = triple(rng, dw_pad=1)
    # only the first two layers: pw1 -> relu -> dw (grouped) and then pw2
    eq, rep = cross_layer_equalization(m, iterations=1)
    w1, w2 = m.initializers["w1"].astype(np.float64), m.initializers["w2"].astype(np.float64)
    r1 = np.abs(w1).reshape(8, -1).max(1)
    r2 = np.abs(w2).reshape(8, -1).max(1)      # depthwise: input channel i is filter i
    s = np.sqrt(r1 / r2)
    np.testing.assert_allclose(eq.initializers["w1"], w1 / s[:, None, None, None], rtol=1e-5)
    np.testing.assert_allclose(rep.scales["pw1"], s, rtol=1e-12)
    assert not rep.converged and rep.iterations == 1
    assert [r["absorption"] for r in rep] == ["no (layer 2 padded)", "no (no BN, no calib)"]


# ------------------------------------------------- depthwise / grouped triple
@pytest.mark.parametrize("group", [8, 2])
def test_depthwise_separable_triple(group):
    rng = np.random.default_rng(3)
    m = triple(rng, group=group)
    x = rng.random((4, 3, 8, 8)).astype(F32)
    eq, rep = cross_layer_equalization(m)
    assert [(r["layer_1"], r["layer_2"]) for r in rep] == [("pw1", "dw"), ("dw", "pw2")]
    assert rep.converged
    ref = run(m, x)
    np.testing.assert_allclose(run(eq, x), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    r_pw1 = out_ranges(eq, eq.node("pw1"))
    r_dw_in, r_dw_out = in_ranges(eq, eq.node("dw")), out_ranges(eq, eq.node("dw"))
    r_pw2 = in_ranges(eq, eq.node("pw2"))
    np.testing.assert_allclose(r_pw1, r_dw_in, rtol=1e-4)
    np.testing.assert_allclose(r_dw_out, r_pw2, rtol=1e-4)
    if group == 8:  # depthwise: filter i is both input and output channel i
        np.testing.assert_allclose(r_pw1, r_pw2, rtol=1e-4)
    for r in rep:
        assert r["range_ratio_1_after"] < r["range_ratio_1_before"]


# -------------------------------------------------------- residuals untouched
def test_residual_add_not_crossed(resnet):
    folded = fold_batchnorm(resnet)
    eq, rep = cross_layer_equalization(resnet)
    paired_first = {r["layer_1"] for r in rep}
    producer = {o: n for n in folded.nodes for o in n.outputs}
    feeding_add = [producer[t] for n in folded.nodes if n.op == "Add" for t in n.inputs
                   if t in producer and producer[t].op == "Conv"]
    assert len(feeding_add) == 7   # 5 block outputs and 2 shortcut convolutions
    for c in feeding_add:
        assert c.name not in paired_first
        e = eq.node(c.name)
        np.testing.assert_array_equal(eq.initializers[e.inputs[2]],
                                      folded.initializers[c.inputs[2]])
        ratio = eq.initializers[e.inputs[1]] / folded.initializers[c.inputs[1]]
        # only the input side can have been scaled: the ratio is the same for
        # every output channel
        np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:1], ratio.shape), rtol=1e-5)
    # the block-internal conv2 (layer 2 of a pair) was scaled on its input side
    assert any(not np.allclose(eq.initializers[eq.node(r["layer_2"]).inputs[1]],
                               folded.initializers[folded.node(r["layer_2"]).inputs[1]])
               for r in rep)


# ----------------------------------------------------------- bias absorption
def bn_pair(rng):
    """Conv1x1 -> BN -> Relu -> Conv1x1 whose BN has high, narrow outputs in
    some channels (β − 3|γ| > 0)."""
    c = 6
    beta = np.array([2.0, 1.0, -1.0, 0.5, 3.0, 0.05])
    gamma = np.array([0.1, -0.2, 0.3, 0.1, 0.5, 0.1])
    inits = {
        "w1": (0.1 * rng.standard_normal((c, 3, 1, 1))).astype(F32),
        "g": gamma.astype(F32), "be": beta.astype(F32),
        "mu": np.zeros(c, F32), "var": np.ones(c, F32),
        "w2": rng.standard_normal((4, c, 1, 1)).astype(F32),
        "b2": rng.standard_normal(4).astype(F32),
    }
    nodes = [Node("Conv", "c1", ["x", "w1"], ["z"]),
             Node("BatchNormalization", "bn", ["z", "g", "be", "mu", "var"], ["zb"],
                  {"epsilon": 0.0}),
             Node("Relu", "relu", ["zb"], ["h"]),
             Node("Conv", "c2", ["h", "w2", "b2"], ["y"])]
    m = Model(nodes, [ValueInfo("x", ("N", 3, 5, 5))], [ValueInfo("y", ("N", 4, 5, 5))], inits)
    return m, beta.astype(F32).astype(np.float64), np.abs(gamma.astype(F32).astype(np.float64))


def test_data_free_bias_absorption_from_bn():
    rng = np.random.default_rng(4)
    m, beta, gamma = bn_pair(rng)
    eq, rep = cross_layer_equalization(m)
    folded = fold_batchnorm(m)
    s = rep.scales["c1"]
    c = np.maximum(0, (beta - 3 * gamma) / s)
    assert (c > 0).sum() == 4
    np.testing.assert_allclose(rep.absorbed["c1"], c, rtol=1e-9)
    b1 = folded.initializers[folded.node("c1").inputs[2]].astype(np.float64)
    np.testing.assert_allclose(eq.initializers[eq.node("c1").inputs[2]], b1 / s - c,
                               rtol=1e-5, atol=1e-6)
    w2e = eq.initializers["w2"].astype(np.float64)[:, :, 0, 0]
    np.testing.assert_allclose(eq.initializers["b2"], m.initializers["b2"] + w2e @ c,
                               rtol=1e-5, atol=1e-6)
    assert rep[0]["absorption"] == "bn"
    assert rep[0]["absorbed_bias_norm"] == pytest.approx(np.linalg.norm(c))
    # inputs in [0, 1] keep the BN outputs within 3 std of β here, so the
    # function is preserved
    x = rng.random((8, 3, 5, 5)).astype(F32)
    z = np.einsum("oc,nchw->nohw", m.initializers["w1"][:, :, 0, 0], x)
    zb = m.initializers["g"][None, :, None, None] * z + m.initializers["be"][None, :, None, None]
    assert (zb >= (beta - 3 * gamma)[None, :, None, None]).all()
    np.testing.assert_allclose(run(eq, x), run(m, x), rtol=1e-4, atol=1e-5)
    # off: nothing absorbed
    eq0, rep0 = cross_layer_equalization(m, absorb_bias=False)
    assert rep0.absorbed == {} and rep0[0]["absorption"] == "off"


def test_data_driven_absorption_exact_on_calibration_data():
    rng = np.random.default_rng(5)
    # positive biases make the pre-activations stay above a positive floor;
    # the depthwise layer is unpadded so both pairs can absorb.
    m = triple(rng, dw_pad=0, biases=(3.0, 3.0, 0.1))
    calib = rng.random((40, 3, 8, 8)).astype(F32)
    eq, rep = cross_layer_equalization(m, calib=calib, batch_size=16)
    assert [r["absorption"] for r in rep] == ["data", "data"]
    assert set(rep.absorbed) == {"pw1", "dw"}
    assert all((c > 0).sum() >= 3 for c in rep.absorbed.values())
    np.testing.assert_allclose(run(eq, calib), run(m, calib), rtol=1e-4, atol=1e-4)
    # c is the minimum: after absorption each absorbed channel's pre-activation
    # reaches exactly 0 on the calibration data (checks the shift that pw1's
    # absorption makes in dw's pre-activation, too)
    probe = eq.with_changes(outputs=[ValueInfo("z1", ("N", 8, 8, 8)),
                                     ValueInfo("z2", ("N", 8, 6, 6))])
    res = lpcv.Session(probe, batch_size=40).run({"x": calib})
    for t, key in (("z1", "pw1"), ("z2", "dw")):
        mins = res[t].min(axis=(0, 2, 3))
        hit = rep.absorbed[key] > 0
        np.testing.assert_allclose(mins[hit], 0.0, atol=1e-4)
        assert (mins[~hit] <= 1e-6).all()
    # on other data some pre-activation falls below c: no longer exact
    other = (3 * rng.standard_normal((40, 3, 8, 8))).astype(F32)
    assert not np.allclose(run(eq, other), run(m, other), rtol=1e-4, atol=1e-4)


def test_data_driven_absorption_with_fixed_batch_input():
    rng = np.random.default_rng(8)
    m = triple(rng, dw_pad=0, biases=(3.0, 3.0, 0.1))
    m = m.with_changes(inputs=[ValueInfo("x", (2, 3, 8, 8))],
                       outputs=[ValueInfo("y", (2, 5, 6, 6))])
    calib = rng.random((5, 3, 8, 8)).astype(F32)   # not a multiple of the batch
    eq, rep = cross_layer_equalization(m, calib=calib)
    assert set(rep.absorbed) == {"pw1", "dw"}
    x = np.concatenate([calib, calib[:1]])
    np.testing.assert_allclose(run(eq, x, batch=2), run(m, x, batch=2), rtol=1e-4, atol=1e-4)


def test_padded_second_layer_not_absorbed():
    rng = np.random.default_rng(6)
    m = triple(rng, dw_pad=1, biases=(3.0, 3.0, 0.1))
    calib = rng.random((16, 3, 8, 8)).astype(F32)
    eq, rep = cross_layer_equalization(m, calib=calib)
    assert rep[0]["absorption"] == "no (layer 2 padded)" and "pw1" not in rep.absorbed
    assert rep[1]["absorption"] == "data" and "dw" in rep.absorbed
    np.testing.assert_allclose(run(eq, calib), run(m, calib), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------- effect
def test_cle_helps_per_tensor_weight_quantization(mobilenet, sample):
    """Per-tensor symmetric weight fake-quantization of every Conv/Gemm.

    Measured on the 2000-image sample (accuracy %, logit SQNR vs the float
    model it came from):
        float: folded 93.05, CLE (ReLU6 -> ReLU) 92.95
        W8: folded 92.90 (34.5 dB), CLE 92.90 (39.2 dB)
        W6: folded 89.90 (14.3 dB), CLE 92.85 (25.5 dB)
        W4: folded 87.40 ( 9.3 dB), CLE 91.05 (13.7 dB)
    Bias absorption changes nothing on this model (no pre-activation stays
    positive on the data, and β − 3|γ| < 0 for every channel).
    """
    x, y = sample
    folded = fold_batchnorm(mobilenet)
    eq, _ = cross_layer_equalization(mobilenet)
    ref_f, ref_e = run(folded, x), run(eq, x)

    def sqnr(out, ref):
        return 10 * np.log10((ref ** 2).sum() / ((out - ref) ** 2).sum())

    acc = {}
    for bits in (8, 6):
        of, oe = run(quantize_weights(folded, bits), x), run(quantize_weights(eq, bits), x)
        acc[bits] = ((of.argmax(1) == y).mean(), (oe.argmax(1) == y).mean())
        if bits == 8:
            assert sqnr(oe, ref_e) > sqnr(of, ref_f) + 2.5
    float_acc = (ref_f.argmax(1) == y).mean()
    assert acc[6][1] > acc[6][0] + 0.015            # +2.95 points measured
    assert acc[6][1] > float_acc - 0.01             # CLE W6 within a point of float
    assert acc[8][1] >= acc[8][0] - 0.002           # W8: no worse


# ------------------------------------------------------------ report, inputs
def test_report_renderings(mobilenet):
    _, rep = cross_layer_equalization(mobilenet)
    md = rep.to_markdown()
    for col in ("layer_1", "layer_2", "channels", "range_ratio_1_before", "range_ratio_2_after",
                "mean_scale", "absorbed_bias_norm"):
        assert col in md and col in rep._repr_html_()
    assert "14 ReLU6 replaced" in rep.title
    assert len(md.splitlines()) == 4 + len(rep)
    pd = pytest.importorskip("pandas")
    df = rep.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 15
    assert (df["range_ratio_2_after"] <= df["range_ratio_2_before"] + 1e-9).all()


def test_input_model_not_mutated(mobilenet):
    before = {k: v.copy() for k, v in mobilenet.initializers.items()}
    nodes = [repr(n) for n in mobilenet.nodes]
    cross_layer_equalization(mobilenet, calib=lpcv.data.load_sample(8)[0])
    assert [repr(n) for n in mobilenet.nodes] == nodes
    assert all(np.array_equal(before[k], v) for k, v in mobilenet.initializers.items())


@pytest.mark.parametrize("kw, word", [
    ({"iterations": 0}, "iterations"), ({"iterations": 2.5}, "iterations"),
    ({"iterations": "3"}, "iterations"), ({"iterations": True}, "iterations"),
    ({"relu6": "relu"}, "relu6"), ({"relu6": None}, "relu6"), ({"relu6": "REPLACE"}, "relu6"),
    ({"tol": 0.0}, "tol"), ({"tol": float("nan")}, "tol"), ({"tol": "1e-3"}, "tol"),
    ({"batch_size": 0}, "batch_size"), ({"absorb_bias": 1}, "absorb_bias"),
    ({"calib": [[0.0]]}, "calib"), ({"calib": np.zeros((2, 1, 28, 28), np.int64)}, "calib"),
    ({"calib": np.zeros((2, 1, 27, 28), F32)}, "calib"),
    ({"calib": np.zeros((1, 28, 28), F32)}, "calib"),
    ({"calib": np.zeros((0, 1, 28, 28), F32)}, "calib"),
    ({"calib": np.full((1, 1, 28, 28), np.nan, F32)}, "calib"),
])
def test_bad_arguments(resnet, kw, word):
    with pytest.raises(LpcvError, match=word) as info:
        cross_layer_equalization(resnet, **kw)
    assert isinstance(info.value, (ValidationError, ShapeError))


def test_bad_model():
    with pytest.raises(ValidationError, match="model"):
        cross_layer_equalization("fmnist-resnet")
    with pytest.raises(TypeError):
        cross_layer_equalization(lpcv.zoo.reference("fmnist-lenet300"), 5)  # keyword-only


def test_model_without_pairs_is_returned_folded():
    rng = np.random.default_rng(7)
    m = Model([Node("Gemm", "fc", ["x", "w"], ["y"], {"transB": 1})],
              [ValueInfo("x", ("N", 3))], [ValueInfo("y", ("N", 2))],
              {"w": rng.standard_normal((2, 3)).astype(F32)})
    eq, rep = cross_layer_equalization(m)
    assert len(rep) == 0 and rep.converged and eq == m


def test_doctests():
    res = doctest.testmod(eqmod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0
