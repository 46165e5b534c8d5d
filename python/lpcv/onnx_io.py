"""Load ONNX files into :class:`lpcv.Model` and save models back to ONNX.

Loading validates the file (parseable protobuf, opset 11 or newer, a
well-formed graph, finite weights) and folds the constant ``Shape``/``Gather``/
``Unsqueeze``/``Concat`` chains exporters emit around ``Reshape``. Saving is
atomic (temporary file, then rename) and never overwrites a file unless asked.

Examples
--------
>>> import lpcv, tempfile, os
>>> m = lpcv.zoo.reference("fmnist-lenet300")
>>> path = os.path.join(tempfile.mkdtemp(), "copy.onnx")
>>> lpcv.save(m, path)
>>> lpcv.load(path).num_parameters() == m.num_parameters()
True
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from .exceptions import ModelError, ONNXLoadError, UnsupportedError, ValidationError
from .graph import Model, Node, ValueInfo

__all__ = ["load", "save", "to_onnx", "from_onnx", "MIN_OPSET"]

#: Oldest default-domain opset lpcv reads.
MIN_OPSET = 11
#: Protobuf cannot hold more than 2 GiB; larger models use external data.
_PROTOBUF_LIMIT = 2 ** 31 - 1


def load(source: Union[str, os.PathLike, bytes], *, fold: bool = True,
         check_finite: bool = True) -> Model:
    """Read an ONNX model.

    Parameters
    ----------
    source : str, path-like or bytes
        A ``.onnx`` file (external-data tensors are read from its folder) or
        the serialized model itself.
    fold : bool, default True
        Fold constant sub-graphs (shape arithmetic, Constant nodes) into
        initializers.
    check_finite : bool, default True
        Reject floating-point initializers (and ``Constant`` values) that
        contain NaN or Inf.

    Returns
    -------
    Model

    Raises
    ------
    ONNXLoadError
        When the file is missing, truncated, corrupt or not ONNX.
    ModelError
        When the graph is malformed (cycles, dangling inputs, non-finite
        weights, ...).
    UnsupportedError
        When the opset is older than 11.
    """
    import onnx

    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        base_dir = None
        where = "<bytes>"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise ONNXLoadError(f"ONNX file {where!r} does not exist or is not a file")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ONNXLoadError(f"cannot read ONNX file {where!r} ({e.strerror or e})") from None
        base_dir = str(path.parent)
    else:
        raise ValidationError(f"source must be a path or bytes, got {type(source).__name__}")
    if not data:
        raise ONNXLoadError(f"{where}: the file is empty")
    try:
        proto = onnx.ModelProto()
        proto.ParseFromString(data)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise ONNXLoadError(f"{where}: not a valid ONNX protobuf ({e})") from None
    if not proto.HasField("graph") or proto.ir_version == 0:
        raise ONNXLoadError(f"{where}: parsed, but holds no ONNX graph (ir_version "
                            f"{proto.ir_version}); is this really an ONNX model?")
    if base_dir is not None and _uses_external_data(proto):
        try:
            from onnx.external_data_helper import load_external_data_for_model
            load_external_data_for_model(proto, base_dir)
        except Exception as e:
            raise ONNXLoadError(f"{where}: cannot read external data ({e})") from None
    elif base_dir is None and _uses_external_data(proto):
        raise ONNXLoadError("the model keeps tensors in external files; load it from a path, "
                            "not from bytes")
    return from_onnx(proto, fold=fold, check_finite=check_finite, where=where)


def _uses_external_data(proto) -> bool:
    import onnx
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)


def from_onnx(proto, *, fold: bool = True, check_finite: bool = True,
              where: str = "<model>") -> Model:
    """Convert an ``onnx.ModelProto`` into a :class:`Model`."""
    from onnx import helper, numpy_helper

    opset = None
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = int(imp.version)
    if opset is None:
        raise ONNXLoadError(f"{where}: no default-domain opset import")
    if opset < MIN_OPSET:
        raise UnsupportedError(f"{where}: opset {opset} is older than {MIN_OPSET}, the oldest "
                               "lpcv reads; convert it with onnx.version_converter first")
    newest = _newest_opset()
    if newest is not None and opset > newest:
        raise UnsupportedError(f"{where}: opset {opset} is newer than {newest}, the newest the "
                               "installed onnx package defines")
    g = proto.graph
    try:
        inits: Dict[str, np.ndarray] = {}
        for t in g.initializer:
            name = _text(t.name, "an initializer name", where)
            if not name:
                raise ModelError(f"{where}: an initializer has no name")
            if name in inits:
                raise ModelError(f"{where}: initializer {name!r} is defined twice")
            inits[name] = _tensor_to_numpy(t, numpy_helper)
        for sp in g.sparse_initializer:
            raise UnsupportedError(f"{where}: sparse initializer {sp.values.name!r} is not supported")
        nodes: List[Node] = []
        used = set()
        for i, n in enumerate(g.node):
            op = _text(n.op_type, f"the op type of node {i}", where)
            name = _text(n.name, f"the name of node {i}", where) or f"{op}_{i}"
            while name in used:  # ONNX does not require unique node names; lpcv does
                name = f"{name}_{i}"
            used.add(name)
            attrs = {}
            for a in n.attribute:
                if a.type in (a.GRAPH, a.GRAPHS):
                    raise UnsupportedError(
                        f"{where}: node {name!r} ({op}) has a sub-graph "
                        "attribute; control flow (If, Loop, Scan) is not supported")
                v = helper.get_attribute_value(a)
                if a.type == a.TENSOR:
                    v = _tensor_to_numpy(v, numpy_helper)
                elif a.type == a.STRING:
                    v = v.decode("utf-8", errors="replace")
                elif a.type == a.STRINGS:
                    v = [s.decode("utf-8", errors="replace") for s in v]
                elif a.type in (a.INTS, a.FLOATS):
                    v = list(v)
                elif a.type not in (a.INT, a.FLOAT):
                    raise UnsupportedError(
                        f"{where}: node {name!r} ({op}): attribute {a.name!r} has type "
                        f"{a.type}, which lpcv does not read")
                attrs[_text(a.name, f"an attribute name of node {name!r}", where)] = v
            what = f"node {name!r} ({op})"
            nodes.append(Node(op, name, [_text(t, f"an input of {what}", where) for t in n.input],
                              [_text(t, f"an output of {what}", where) for t in n.output],
                              attrs, _text(n.domain, f"the domain of {what}", where)))
        inputs = [_value_info(v, where) for v in g.input if v.name not in inits]
        outputs = [_value_info(v, where) for v in g.output]
    except (ModelError, UnsupportedError):
        raise
    except Exception as e:
        raise ONNXLoadError(f"{where}: malformed ONNX content ({type(e).__name__}: {e})") from None
    if not outputs:
        raise ModelError(f"{where}: the graph has no outputs")
    if check_finite:
        for k, v in inits.items():
            if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v)):
                raise ModelError(f"{where}: initializer {k!r} contains NaN or Inf values")
        for n in nodes:  # Constant nodes are initializers in disguise
            if n.op != "Constant":
                continue
            for k, v in n.attrs.items():
                arr = np.asarray(v)
                if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
                    raise ModelError(f"{where}: Constant node {n.name!r} ({k}) contains NaN "
                                     "or Inf values")
    metadata = {_text(p.key, "a metadata key", where): _text(p.value, "a metadata value", where)
                for p in proto.metadata_props}
    for arr in inits.values():  # freshly decoded and ours: freeze instead of copying
        arr.flags.writeable = False
    model = Model(nodes, inputs, outputs, inits, opset=opset,
                  name=_text(g.name, "the graph name", where) or "model",
                  metadata=metadata, copy_arrays=False)
    if fold:
        from .transforms import fold_constants
        model = fold_constants(model)
    return model


def _text(value, what: str, where: str) -> str:
    """A protobuf string field as ``str`` (protobuf returns bytes for invalid UTF-8)."""
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except (UnicodeDecodeError, TypeError):
        raise ONNXLoadError(f"{where}: {what} is not valid UTF-8 text ({value!r:.60})") from None


def _newest_opset() -> Optional[int]:
    try:
        from onnx.defs import onnx_opset_version
        return int(onnx_opset_version())
    except Exception:  # pragma: no cover - very old onnx
        return None


def _tensor_to_numpy(t, numpy_helper) -> np.ndarray:
    dims = list(t.dims)
    if any(d < 0 for d in dims):
        raise ModelError(f"tensor {t.name!r} has negative dimensions {dims}")
    n = int(np.prod(dims, dtype=np.float64))
    if n > 2 ** 36:
        raise ModelError(f"tensor {t.name!r} claims {n:.3g} elements, more than lpcv accepts")
    arr = numpy_helper.to_array(t)
    if arr.size != n:
        raise ModelError(f"tensor {t.name!r}: its data holds {arr.size} elements, its dims "
                         f"{dims} say {n}")
    # np.asarray keeps 0-d scalars 0-d (np.ascontiguousarray would make them 1-d).
    return np.asarray(arr, order="C")


def _value_info(v, where: str) -> ValueInfo:
    from onnx import helper
    name = _text(v.name, "a graph input/output name", where)
    if not v.type.HasField("tensor_type"):
        raise UnsupportedError(f"{where}: graph input/output {name!r} is not a tensor")
    tt = v.type.tensor_type
    try:
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
    except Exception:
        raise ONNXLoadError(f"{where}: {name!r} has unknown element type {tt.elem_type}") from None
    shape = []
    if tt.HasField("shape"):
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                if d.dim_value < 0:
                    raise ModelError(f"{where}: {name!r} has negative dimension {d.dim_value}")
                shape.append(int(d.dim_value))
            else:
                shape.append(_text(d.dim_param, f"a dimension name of {name!r}", where) or None)
    return ValueInfo(name, tuple(shape), dtype)


# ---------------------------------------------------------------------- save
def to_onnx(model: Model, *, producer: str = "lpcv"):
    """Convert a :class:`Model` into an ``onnx.ModelProto``."""
    import onnx
    from onnx import helper, numpy_helper

    from ._version import __version__

    nodes = []
    for n in model.nodes:
        attrs = {}
        for k, v in n.attrs.items():
            if isinstance(v, np.ndarray):
                attrs[k] = numpy_helper.from_array(v)
            elif isinstance(v, (list, tuple)) and not v:
                attrs[k] = helper.make_attribute(k, [], attr_type=onnx.AttributeProto.INTS)
            else:
                attrs[k] = v
        node = helper.make_node(n.op, n.inputs, n.outputs, name=n.name, domain=n.domain or None)
        for k, v in attrs.items():
            node.attribute.append(v if isinstance(v, onnx.AttributeProto)
                                  else helper.make_attribute(k, v))
        nodes.append(node)
    inits = [numpy_helper.from_array(np.asarray(v, order="C"), name=k)
             for k, v in model.initializers.items()]

    def vi(v: ValueInfo):
        return helper.make_tensor_value_info(
            v.name, helper.np_dtype_to_tensor_dtype(v.dtype),
            [d if d is not None else None for d in v.shape])

    graph = helper.make_graph(nodes, model.name, [vi(v) for v in model.inputs],
                              [vi(v) for v in model.outputs], inits)
    domains = {n.domain for n in model.nodes if n.domain not in ("", "ai.onnx")}
    opsets = [helper.make_opsetid("", model.opset)] + [helper.make_opsetid(d, 1) for d in sorted(domains)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name=producer,
                              producer_version=__version__)
    # ONNX IR version matching the opset, so older runtimes accept the file.
    proto.ir_version = min(proto.ir_version, _ir_version_for(model.opset))
    for k, v in model.metadata.items():
        p = proto.metadata_props.add()
        p.key, p.value = str(k), str(v)
    return proto


def _ir_version_for(opset: int) -> int:
    from onnx import helper
    # VERSION_TABLE rows: (release, ir_version, default opset, ...); the first
    # release that introduced an opset gives the oldest IR version carrying it.
    table: Dict[int, int] = {}
    for row in helper.VERSION_TABLE:
        table.setdefault(int(row[2]), int(row[1]))
    return table.get(opset, max(table.values()))


def save(model: Model, path: Union[str, os.PathLike], *, overwrite: bool = False,
         external_data: Optional[bool] = None) -> None:
    """Write ``model`` as an ONNX file, atomically.

    Parameters
    ----------
    model : Model
    path : str or path-like
        Destination ``.onnx`` file.
    overwrite : bool, default False
        Replace an existing file. Without it an existing file raises
        ``FileExistsError`` and is left untouched.
    external_data : bool, optional
        Keep weights in ``<path>.data`` beside the model. Default: only when
        the model would exceed protobuf's 2 GiB limit.

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is False.
    """
    if not isinstance(model, Model):
        raise ValidationError(f"model must be an lpcv.Model, got {type(model).__name__}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise ValidationError(f"path: folder {str(path.parent)!r} does not exist")
    proto = to_onnx(model)
    weight_bytes = sum(v.nbytes for v in model.initializers.values())
    if external_data is None:
        external_data = weight_bytes > _PROTOBUF_LIMIT - (64 << 20)
    data_name = path.name + ".data"
    if external_data:
        from onnx.external_data_helper import convert_model_to_external_data
        convert_model_to_external_data(proto, all_tensors_to_one_file=True,
                                       location=data_name, size_threshold=1024)
        data_path = path.parent / data_name
        if data_path.exists() and not overwrite:
            raise FileExistsError(f"{str(data_path)!r} exists; pass overwrite=True")
        _write_external(proto, path.parent, data_name)
    _atomic_write(path, proto.SerializeToString())


def _write_external(proto, folder: Path, data_name: str) -> None:
    """Write external tensors into a temporary file, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".lpcv-", suffix=".data")
    try:
        with os.fdopen(fd, "wb") as f:
            for t in proto.graph.initializer:
                if t.HasField("raw_data") and t.data_location == t.EXTERNAL:
                    offset = f.tell()
                    f.write(t.raw_data)
                    del t.external_data[:]
                    for k, v in (("location", data_name), ("offset", str(offset)),
                                 ("length", str(len(t.raw_data)))):
                        e = t.external_data.add()
                        e.key, e.value = k, v
                    t.ClearField("raw_data")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / data_name)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lpcv-", suffix=".onnx")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
