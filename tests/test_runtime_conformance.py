"""Runtime conformance: ONNX's own node tests, and whole models vs onnxruntime."""
from __future__ import annotations

import os
import time

import numpy as np
import onnx
import pytest

import lpcv
from lpcv.runtime import SUPPORTED_OPS

from _node_tests import node_cases

# Inputs the runtime needs at compile time (shapes, pads, bounds). ONNX's node
# tests feed them as graph inputs; here they become initializers, which is
# how exporters emit them.
CONST_INPUTS = {"Clip": (1, 2), "Reshape": (1,), "Pad": (1, 2, 3), "Squeeze": (1,),
                "Unsqueeze": (1,), "Split": (1,), "Dropout": (1, 2),
                "QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2)}

# Node tests the runtime does not run, and why. Cases whose tensors are not
# float32, uint8 or int8 are skipped automatically (the runtime computes in
# float32; integers appear only as quantized tensors of QuantizeLinear /
# DequantizeLinear and the int8 kernels, not as integer Add/Mul).
SKIPPED = {
    "test_batchnorm_epsilon_training_mode": "training-mode BatchNormalization (inference runtime)",
    "test_batchnorm_example_training_mode": "training-mode BatchNormalization (inference runtime)",
    "test_dropout_default_mask": "Dropout's boolean mask output",
    "test_dropout_default_mask_ratio": "Dropout's boolean mask output",
    "test_training_dropout": "training-mode Dropout is random",
    "test_training_dropout_default": "training-mode Dropout is random",
    "test_training_dropout_default_mask": "training-mode Dropout is random",
    "test_training_dropout_mask": "training-mode Dropout is random",
    "test_training_dropout_zero_ratio_mask": "training-mode Dropout (mask output is boolean)",
    "test_identity_opt": "optional-typed graph inputs",
    "test_identity_sequence": "sequence-typed graph inputs",
    "test_maxpool_with_argmax_2d_precomputed_pads": "MaxPool's int64 Indices output",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool's int64 Indices output",
    "test_gemm_default_scalar_bias": "its data feeds shape (1,) for an input declared rank 0",
    "test_quantizelinear_blocked_asymmetric": "blocked quantization (block_size)",
    "test_dequantizelinear_blocked": "blocked quantization (block_size)",
}

CASES = node_cases(SUPPORTED_OPS)


_RUNTIME_DTYPES = (np.float32, np.uint8, np.int8)


def _float32_only(feeds, expected) -> bool:
    return all(np.asarray(a).dtype == np.float32 for a in list(feeds.values()) + list(expected))


def _supported_dtypes(feeds, expected) -> bool:
    return all(np.asarray(a).dtype in _RUNTIME_DTYPES
               for a in list(feeds.values()) + list(expected))


def _prepare(case):
    """The case's model with compile-time inputs turned into initializers."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    ins, outs = case.data_sets[0]
    g = model.graph
    declared = [i.name for i in g.input]
    const_names = {n.input[i] for n in g.node for i in CONST_INPUTS.get(n.op_type, ())
                   if i < len(n.input) and n.input[i] in declared}
    feeds = {}
    for vi, arr in zip(list(g.input), ins):
        if vi.name in const_names:
            g.initializer.append(onnx.numpy_helper.from_array(np.asarray(arr), vi.name))
            g.input.remove(vi)
        else:
            feeds[vi.name] = arr
    return model, feeds, [o.name for o in g.output], outs


def test_node_tests_were_found():
    # Guards against a silent pass if onnx stops shipping the generators.
    assert len(CASES) > 200
    covered = {n.op_type for c in CASES.values() for n in c.model.graph.node}
    assert covered >= set(SUPPORTED_OPS) - {"Constant"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_node(name):
    case = CASES[name]
    if name in SKIPPED:
        pytest.skip(SKIPPED[name])
    ins, outs = case.data_sets[0]
    quantized = {n.op_type for n in case.model.graph.node} & {"QuantizeLinear",
                                                               "DequantizeLinear"}
    if not (_supported_dtypes(dict(enumerate(ins)), outs) if quantized
            else _float32_only(dict(enumerate(ins)), outs)):
        pytest.skip("tensors other than float32 (uint8/int8 only as quantized tensors)")
    model, feeds, out_names, expected = _prepare(case)
    m = lpcv.load(model.SerializeToString())
    for mode in ("int8", "simulate"):
        got = lpcv.Session(m, quantized=mode).run(feeds)
        for name_, e in zip(out_names, expected):
            assert got[name_].dtype == np.asarray(e).dtype
            if got[name_].dtype.kind in "iu":  # quantized tensors: bit for bit
                np.testing.assert_array_equal(got[name_], e)
            else:
                np.testing.assert_allclose(got[name_], e, rtol=case.rtol,
                                           atol=max(case.atol, 1e-6))


def test_skipped_cases_really_fail():
    # Each listed skip must still be unsupported; a case that starts passing
    # has to leave the list.
    for name in SKIPPED:
        if name not in CASES:
            continue
        model, feeds, out_names, expected = _prepare(CASES[name])
        try:
            m = lpcv.load(model.SerializeToString())
            got = lpcv.Session(m).run(feeds)
            same = all(got[n].shape == np.shape(e) and np.allclose(got[n], e)
                       for n, e in zip(out_names, expected))
        except (lpcv.exceptions.LpcvError, TypeError):
            continue
        assert not same, f"{name} passes now: remove it from SKIPPED"


# ---------------------------------------------------------------- models
ort = pytest.importorskip("onnxruntime")


def _ort_run(model: lpcv.Model, feeds, tmp_path):
    path = tmp_path / f"{model.name}.onnx"
    lpcv.save(model, path, overwrite=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _close(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-12))


@pytest.mark.parametrize("arch", lpcv.zoo.architectures())
def test_zoo_matches_onnxruntime(arch, tmp_path):
    model = getattr(lpcv.zoo, arch)()
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    ref = _ort_run(model, {"input": x}, tmp_path)[0]
    y = lpcv.Session(model).run({"input": x})["logits"]
    assert y.shape == ref.shape
    assert _close(y, ref) <= 1e-4


@pytest.mark.parametrize("name", lpcv.zoo.reference_names())
def test_reference_matches_onnxruntime(name, tmp_path):
    model = lpcv.zoo.reference(name)
    x, _ = lpcv.data.load_sample(64)
    ref = _ort_run(model, {"input": x}, tmp_path)[0]
    y = lpcv.Session(model, batch_size=64).run({"input": x})["logits"]
    assert _close(y, ref) <= 1e-4
    assert np.array_equal(y.argmax(1), ref.argmax(1))


def test_other_batch_sizes_compile_on_demand():
    model = lpcv.zoo.reference(lpcv.zoo.reference_names()[0])
    x, _ = lpcv.data.load_sample(5)
    sess = lpcv.Session(model, batch_size=2)
    y5 = sess.run({"input": x})["logits"]
    y1 = np.concatenate([sess.run({"input": x[i:i + 1]})["logits"] for i in range(5)])
    np.testing.assert_allclose(y5, y1, rtol=1e-5, atol=1e-5)


def test_fusion_happens_and_is_visible_in_profile():
    model = lpcv.zoo.resnet18()
    sess = lpcv.Session(model)
    steps = sess.steps()
    kinds = steps.column("kind")
    # 20 convolutions with BN folded, ReLU and residual Add fused as post-ops.
    assert kinds.count("convolution") == 20
    assert "eltwise" not in kinds and "binary" not in kinds
    prof = sess.profile(repeats=2, warmup=1)
    assert abs(sum(prof.column("share")) - 1) < 1e-9
    fused = [r for r in prof.rows if "Add" in r["nodes"] or "add" in r["nodes"].lower()]
    assert fused, "the residual additions should appear inside fused conv rows"
    df = prof.to_pandas()
    assert {"node", "op", "kind", "impl", "time_ms", "min_ms", "share"} <= set(df.columns)
    # The fastest repeat never exceeds the median one.
    assert (df.min_ms <= df.time_ms + 1e-12).all() and (df.min_ms > 0).all()


def _silu_model(extra_output: bool):
    from lpcv.graph import Model, Node, ValueInfo
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    nodes = [Node("Conv", "conv", ["x", "w"], ["c"], {"pads": [1, 1, 1, 1]}),
             Node("Sigmoid", "sig", ["c"], ["s"]), Node("Mul", "mul", ["s", "c"], ["y"])]
    outputs = [ValueInfo("y", (2, 8, 6, 6))] + ([ValueInfo("s", (2, 8, 6, 6))] if extra_output else [])
    return Model(nodes, [ValueInfo("x", (2, 3, 6, 6))], outputs, {"w": w}, name="silu"), w


@pytest.mark.parametrize("extra_output", [False, True])
def test_silu_is_fused_as_swish_post_op(extra_output):
    model, w = _silu_model(extra_output)
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    sess = lpcv.Session(model, batch_size=2)
    kinds = [k for k in sess.steps().column("kind") if k != "reorder"]
    # Fused only when the sigmoid's output is needed by the Mul alone.
    assert kinds == (["convolution", "eltwise", "binary"] if extra_output else ["convolution"])
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    c = np.einsum("nchwij,ocij->nohw", np.lib.stride_tricks.sliding_window_view(
        xp, (3, 3), axis=(2, 3)), w)
    y = sess.run({"x": x})["y"]
    np.testing.assert_allclose(y, c / (1 + np.exp(-c)), rtol=1e-5, atol=1e-5)


def test_inputs_are_not_mutated():
    model = lpcv.zoo.reference(lpcv.zoo.reference_names()[0])
    x, _ = lpcv.data.load_sample(4)
    before = x.copy()
    weights = {k: v.copy() for k, v in model.initializers.items()}
    lpcv.Session(model, batch_size=4).run({"input": x})
    assert np.array_equal(x, before)
    assert all(np.array_equal(model.initializers[k], v) for k, v in weights.items())


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to tell one thread from two")
def test_threads_limit_holds_for_onednn_primitives():
    # oneDNN fixes a primitive's thread count when it is created, so a plan
    # compiled under the default (all cores) would ignore threads=1 at run
    # time. One thread cannot use more CPU time than wall time.
    sess = lpcv.Session(lpcv.zoo.resnet18(), batch_size=2, threads=1)
    x = {"input": np.random.default_rng(0).standard_normal(sess.input_shape("input"), np.float32)}
    sess.run(x)  # compile outside the timed part

    def cores_used():
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(3):
            sess.run(x)
        return (time.process_time() - cpu0) / (time.perf_counter() - wall0)

    # The fewest of three tries: an idle OpenMP worker of an earlier
    # two-thread session sometimes burns 30-40 ms of CPU in one try (seen on
    # a 2-vCPU EPYC VM, ratio 1.3-1.45 one try in three); primitives that
    # ignored the limit would use two cores in every try.
    ratio = min(cores_used() for _ in range(3))
    assert ratio < 1.3, f"threads=1 used {ratio:.2f} cores"
