"""Tests of ONNX loading and saving (lpcv.onnx_io).

Oracle: onnxruntime. A model that lpcv loads and saves again must give
bit-identical outputs in onnxruntime to the file it came from; folded exporter
chains must still run at every batch size in onnxruntime and in lpcv.Session.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import lpcv
from conftest import exporter_chain_model, make_onnx, ort_run, random_feeds
from lpcv.exceptions import ModelError, ONNXLoadError, UnsupportedError, ValidationError

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402


def assert_same_outputs(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------- round trips
def test_reference_model_round_trip_is_bit_identical_in_onnxruntime(reference_path, tmp_path):
    m = lpcv.load(reference_path)
    out = tmp_path / "copy.onnx"
    lpcv.save(m, out)
    feeds = random_feeds(m, batch=4)
    assert_same_outputs(ort_run(reference_path, feeds), ort_run(out, feeds))
    # The saved file is a valid ONNX model and reloads to the same IR.
    onnx.checker.check_model(str(out), full_check=True)
    assert lpcv.load(out) == m
    assert lpcv.load(reference_path.read_bytes()) == m


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_small",
                                  "shufflenet_v2_x1_0", "efficientnet_b0"])
def test_zoo_model_round_trip_is_bit_identical_in_onnxruntime(name, zoo_model, tmp_path):
    m = zoo_model(name, num_classes=10, resolution=32)
    first, second = tmp_path / "first.onnx", tmp_path / "second.onnx"
    lpcv.save(m, first)
    loaded = lpcv.load(first)
    lpcv.save(loaded, second)
    feeds = random_feeds(m, batch=2)
    assert_same_outputs(ort_run(first, feeds), ort_run(second, feeds))
    assert loaded.num_parameters() == m.num_parameters()
    assert loaded.metadata == m.metadata and loaded.opset == m.opset
    # Float attributes are float32 in ONNX: from the first load on, nothing changes.
    assert lpcv.load(second) == loaded
    assert first.read_bytes() == second.read_bytes()


def test_scalar_initializers_stay_scalar(tmp_path):
    # A 0-d Dropout ratio (as PyTorch exports it): onnxruntime rejects a 1-d one.
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    nodes = [helper.make_node("Dropout", ["x", "ratio"], ["d"], name="drop"),
             helper.make_node("Clip", ["d", "lo", "hi"], ["y"], name="clip")]
    proto = make_onnx(nodes, [("x", ["N", 4])], [("y", ["N", 4])],
                      {"ratio": np.array(0.5, np.float32), "lo": np.array(1, np.float32),
                       "hi": np.array(6, np.float32)})
    m = lpcv.load(proto.SerializeToString())
    assert {k: v.shape for k, v in m.initializers.items()} == {"ratio": (), "lo": (), "hi": ()}
    lpcv.save(m, tmp_path / "s.onnx")
    np.testing.assert_array_equal(ort_run(tmp_path / "s.onnx", {"x": x})[0], np.clip(x, 1, 6))
    saved = onnx.load(str(tmp_path / "s.onnx"))
    assert all(list(t.dims) == [] for t in saved.graph.initializer)


def test_folded_scalar_constant_stays_scalar(tmp_path):
    nodes = [helper.make_node("Constant", [], ["ratio"], name="c",
                              value=numpy_helper.from_array(np.array(0.5, np.float32))),
             helper.make_node("Dropout", ["x", "ratio"], ["y"], name="drop")]
    proto = make_onnx(nodes, [("x", ["N", 4])], [("y", ["N", 4])])
    m = lpcv.load(proto.SerializeToString())
    assert m.initializers["ratio"].shape == ()
    lpcv.save(m, tmp_path / "s.onnx")
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(ort_run(tmp_path / "s.onnx", {"x": x})[0], x)


def test_load_accepts_bytes_bytearray_memoryview_str_and_path(reference_path):
    data = reference_path.read_bytes()
    ref = lpcv.load(reference_path)
    for source in (data, bytearray(data), memoryview(data), str(reference_path)):
        assert lpcv.load(source) == ref


def test_load_rejects_other_source_types():
    with pytest.raises(ValidationError, match="source must be a path or bytes, got int"):
        lpcv.load(3)


def test_attributes_of_every_kind_round_trip(tmp_path):
    t = np.arange(6, dtype=np.float32).reshape(2, 3)
    node = lpcv.Node("Custom", "n", ["x"], ["y"], {
        "i": 3, "f": 0.25, "s": "héllo", "ints": [1, -2], "floats": [0.5, 1.5],
        "strings": ["a", "b"], "empty": [], "t": t}, domain="com.example")
    m = lpcv.Model([node], [lpcv.ValueInfo("x", ("N", 3))], [lpcv.ValueInfo("y", ("N", 3))])
    lpcv.save(m, tmp_path / "a.onnx")
    back = lpcv.load(tmp_path / "a.onnx", fold=False)
    n = back.nodes[0]
    assert n.domain == "com.example"
    assert {k: v for k, v in n.attrs.items() if k != "t"} == {
        "i": 3, "f": 0.25, "s": "héllo", "ints": [1, -2], "floats": [0.5, 1.5],
        "strings": ["a", "b"], "empty": []}
    np.testing.assert_array_equal(n.attrs["t"], t)
    proto = onnx.load(str(tmp_path / "a.onnx"))
    assert {(o.domain, o.version) for o in proto.opset_import} == {("", 17), ("com.example", 1)}


def test_metadata_round_trip(tmp_path):
    m = lpcv.zoo.reference("fmnist-lenet300")
    meta = {"author": "lpcv tests", "unicode": "héllo ✓", "empty": "", "json": '{"a": [1, 2]}'}
    m2 = m.with_changes(metadata=meta, name="renamed")
    lpcv.save(m2, tmp_path / "m.onnx")
    back = lpcv.load(tmp_path / "m.onnx")
    assert back.metadata == meta
    assert back.name == "renamed"
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert {p.key: p.value for p in proto.metadata_props} == meta
    assert proto.producer_name == "lpcv" and proto.producer_version == lpcv.__version__


def test_metadata_written_by_onnx_is_read():
    proto = make_onnx([helper.make_node("Relu", ["x"], ["y"], name="r")],
                      [("x", ["N", 4])], [("y", ["N", 4])])
    helper.set_model_props(proto, {"source": "helper", "k": "v"})
    assert lpcv.load(proto.SerializeToString()).metadata == {"source": "helper", "k": "v"}


def test_symbolic_dims_round_trip(tmp_path):
    proto = make_onnx([helper.make_node("Relu", ["x"], ["y"], name="r")],
                      [("x", ["batch", "C", 4])], [("y", ["batch", "C", 4])])
    m = lpcv.load(proto.SerializeToString())
    assert m.inputs[0].shape == ("batch", "C", 4)
    lpcv.save(m, tmp_path / "s.onnx")
    assert lpcv.load(tmp_path / "s.onnx").inputs[0].shape == ("batch", "C", 4)


# ----------------------------------------------------------------------------- external data
def test_external_data_round_trip(tmp_path):
    m = lpcv.zoo.reference("fmnist-lenet300")
    path = tmp_path / "ext.onnx"
    lpcv.save(m, path, external_data=True)
    assert sorted(os.listdir(tmp_path)) == ["ext.onnx", "ext.onnx.data"]
    weight_bytes = sum(v.nbytes for v in m.initializers.values())
    assert path.stat().st_size < 16 * 1024
    assert (tmp_path / "ext.onnx.data").stat().st_size >= weight_bytes * 0.99
    back = lpcv.load(path)
    assert back == m
    feeds = random_feeds(m, batch=3)
    ref_path = Path(lpcv.__file__).parent / "_reference" / "fmnist-lenet300.onnx"
    assert_same_outputs(ort_run(path, feeds), ort_run(ref_path, feeds))


def test_external_data_needs_a_path(tmp_path):
    lpcv.save(lpcv.zoo.reference("fmnist-lenet300"), tmp_path / "e.onnx", external_data=True)
    with pytest.raises(ONNXLoadError, match="external files; load it from a path"):
        lpcv.load((tmp_path / "e.onnx").read_bytes())


def test_missing_or_short_external_data_raises(tmp_path):
    lpcv.save(lpcv.zoo.reference("fmnist-lenet300"), tmp_path / "e.onnx", external_data=True)
    data = tmp_path / "e.onnx.data"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(ONNXLoadError, match="external data"):
        lpcv.load(tmp_path / "e.onnx")
    data.unlink()
    with pytest.raises(ONNXLoadError, match="external data"):
        lpcv.load(tmp_path / "e.onnx")


def test_external_data_outside_the_folder_is_refused(tmp_path):
    lpcv.save(lpcv.zoo.reference("fmnist-lenet300"), tmp_path / "e.onnx", external_data=True)
    proto = onnx.load(str(tmp_path / "e.onnx"), load_external_data=False)
    for location in ("../e.onnx.data", "/etc/passwd"):
        for t in proto.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        (tmp_path / "h.onnx").write_bytes(proto.SerializeToString())
        with pytest.raises(ONNXLoadError, match="external data"):
            lpcv.load(tmp_path / "h.onnx")


# ----------------------------------------------------------------------------- atomic save
def test_save_leaves_no_temporary_files(tmp_path):
    m = lpcv.zoo.reference("fmnist-lenet300")
    lpcv.save(m, tmp_path / "a.onnx")
    lpcv.save(m, tmp_path / "a.onnx", overwrite=True)
    lpcv.save(m, tmp_path / "b.onnx", external_data=True)
    lpcv.save(m, tmp_path / "b.onnx", external_data=True, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["a.onnx", "b.onnx", "b.onnx.data"]


def test_save_refuses_to_overwrite_and_leaves_file_intact(tmp_path):
    target = tmp_path / "a.onnx"
    target.write_bytes(b"precious bytes")
    m = lpcv.zoo.reference("fmnist-lenet300")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        lpcv.save(m, target)
    with pytest.raises(FileExistsError):
        lpcv.save(m, str(target), external_data=True)
    assert target.read_bytes() == b"precious bytes"
    assert sorted(os.listdir(tmp_path)) == ["a.onnx"]


def test_save_refuses_to_overwrite_existing_external_data(tmp_path):
    (tmp_path / "a.onnx.data").write_bytes(b"other model's weights")
    with pytest.raises(FileExistsError, match="a.onnx.data"):
        lpcv.save(lpcv.zoo.reference("fmnist-lenet300"), tmp_path / "a.onnx", external_data=True)
    assert (tmp_path / "a.onnx.data").read_bytes() == b"other model's weights"
    assert sorted(os.listdir(tmp_path)) == ["a.onnx.data"]


def test_save_overwrite_replaces(tmp_path):
    target = tmp_path / "a.onnx"
    target.write_bytes(b"old")
    m = lpcv.zoo.reference("fmnist-lenet300")
    lpcv.save(m, target, overwrite=True)
    assert lpcv.load(target) == m


def test_failed_save_leaves_target_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "a.onnx"
    target.write_bytes(b"old")

    def boom(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        lpcv.save(lpcv.zoo.reference("fmnist-lenet300"), target, overwrite=True)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["a.onnx"]


def test_save_validates_arguments(tmp_path):
    with pytest.raises(ValidationError, match="lpcv.Model"):
        lpcv.save("not a model", tmp_path / "a.onnx")
    with pytest.raises(ValidationError, match="does not exist"):
        lpcv.save(lpcv.zoo.reference("fmnist-lenet300"), tmp_path / "nope" / "a.onnx")


# ----------------------------------------------------------------------------- folding
def test_exporter_chain_is_folded_and_runs_at_any_batch(tmp_path):
    proto = exporter_chain_model()
    original = tmp_path / "original.onnx"
    original.write_bytes(proto.SerializeToString())
    m = lpcv.load(original)
    ops = m.op_types()
    assert not {"Shape", "Gather", "Unsqueeze", "Concat", "Constant"} & set(ops), ops
    assert ops == {"Conv": 1, "Relu": 1, "Reshape": 1, "Gemm": 1}
    unfolded = lpcv.load(original, fold=False)
    assert {"Shape", "Gather", "Unsqueeze", "Concat", "Constant"} <= set(unfolded.op_types())
    folded = tmp_path / "folded.onnx"
    lpcv.save(m, folded)
    assert m.inputs[0].shape == ("batch", 3, 8, 8)
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 8, 8)).astype(np.float32)
        want = ort_run(original, {"x": x})[0]
        assert want.shape == (batch, 5)
        np.testing.assert_array_equal(ort_run(folded, {"x": x})[0], want)
        got = lpcv.Session(m, batch_size=batch, threads=1).run({"x": x})["y"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # One session serves both batch sizes.
    sess = lpcv.Session(m, threads=1)
    for batch in (5, 1):
        x = np.ones((batch, 3, 8, 8), np.float32)
        np.testing.assert_allclose(sess.run({"x": x})["y"], ort_run(original, {"x": x})[0],
                                   rtol=1e-5, atol=1e-5)


def test_static_shape_chain_folds_completely():
    proto = exporter_chain_model()
    for vi in list(proto.graph.input) + list(proto.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 2
    m = lpcv.load(proto.SerializeToString())
    assert m.op_types() == {"Conv": 1, "Relu": 1, "Reshape": 1, "Gemm": 1}
    reshape = m.node("reshape")
    assert m.initializers[reshape.inputs[1]].tolist() == [2, -1]


# ----------------------------------------------------------------------------- opsets
@pytest.mark.parametrize("opset", [7, 9, 10])
def test_old_opsets_are_unsupported(opset):
    proto = make_onnx([helper.make_node("Relu", ["x"], ["y"], name="r")],
                      [("x", ["N", 4])], [("y", ["N", 4])], opset=opset, ir_version=5)
    with pytest.raises(UnsupportedError, match=f"opset {opset} is older than 11"):
        lpcv.load(proto.SerializeToString())


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_supported_opsets_load(opset):
    proto = make_onnx([helper.make_node("Relu", ["x"], ["y"], name="r")],
                      [("x", ["N", 4])], [("y", ["N", 4])], opset=opset)
    assert lpcv.load(proto.SerializeToString()).opset == opset


def test_opsets_newer_than_onnx_are_unsupported():
    newest = onnx.defs.onnx_opset_version()
    proto = make_onnx([helper.make_node("Relu", ["x"], ["y"], name="r")],
                      [("x", ["N", 4])], [("y", ["N", 4])], opset=newest + 5)
    with pytest.raises(UnsupportedError, match=f"opset {newest + 5} is newer"):
        lpcv.load(proto.SerializeToString())


def test_missing_default_opset_is_a_load_error():
    proto = make_onnx([helper.make_node("Relu", ["x"], ["y"], name="r")],
                      [("x", ["N", 4])], [("y", ["N", 4])])
    del proto.opset_import[:]
    with pytest.raises(ONNXLoadError, match="no default-domain opset"):
        lpcv.load(proto.SerializeToString())


# ----------------------------------------------------------------------------- loader details
def test_duplicate_and_empty_node_names_are_made_unique():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r"),
             helper.make_node("Relu", ["a"], ["b"], name="r"),
             helper.make_node("Relu", ["b"], ["c"]),
             helper.make_node("Relu", ["c"], ["y"], name="Relu_2")]
    proto = make_onnx(nodes, [("x", ["N", 4])], [("y", ["N", 4])])
    m = lpcv.load(proto.SerializeToString())
    names = [n.name for n in m.nodes]
    assert len(set(names)) == 4 and names[0] == "r" and names[3].startswith("Relu_2")


def test_duplicate_initializer_is_a_model_error():
    proto = make_onnx([helper.make_node("Add", ["x", "w"], ["y"], name="a")],
                      [("x", ["N", 2])], [("y", ["N", 2])], {"w": np.ones(2, np.float32)})
    proto.graph.initializer.append(numpy_helper.from_array(np.zeros(2, np.float32), "w"))
    with pytest.raises(ModelError, match="'w' is defined twice"):
        lpcv.load(proto.SerializeToString())


def test_invalid_utf8_names_are_a_load_error():
    proto = make_onnx([helper.make_node("Relu", ["x"], ["y"], name="AAAA")],
                      [("x", ["N", 4])], [("y", ["N", 4])])
    data = proto.SerializeToString().replace(b"AAAA", b"\xff\xfe\xa8A")
    with pytest.raises(ONNXLoadError, match="not valid UTF-8"):
        lpcv.load(data)


def test_initializer_declared_as_input_is_not_an_input():
    # IR < 4 style: initializers are also listed as graph inputs.
    proto = make_onnx([helper.make_node("Add", ["x", "w"], ["y"], name="a")],
                      [("x", ["N", 2]), ("w", [2])], [("y", ["N", 2])],
                      {"w": np.ones(2, np.float32)})
    m = lpcv.load(proto.SerializeToString())
    assert m.input_names == ["x"]


def test_non_tensor_graph_input_is_unsupported():
    seq = helper.make_tensor_sequence_value_info("x", 1, None)
    proto = make_onnx([helper.make_node("Identity", ["x"], ["y"], name="i")],
                      [seq], [("y", ["N", 4])])
    with pytest.raises(UnsupportedError, match="'x' is not a tensor"):
        lpcv.load(proto.SerializeToString())


def test_subgraph_attributes_are_unsupported():
    body = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "b", [],
                             [helper.make_tensor_value_info("z", 1, [4])])
    node = helper.make_node("If", ["c"], ["y"], name="if", then_branch=body, else_branch=body)
    proto = make_onnx([node], [helper.make_tensor_value_info("c", 9, []), ("x", [4])],
                      [("y", [4])])
    with pytest.raises(UnsupportedError, match="control flow"):
        lpcv.load(proto.SerializeToString())


def test_check_finite_can_be_disabled():
    proto = make_onnx([helper.make_node("Add", ["x", "w"], ["y"], name="a")],
                      [("x", ["N", 2])], [("y", ["N", 2])],
                      {"w": np.array([np.nan, np.inf], np.float32)})
    with pytest.raises(ModelError, match="'w' contains NaN or Inf"):
        lpcv.load(proto.SerializeToString())
    m = lpcv.load(proto.SerializeToString(), check_finite=False)
    assert np.isnan(m.initializers["w"][0])
