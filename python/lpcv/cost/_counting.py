"""Per-layer counts (MACs, other operations, bytes) of a lowered model.

Layers are the ops lpcv's runtime executes: BatchNorm folded into the
convolution before it, activations and residual additions fused into the op
they follow. Pricing what really runs is what lets predictions be compared
with :meth:`lpcv.Session.profile`, row by row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..graph import Model
from ..runtime import _LOGISTIC, _SWISH, _TANH
from .storage import BITS, WeightFormat, default_format, storage_bytes

# Non-MAC operations per output element of the lowered element-wise ops.
_SOFTMAX_OPS = 4   # subtract max, exp, sum, divide
_BN_OPS = 2        # scale and shift
# Activations built on exp (sigmoid, tanh, swish): oneDNN evaluates exp as a
# range reduction, a degree-5 polynomial and a rescale, then adds and divides:
# about 20 vector instructions per element, plus a division that keeps the
# divider busy for about as long again (10 cycles a vector against 0.5 for an
# FMA), where a ReLU is one instruction. Counted as 20, EfficientNet's
# swish-fused 1x1 and depthwise convolutions at batch 16 were predicted
# 10-30 % too fast (held-out layers within ±20 %: 69 % at 40, 68 % at 20).
_EXP_ACTIVATION_OPS = 40


def _activation_ops(alg: int) -> int:
    """Operations per element of a runtime activation (``runtime`` alg code)."""
    if alg == _SWISH:   # x · sigmoid(x): one multiply more
        return _EXP_ACTIVATION_OPS + 1
    return _EXP_ACTIVATION_OPS if alg in (_LOGISTIC, _TANH) else 1


@dataclass
class LayerCount:
    """What one executed layer computes and moves."""

    name: str                 # lowered op name (fused node names joined by '+')
    nodes: List[str]          # original node names
    op: str                   # lowered op (Conv, Gemm, Pool, Eltwise, ...)
    op_class: str             # one of OP_CLASSES
    precision: str
    macs: int = 0
    other_ops: int = 0
    params: int = 0
    weight_bytes: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    output_shape: tuple = ()
    inputs: List[str] = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)
    regime: str = ""          # op_class, or "conv1x1" / "concat" (see device.REGIMES)
    reorder_bytes: int = 0    # bytes (read + written) of input layout conversions, predicted
    weight_reads: int = 1     # times the weights are streamed (see count_layers)
    compute_macs: int = 0     # MACs the kernel runs (depthwise: padding taps skipped)
    weight_traffic: int = 0   # weight bytes the kernel reads (taps never on input are skipped)
    lane_channels: int = 0    # channels the kernel spreads over vector lanes (0: none)
    in_place: bool = False    # writes its output over its first input (the runtime's aliasing)
    primitives: int = 1       # oneDNN primitives the runtime runs for it (a split: one per output)


def lower(model: Model, batch_size: int):
    """The runtime's lowering (fusion and folding) of ``model``."""
    from ..runtime import _Lowered
    return _Lowered(model, batch_size, numeric=False)


def count_layers(low, formats: Optional[Mapping[str, WeightFormat]] = None,
                 activation_precision: str = "fp32", channel_block: int = 16) -> List[LayerCount]:
    """Counts for every executed op of a lowered model (views are free).

    ``channel_block`` is the channel block of the runtime's blocked layout
    (the device's vector lanes): tensors in it are padded to a multiple of it.
    """
    formats = dict(formats or {})
    inits = low.model.initializers
    act_bytes = BITS[activation_precision] / 8
    name_of = [t[0] for t in low.tensors]
    layers: List[LayerCount] = []
    infos = low.infos

    def nbytes(t: str) -> float:
        # Quantized (integer) activations are priced at their own width.
        dtype = infos[t].dtype
        return infos[t].size * (dtype.itemsize if dtype.kind in "iu" else act_bytes)

    last_use = {name_of[i]: k for k, (_, _, ins, _, _) in enumerate(low.ops) for i in ins if i >= 0}
    graph_outputs = {v.name for v in low.model.outputs}
    for step, (op, lname, ins, outs, attrs) in enumerate(low.ops):
        in_names = [name_of[i] for i in ins if i >= 0]
        out_names = [name_of[i] for i in outs if i >= 0]
        out_elems = sum(infos[o].size for o in out_names)
        weights = [t for t in in_names if t in inits]
        data_in = [t for t in in_names if t not in inits]
        n_post = sum(_activation_ops(int(a)) for a in attrs.get("post_algs", []))
        tap_share = 1.0   # share of the weights' kernel taps that ever touch real input
        # The runtime's integer kernels (QDQ patterns) compute in int8.
        int8 = op in ("QConv", "QMatMul", "QAdd")
        layer = LayerCount(lname, list(low.sources.get(lname, [lname])), op, "eltwise",
                           "int8" if int8 else activation_precision, inputs=in_names,
                           outputs=out_names,
                           output_shape=tuple(infos[out_names[0]].shape) if out_names else ())
        if int8 and op != "QAdd":
            op = "Conv" if op == "QConv" else "MatMul"
        if op == "View":
            # Free unless its input must first be converted to the plain
            # layout (decided below); then a "Reorder" layer.
            layer.op, layer.op_class = "Reorder", "data"
            layers.append(layer)
            continue
        if op == "Conv":
            w = infos[in_names[1]].shape
            group = int(attrs.get("group", 1))
            y = infos[out_names[0]].shape
            layer.macs = int(np.prod(y, dtype=np.int64) * w[1] * np.prod(w[2:], dtype=np.int64))
            pairs, used_taps = _taps_on_input(infos[in_names[0]].shape[2:], w[2:], y[2:], attrs)
            tap_share = used_taps / int(np.prod(w[2:], dtype=np.int64))
            cin = infos[in_names[0]].shape[1]
            layer.op_class = "depthwise" if group > 1 and cin // group == 1 else "conv"
            # Depthwise kernels skip the taps on padding; dense ones run
            # them: counting every tap, oneDNN ran 3×3 convolutions on 7×7
            # maps at the rate of those on 56×56 maps (counting only taps
            # on input, 20 % slower).
            layer.compute_macs = (int(y[0] * y[1] * w[1] * pairs)
                                  if layer.op_class == "depthwise" else layer.macs)
            # Vectors run along output channels (of a group); a depthwise
            # convolution's groups are its channels.
            layer.lane_channels = int(y[1] if layer.op_class == "depthwise" else y[1] // group)
            if layer.op_class == "conv" and all(int(k) == 1 for k in w[2:]):
                layer.regime = "conv1x1"
            layer.other_ops = out_elems * (n_post + (1 if len(in_names) > 2 else 0))
            if int(np.prod(y[2:], dtype=np.int64)) == 1:
                # One output position per image (squeeze-excite, classifier
                # convs): a direct convolution loops over the images and
                # streams the weights once per image, with no spatial work
                # to hide the re-reads behind.
                layer.weight_reads = int(y[0])
                if layer.op_class == "conv":
                    layer.regime = "conv_per_image"
        elif op in ("Gemm", "MatMul"):
            a = infos[in_names[0]].shape
            y = infos[out_names[0]].shape
            k = a[-1] if not (op == "Gemm" and attrs.get("transA")) else a[0]
            layer.macs = int(np.prod(y, dtype=np.int64) * k)
            layer.op_class = "gemm"
            layer.lane_channels = int(y[-1])   # output features
            layer.other_ops = out_elems * (n_post + (1 if len(in_names) > 2 else 0))
        elif op == "Pool":
            layer.op_class = "pool"
            layer.other_ops = int(out_elems * np.prod(attrs["kernel"], dtype=np.int64))
            if int(np.prod(infos[out_names[0]].shape[2:], dtype=np.int64)) == 1:
                layer.regime = "global_pool"
        elif op == "BatchNormalization":
            layer.other_ops = out_elems * _BN_OPS
            weights, data_in = in_names[1:5], [in_names[0]]
        elif op == "Softmax":
            layer.other_ops = out_elems * _SOFTMAX_OPS
        elif op == "Eltwise":
            layer.other_ops = out_elems * (_activation_ops(int(attrs["alg"])) + n_post)
        elif op == "Binary":
            layer.other_ops = out_elems * (1 + n_post)
        elif op in ("QAdd", "Quantize", "Dequantize"):
            layer.other_ops = out_elems * (3 if op == "QAdd" else 1)
        else:  # Concat, Split, Transpose, Copy, Pad: data movement only
            layer.op_class = "data"
            if op == "Concat":
                layer.regime = "concat"
            elif op == "Split":
                layer.primitives = max(len(out_names), 1)
        for t in weights:
            arr = inits[t]
            fmt = formats.get(t) or formats.get(lname) or default_format(arr)
            layer.weight_bytes += storage_bytes(arr, fmt)["total"]
            if np.issubdtype(arr.dtype, np.floating) or (int8 and arr.dtype.kind in "iu"):
                layer.params += int(arr.size)
        # The runtime runs element-wise ops in place when their first input
        # has the output's shape, is read by no later op and is not a
        # model output.
        layer.in_place = (op in ("Eltwise", "Binary", "BatchNormalization") and bool(data_in)
                          and infos[data_in[0]].size == out_elems
                          and last_use.get(data_in[0]) == step and data_in[0] not in graph_outputs)
        layer.input_bytes = int(sum(nbytes(t) for t in data_in))
        layer.output_bytes = int(sum(nbytes(t) for t in out_names))
        layer.regime = layer.regime or layer.op_class
        layer.compute_macs = layer.compute_macs or layer.macs
        layer.weight_traffic = int(round(layer.weight_bytes * tap_share))
        layers.append(layer)
    _predict_reorders(low, layers, nbytes, max(int(channel_block), 1))
    views = [layer for layer in layers if layer.op == "Reorder"]
    for layer in views:
        layer.input_bytes = layer.output_bytes = layer.reorder_bytes // 2
        layer.regime = "data"
    return [layer for layer in layers if layer.op != "Reorder" or layer.reorder_bytes]


def _taps_on_input(in_size, kernel, out_size, attrs) -> Tuple[int, int]:
    """(output position, kernel tap) pairs, over all spatial axes, whose input
    lies inside the unpadded input, and the kernel taps that ever do.

    oneDNN's depthwise convolutions skip the taps on padding, which on
    small maps are a large share (a 3×3 kernel on a 2×2 map: 4 of 9 per
    output); the weights of a tap that never touches the input (all but the
    centre one of a padded 3×3 kernel on a 1×1 map) are never read.
    """
    nd = len(kernel)
    strides = attrs.get("strides", [1] * nd)
    dilations = attrs.get("dilations", [1] * nd)
    pads = attrs.get("pads", [0] * (2 * nd))
    pairs = used = 1
    for i in range(nd):
        pos = (np.arange(int(out_size[i]))[:, None] * int(strides[i]) - int(pads[i])
               + np.arange(int(kernel[i]))[None, :] * int(dilations[i]))
        inside = (pos >= 0) & (pos < int(in_size[i]))
        pairs *= int(inside.sum())
        used *= int(inside.any(axis=0).sum())
    return pairs, used


# Channels up to which oneDNN runs a convolution straight on the plain (NCHW)
# model input, writing a blocked layout, instead of converting the input.
_PLAIN_INPUT_CHANNELS = 4


def vectors(channels: int, lanes: int) -> int:
    """Vectors of ``lanes`` lanes that hold ``channels`` (the last one padded)."""
    return -(-channels // max(lanes, 1))


def lane_use(channels: int, lanes: int) -> float:
    """Share of vector lanes doing useful work when a kernel spreads
    ``channels`` over vectors of ``lanes`` (the last vector is padded: 6
    channels fill 0.375 of a 16-lane vector)."""
    if channels <= 0 or lanes <= 1:
        return 1.0
    return channels / (vectors(channels, lanes) * lanes)


def _blocked_padding(shape, block: int) -> float:
    """Bytes of a tensor in the blocked layout (channels in blocks of
    ``block``, the last one padded) over its own bytes."""
    return 1.0 / lane_use(int(shape[1]), block) if len(shape) >= 3 else 1.0


def _predict_reorders(low, layers: List[LayerCount], nbytes, block: int = 16) -> None:
    """Predict which inputs the runtime converts to another memory layout.

    The runtime lets oneDNN choose layouts (``format_tag::any``). On x86 its
    convolutions keep activations channels-last, except a first convolution
    on the plain model input with few channels, which writes a blocked
    layout; pooling and element-wise ops keep their input's layout. A
    convolution whose input (or residual operand) comes in another layout
    pays a conversion reading and writing that tensor.

    The blocked layout pads channels to a multiple of ``block``: its writer,
    the layers that keep it and the conversion out of it move the padded
    bytes (LeNet-5's 6 channels take 16: its first pooling ran 1.6x and the
    conversion after it 2x slower than their unpadded bytes predicted).
    """
    inits = low.model.initializers
    layout: Dict[str, str] = {v.name: "plain" for v in low.model.inputs}
    converted = set()   # (tensor, layout): a conversion is made once and reused
    name_of = [t[0] for t in low.tensors]
    by_name = {layer.name: layer for layer in layers}

    def padding(t):
        return _blocked_padding(low.infos[t].shape, block) if layout.get(t) == "blocked" else 1.0

    def convert(layer, tensors, want, reuse=True):
        for t in tensors:
            if layout.get(t, "plain") != want and not (reuse and (t, want) in converted):
                converted.add((t, want))
                if layer is not None:
                    layer.reorder_bytes += int(round((padding(t) + 1) * nbytes(t)))

    for op, lname, ins, outs, _ in low.ops:
        in_names = [name_of[i] for i in ins if i >= 0]
        out_names = [name_of[i] for i in outs if i >= 0]
        data_in = [t for t in in_names if t not in inits]
        first = layout.get(data_in[0], "plain") if data_in else "plain"
        layer = by_name.get(lname)
        if op in ("Conv", "QConv"):
            cin = low.infos[data_in[0]].shape[1] if data_in else 0
            if first == "plain" and cin <= _PLAIN_INPUT_CHANNELS:
                out = "blocked"
                data_in = data_in[1:]
            else:
                out = "nhwc"
            convert(layer, data_in[:1], "nhwc")
            # A residual operand is converted into the output buffer (a sum
            # post-op works in place), so that conversion is never shared.
            convert(layer, data_in[1:], "nhwc", reuse=False)
        elif op == "View":
            # A reshape needs (and converts to) the plain layout, unless the
            # input has no spatial extent: then every layout is the same bytes.
            if data_in and int(np.prod(low.infos[data_in[0]].shape[2:], dtype=np.int64)) > 1:
                convert(layer, data_in[:1], "plain")
            out = "plain"
        elif op == "Concat":
            # Inputs in different layouts leave oneDNN only its reference
            # concatenation (ShuffleNet's units: a split half and a
            # convolution's output).
            if layer is not None and len({layout.get(t, "plain") for t in data_in}) > 1:
                layer.regime = "concat_mixed"
            out = first
        elif op in ("Transpose", "Split"):
            # Permutations and splits are reorders themselves and write the
            # plain layout.
            out = "plain"
        elif op in ("Gemm", "MatMul", "QMatMul"):
            out = "plain"
        else:
            out = first
        for t in out_names:
            layout[t] = out
        if layer is not None and out == "blocked" and op not in ("View", "Concat"):
            # Writing, or reading and writing, padded blocks: a pooling or
            # element-wise op also runs the padding lanes.
            pad = [padding(t) for t in out_names]
            extra = sum((p - 1) * nbytes(t) for p, t in zip(pad, out_names))
            layer.output_bytes += int(round(extra))
            if op not in ("Conv", "QConv"):
                layer.input_bytes += int(round(sum((padding(t) - 1) * nbytes(t)
                                                   for t in data_in)))
                layer.other_ops = int(round(layer.other_ops * max(pad)))


def view_sources(low, exclude=()) -> Dict[str, str]:
    """The tensor whose bytes each view (reshape) output is, through chains
    of views. Views named in ``exclude`` (layout conversions priced as
    layers, which write a tensor of their own) are sources themselves."""
    name_of = [t[0] for t in low.tensors]
    source: Dict[str, str] = {}
    for op, lname, ins, outs, _ in low.ops:
        if op == "View" and lname not in exclude and ins and ins[0] >= 0:
            src = name_of[ins[0]]
            source.update((name_of[o], source.get(src, src)) for o in outs if o >= 0)
    return source


def tensor_lifetimes(low, activation_precision: str = "fp32"):
    """(sizes, birth, death) of every activation tensor in execution order.

    Views (reshapes) share their source's memory: they add no bytes but keep
    the source alive as long as they are.
    """
    name_of = [t[0] for t in low.tensors]
    inits = low.model.initializers
    act_bytes = BITS[activation_precision] / 8
    birth: Dict[str, int] = {v.name: 0 for v in low.model.inputs}
    death: Dict[str, int] = dict(birth)
    alias = view_sources(low)
    steps = 0
    for op, _, ins, outs, _ in low.ops:
        for i in ins:
            if i >= 0 and name_of[i] not in inits:
                src = alias.get(name_of[i], name_of[i])
                death[src] = max(death.get(src, steps), steps)
        for o in outs:
            if o < 0:
                continue
            if op == "View":
                continue
            birth.setdefault(name_of[o], steps)
            death.setdefault(name_of[o], steps)
        steps += 1
    for v in low.model.outputs:
        src = alias.get(v.name, v.name)
        if src in death:
            death[src] = steps
    names = sorted(birth)
    sizes = [float(low.infos[n].size * (low.infos[n].dtype.itemsize
                                        if low.infos[n].dtype.kind in "iu" else act_bytes))
             for n in names]
    return sizes, [birth[n] for n in names], [death[n] for n in names]
