"""Standard vision architectures and the reference models shipped with lpcv.

The architecture functions are named like torchvision's and follow
torchvision's definitions layer by layer, so they have exactly the published
parameter counts (ResNet-18: 11,689,512) and MAC counts. Weights are seeded
random (He-normal convolutions and linear layers, BatchNormalization with
running statistics calibrated so activations stay O(1)); use them for
profiling, cost modelling and speed work, not for accuracy. Node and weight
names follow torchvision's module paths (``layer1.0.conv1``,
``layer1.0.conv1.weight``), so a torchvision ``state_dict`` maps onto the
initializers by name.

Every model has one input ``input`` of shape ``("N", 3, resolution,
resolution)`` (float32) and one output ``logits`` of shape
``("N", num_classes)``, and uses only standard ONNX opset-17 operators
(ShuffleNetV2 additionally uses ``Split``, ``Reshape`` and ``Transpose``).

:func:`reference` loads the small models trained by this project on
Fashion-MNIST, which ship with the package; :func:`model_card` describes them.

Examples
--------
>>> from lpcv import zoo
>>> m = zoo.resnet18()
>>> m.num_parameters()
11689512
>>> m.inputs[0].name, m.inputs[0].shape, m.outputs[0].shape
('input', ('N', 3, 224, 224), ('N', 1000))
>>> zoo.mobilenet_v2(num_classes=10, width_mult=0.5).num_parameters() < 3_504_872
True
>>> "resnet50" in zoo.architectures()
True
"""
from __future__ import annotations

import importlib.resources
import json
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ._builder import GraphBuilder
from .exceptions import DataNotFoundError, ValidationError
from .graph import Model

__all__ = [
    "alexnet",
    "vgg16",
    "resnet18",
    "resnet50",
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "squeezenet1_0",
    "squeezenet1_1",
    "shufflenet_v2_x1_0",
    "efficientnet_b0",
    "architectures",
    "published",
    "reference",
    "reference_names",
    "model_card",
]

# Published parameter counts (torchvision model docs; MobileNetV1: the standard
# 1.0-224 model with BatchNormalization) and multiply-accumulate counts of the
# convolution and linear layers at 224x224 (torchvision's "GFLOPS" column,
# which counts MACs, given to two decimals; MobileNet papers for V1/V2/V3,
# the ShuffleNetV2 and EfficientNet papers).
_PUBLISHED: Dict[str, Tuple[int, float, str]] = {
    "alexnet": (61_100_840, 0.71e9, "torchvision"),
    "vgg16": (138_357_544, 15.47e9, "torchvision"),
    "resnet18": (11_689_512, 1.81e9, "torchvision"),
    "resnet50": (25_557_032, 4.09e9, "torchvision"),
    "mobilenet_v1": (4_231_976, 569e6, "Howard et al. 2017 (4.2 M, 569 M mult-adds)"),
    "mobilenet_v2": (3_504_872, 300e6, "torchvision; Sandler et al. 2018 (300 M)"),
    "mobilenet_v3_small": (2_542_856, 56e6, "torchvision; Howard et al. 2019 (56 M)"),
    "mobilenet_v3_large": (5_483_032, 219e6, "torchvision; Howard et al. 2019 (219 M)"),
    "squeezenet1_0": (1_248_424, 0.82e9, "torchvision"),
    "squeezenet1_1": (1_235_496, 0.35e9, "torchvision"),
    "shufflenet_v2_x1_0": (2_278_604, 146e6, "torchvision; Ma et al. 2018 (146 M)"),
    "efficientnet_b0": (5_288_548, 0.39e9, "torchvision; Tan & Le 2019 (0.39 B)"),
}

_TORCHVISION = "torchvision.models (v0.15+ definitions)"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """torchvision's ``_make_divisible``: round channels to a multiple of ``divisor``
    without going down by more than 10 %."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _check_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) and not hasattr(value, "__index__"):
        raise ValidationError(f"{what} must be an integer, got {value!r}")
    v = int(value)
    if v < minimum:
        raise ValidationError(f"{what} must be >= {minimum}, got {v}")
    return v


def _check_width(width_mult: Any) -> float:
    try:
        w = float(width_mult)
    except (TypeError, ValueError):
        raise ValidationError(f"width_mult must be a positive number, got {width_mult!r}") from None
    if not math.isfinite(w) or w <= 0:
        raise ValidationError(f"width_mult must be a positive number, got {width_mult!r}")
    return w


def _start(name: str, num_classes: Any, random_state: Any, resolution: Any,
           min_resolution: int = 32) -> Tuple[GraphBuilder, str, int]:
    nc = _check_int(num_classes, "num_classes")
    res = _check_int(resolution, "resolution", min_resolution)
    b = GraphBuilder(name, random_state=random_state)
    b.metadata.update({
        "architecture": name,
        "reference": _TORCHVISION if name != "mobilenet_v1" else "Howard et al. 2017",
        "weights": "random (random_state="
                   + (repr(random_state) if isinstance(random_state, (int, type(None)))
                      else type(random_state).__name__) + ")",
        "resolution": str(res),
        "num_classes": str(nc),
    })
    x = b.input("input", ("N", 3, res, res))
    return b, x, nc


def _finish(b: GraphBuilder, logits: str) -> Model:
    return b.build({"logits": logits})


def _act(b: GraphBuilder, kind: Optional[str], x: str, name: str) -> str:
    if kind is None:
        return x
    fn: Callable[..., str] = {
        "relu": b.relu, "relu6": b.relu6, "hardswish": b.hardswish, "silu": b.silu,
    }[kind]
    return fn(x, name=name)


def _cna(b: GraphBuilder, x: str, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
         act: Optional[str] = "relu", eps: float = 1e-5, gamma: float = 1.0) -> str:
    """torchvision's ``Conv2dNormActivation``: conv ``.0`` (no bias), BN ``.1``,
    activation ``.2``; padding ``(kernel - 1) // 2``."""
    y = b.conv(x, out_ch, kernel, stride, groups=groups, bias=False, name="0")
    y = b.bn(y, eps=eps, gamma=gamma, name="1")
    return _act(b, act, y, "2")


def _se(b: GraphBuilder, x: str, squeeze: int, act: str, scale_act: str) -> str:
    """torchvision's ``SqueezeExcitation``: GlobalAveragePool → fc1 (1x1 conv) →
    act → fc2 (1x1 conv) → scale activation → Mul."""
    c = b.channels(x)
    s = b.global_avgpool(x, name="avgpool")
    s = b.conv(s, squeeze, 1, name="fc1")
    s = _act(b, act, s, "activation")
    s = b.conv(s, c, 1, name="fc2")
    s = b.hardsigmoid(s, name="scale_activation") if scale_act == "hardsigmoid" \
        else b.sigmoid(s, name="scale_activation")
    return b.mul(x, s, name="scale")


# Residual branches end with a BatchNormalization whose scale is this (instead
# of 1), so the variance of the trunk grows slowly with depth.
_RESIDUAL_GAMMA = 0.5


# ---------------------------------------------------------------------------
# AlexNet, VGG
# ---------------------------------------------------------------------------
def alexnet(num_classes: int = 1000, random_state: Any = 0, resolution: int = 224) -> Model:
    """AlexNet as in torchvision (Krizhevsky 2014 "one weird trick" variant).

    Five convolutions (64, 192, 384, 256, 256 channels), three max pools,
    ``AdaptiveAvgPool2d((6, 6))`` and three linear layers with dropout.

    Parameters
    ----------
    num_classes : int
        Output classes.
    random_state : int or numpy.random.Generator
        Seed of the random weights.
    resolution : int
        Input height and width. The adaptive pooling to 6x6 is omitted when
        the feature map is already 6x6 (224 gives 6x6) and becomes an
        ``AveragePool`` when it is a multiple of 6 (e.g. 415 gives 12x12).

    Returns
    -------
    Model
        61,100,840 parameters at 1000 classes.

    Raises
    ------
    ShapeError
        When the resolution gives a feature map that is not a multiple of 6x6.

    Examples
    --------
    >>> alexnet().num_parameters()
    61100840
    """
    b, x, nc = _start("alexnet", num_classes, random_state, resolution, 63)
    with b.scope("features"):
        x = b.relu(b.conv(x, 64, 11, 4, pad=2, name="0"), name="1")
        x = b.maxpool(x, 3, 2, name="2")
        x = b.relu(b.conv(x, 192, 5, pad=2, name="3"), name="4")
        x = b.maxpool(x, 3, 2, name="5")
        x = b.relu(b.conv(x, 384, 3, pad=1, name="6"), name="7")
        x = b.relu(b.conv(x, 256, 3, pad=1, name="8"), name="9")
        x = b.relu(b.conv(x, 256, 3, pad=1, name="10"), name="11")
        x = b.maxpool(x, 3, 2, name="12")
    x = b.adaptive_avgpool(x, 6, name="avgpool")
    x = b.flatten(x, name="flatten")
    with b.scope("classifier"):
        x = b.dropout(x, 0.5, name="0")
        x = b.relu(b.linear(x, 4096, name="1"), name="2")
        x = b.dropout(x, 0.5, name="3")
        x = b.relu(b.linear(x, 4096, name="4"), name="5")
        x = b.linear(x, nc, name="6")
    return _finish(b, x)


def vgg16(num_classes: int = 1000, random_state: Any = 0, resolution: int = 224) -> Model:
    """VGG-16 (configuration D) without batch normalization, as in torchvision.

    Thirteen 3x3 convolutions in five blocks separated by 2x2 max pools,
    ``AdaptiveAvgPool2d((7, 7))`` and three linear layers (4096, 4096,
    ``num_classes``) with ReLU and dropout.

    Parameters
    ----------
    num_classes : int
        Output classes.
    random_state : int or numpy.random.Generator
        Seed of the random weights.
    resolution : int
        Input height and width. The adaptive pooling to 7x7 is omitted when
        the feature map is already 7x7 (224) and becomes an ``AveragePool``
        when it is a multiple of 7 (e.g. 448).

    Returns
    -------
    Model
        138,357,544 parameters at 1000 classes.

    Raises
    ------
    ShapeError
        When the resolution gives a feature map that is not a multiple of 7x7.

    Examples
    --------
    >>> vgg16(num_classes=10).outputs[0].shape
    ('N', 10)
    """
    b, x, nc = _start("vgg16", num_classes, random_state, resolution, 32)
    cfg: List[Any] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                      512, 512, 512, "M", 512, 512, 512, "M"]
    i = 0
    with b.scope("features"):
        for v in cfg:
            if v == "M":
                x = b.maxpool(x, 2, 2, name=str(i))
                i += 1
            else:
                x = b.conv(x, v, 3, pad=1, name=str(i))
                x = b.relu(x, name=str(i + 1))
                i += 2
    x = b.adaptive_avgpool(x, 7, name="avgpool")
    x = b.flatten(x, name="flatten")
    with b.scope("classifier"):
        x = b.relu(b.linear(x, 4096, name="0"), name="1")
        x = b.dropout(x, 0.5, name="2")
        x = b.relu(b.linear(x, 4096, name="3"), name="4")
        x = b.dropout(x, 0.5, name="5")
        x = b.linear(x, nc, name="6")
    return _finish(b, x)


# ---------------------------------------------------------------------------
# ResNet
# ---------------------------------------------------------------------------
def _basic_block(b: GraphBuilder, x: str, planes: int, stride: int) -> str:
    cin = b.channels(x)
    y = b.relu(b.bn(b.conv(x, planes, 3, stride, pad=1, bias=False, name="conv1"), name="bn1"),
               name="relu")
    y = b.bn(b.conv(y, planes, 3, 1, pad=1, bias=False, name="conv2"), name="bn2",
             gamma=_RESIDUAL_GAMMA)
    idt = x
    if stride != 1 or cin != planes:
        with b.scope("downsample"):
            idt = b.bn(b.conv(x, planes, 1, stride, pad=0, bias=False, name="0"), name="1")
    return b.relu(b.add(y, idt, name="add"), name="relu_1")


def _bottleneck(b: GraphBuilder, x: str, planes: int, stride: int) -> str:
    # ResNet v1.5: the stride is on the 3x3 convolution.
    cin = b.channels(x)
    out = planes * 4
    y = b.relu(b.bn(b.conv(x, planes, 1, 1, pad=0, bias=False, name="conv1"), name="bn1"),
               name="relu")
    y = b.relu(b.bn(b.conv(y, planes, 3, stride, pad=1, bias=False, name="conv2"), name="bn2"),
               name="relu_1")
    y = b.bn(b.conv(y, out, 1, 1, pad=0, bias=False, name="conv3"), name="bn3",
             gamma=_RESIDUAL_GAMMA)
    idt = x
    if stride != 1 or cin != out:
        with b.scope("downsample"):
            idt = b.bn(b.conv(x, out, 1, stride, pad=0, bias=False, name="0"), name="1")
    return b.relu(b.add(y, idt, name="add"), name="relu_2")


def _resnet(name: str, block: Callable[..., str], layers: Sequence[int], num_classes: Any,
            random_state: Any, resolution: Any) -> Model:
    b, x, nc = _start(name, num_classes, random_state, resolution, 32)
    x = b.relu(b.bn(b.conv(x, 64, 7, 2, pad=3, bias=False, name="conv1"), name="bn1"), name="relu")
    x = b.maxpool(x, 3, 2, pad=1, name="maxpool")
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
        with b.scope(f"layer{li + 1}"):
            for j in range(n):
                with b.scope(j):
                    x = block(b, x, planes, 2 if (j == 0 and li > 0) else 1)
    x = b.global_avgpool(x, name="avgpool")
    x = b.flatten(x, name="flatten")
    return _finish(b, b.linear(x, nc, name="fc"))


def resnet18(num_classes: int = 1000, random_state: Any = 0, resolution: int = 224) -> Model:
    """ResNet-18 (He et al. 2016) as in torchvision: BasicBlocks ``[2, 2, 2, 2]``.

    Parameters
    ----------
    num_classes : int
        Output classes.
    random_state : int or numpy.random.Generator
        Seed of the random weights.
    resolution : int
        Input height and width.

    Returns
    -------
    Model
        11,689,512 parameters at 1000 classes.

    Examples
    --------
    >>> resnet18().num_parameters()
    11689512
    """
    return _resnet("resnet18", _basic_block, (2, 2, 2, 2), num_classes, random_state, resolution)


def resnet50(num_classes: int = 1000, random_state: Any = 0, resolution: int = 224) -> Model:
    """ResNet-50 v1.5 as in torchvision: Bottlenecks ``[3, 4, 6, 3]``, stride on the 3x3.

    Parameters
    ----------
    num_classes : int
        Output classes.
    random_state : int or numpy.random.Generator
        Seed of the random weights.
    resolution : int
        Input height and width.

    Returns
    -------
    Model
        25,557,032 parameters at 1000 classes.

    Examples
    --------
    >>> resnet50().num_parameters()
    25557032
    """
    return _resnet("resnet50", _bottleneck, (3, 4, 6, 3), num_classes, random_state, resolution)


# ---------------------------------------------------------------------------
# MobileNets
# ---------------------------------------------------------------------------
def mobilenet_v1(num_classes: int = 1000, random_state: Any = 0, resolution: int = 224,
                 width_mult: float = 1.0) -> Model:
    """MobileNetV1 (Howard et al. 2017): a 3x3 convolution and 13 depthwise-separable blocks.

    Each block is a 3x3 depthwise convolution, BN, ReLU, a 1x1 pointwise
    convolution, BN, ReLU (the paper's Figure 3; convolutions have no bias).
    Global average pooling and a linear classifier follow. There is no
    torchvision version; names follow the same conventions
    (``features.<i>.<j>``, ``fc``).

    Parameters
    ----------
    num_classes : int
        Output classes.
    random_state : int or numpy.random.Generator
        Seed of the random weights.
    resolution : int
        Input height and width (the paper's resolution multiplier).
    width_mult : float
        The paper's width multiplier alpha: every layer has
        ``max(8, int(channels * alpha))`` channels, as in the TF-Slim
        reference implementation (``min_depth=8``; no rounding to a multiple of 8).

    Returns
    -------
    Model
        4,231,976 parameters at width 1.0 and 1000 classes (the paper's 4.2 M).

    Examples
    --------
    >>> mobilenet_v1().num_parameters()
    4231976
    """
    w = _check_width(width_mult)
    b, x, nc = _start("mobilenet_v1", num_classes, random_state, resolution, 32)
    b.metadata["width_mult"] = repr(w)

    def ch(c: int) -> int:
        return max(8, int(c * w))

    # (output channels, stride) of the 13 depthwise-separable blocks
    cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
    with b.scope("features"):
        with b.scope(0):
            x = _cna(b, x, ch(32), 3, 2)
        for i, (c, s) in enumerate(cfg, start=1):
            with b.scope(i):
                cin = b.channels(x)
                x = b.conv(x, cin, 3, s, groups=cin, bias=False, name="0")
                x = b.relu(b.bn(x, name="1"), name="2")
                x = b.conv(x, ch(c), 1, bias=False, name="3")
                x = b.relu(b.bn(x, name="4"), name="5")
    x = b.flatten(b.global_avgpool(x, name="avgpool"), name="flatten")
    return _finish(b, b.linear(x, nc, name="fc"))


def mobilenet_v2(num_classes: int = 1000, random_state: Any = 0, resolution: int = 224,
                 width_mult: float = 1.0) -> Model:
    """MobileNetV2 (Sandler et al. 2018) as in torchvision.

    Inverted residual blocks (1x1 expansion, 3x3 depthwise, 1x1 linear
    projection, ReLU6 as ``Clip``), channels rounded with ``_make_divisible``
    to multiples of 8, last convolution 1280 channels (scaled up only when
    ``width_mult > 1``), dropout 0.2 and a linear classifier.

    Parameters
    ----------
    num_classes : int
        Output classes.
    random_state : int or numpy.random.Generator
        Seed of the random weights.
    resolution : int
        Input height and width.
    width_mult : float
        Width multiplier (torchvision's ``width_mult``).

    Returns
    -------
    Model
        3,504,872 learnable parameters at width 1.0 and 1000 classes.

    Notes
    -----
    The Clip bounds (0 and 6) and the dropout ratio are float32 scalar
    initializers; they are constants, not learnable parameters.

    Examples
    --------
    >>> m = mobilenet_v2()
    >>> m.op_types()["Clip"]
    35
    """
    w = _check_width(width_mult)
    b, x, nc = _start("mobilenet_v2", num_classes, random_state, resolution, 32)
    b.metadata["width_mult"] = repr(w)
    setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    cin = _make_divisible(32 * w, 8)
    last = _make_divisible(1280 * max(1.0, w), 8)
    idx = 0
    with b.scope("features"):
        with b.scope(idx):
            x = _cna(b, x, cin, 3, 2, act="relu6")
        for t, c, n, s in setting:
            cout = _make_divisible(c * w, 8)
            for i in range(n):
                idx += 1
                stride = s if i == 0 else 1
                inp = x
                hidden = round(b.channels(x) * t)  # torchvision: int(round(inp * t))
                res = stride == 1 and b.channels(x) == cout
                with b.scope(idx), b.scope("conv"):
                    j = 0
                    if t != 1:
                        with b.scope(j):
                            x = _cna(b, x, hidden, 1, act="relu6")
                        j += 1
                    with b.scope(j):
                        x = _cna(b, x, hidden, 3, stride, groups=hidden, act="relu6")
                    x = b.conv(x, cout, 1, bias=False, name=str(j + 1))
                    x = b.bn(x, name=str(j + 2), gamma=_RESIDUAL_GAMMA if res else 1.0)
                if res:
                    x = b.add(inp, x, name=f"{idx}.add")
        idx += 1
        with b.scope(idx):
            x = _cna(b, x, last, 1, act="relu6")
    x = b.flatten(b.global_avgpool(x, name="avgpool"), name="flatten")
    with b.scope("classifier"):
        x = b.dropout(x, 0.2, name="0")
        x = b.linear(x, nc, name="1")
    return _finish(b, x)


# (kernel, expanded, out, use_se, activation, stride) per block; the block's
# input channels are the previous block's output (16 for the first).
_V3_LARGE = [
    (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1), (5, 72, 40, True, "relu", 2),
    (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hardswish", 2), (3, 200, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1), (3, 184, 80, False, "hardswish", 1),
    (3, 480, 112, True, "hardswish", 1), (3, 672, 112, True, "hardswish", 1),
    (5, 672, 160, True, "hardswish", 2), (5, 960, 160, True, "hardswish", 1),
    (5, 960, 160, True, "hardswish", 1),
]
_V3_SMALL = [
    (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1), (5, 96, 40, True, "hardswish", 2),
    (5, 240, 40, True, "hardswish", 1), (5, 240, 40, True, "hardswish", 1),
    (5, 120, 48, True, "hardswish", 1), (5, 144, 48, True, "hardswish", 1),
    (5, 288, 96, True, "hardswish", 2), (5, 576, 96, True, "hardswish", 1),
    (5, 576, 96, True, "hardswish", 1),
]


def _mobilenet_v3(name: str, setting: Sequence[Tuple[int, int, int, bool, str, int]],
                  last_channel: int, num_classes: Any, random_state: Any, resolution: Any,
                  width_mult: Any) -> Model:
    w = _check_width(width_mult)
    b, x, nc = _start(name, num_classes, random_state, resolution, 32)
    b.metadata["width_mult"] = repr(w)
    eps = 0.001  # torchvision: BatchNorm2d(eps=0.001, momentum=0.01)

    def adjust(c: int) -> int:
        return _make_divisible(c * w, 8)

    with b.scope("features"):
        with b.scope(0):
            x = _cna(b, x, adjust(16), 3, 2, act="hardswish", eps=eps)
        for i, (k, exp, out, use_se, act, stride) in enumerate(setting, start=1):
            exp, out = adjust(exp), adjust(out)
            with b.scope(i), b.scope("block"):
                inp = x
                res = stride == 1 and b.channels(x) == out
                j = 0
                if exp != b.channels(x):
                    with b.scope(j):
                        x = _cna(b, x, exp, 1, act=act, eps=eps)
                    j += 1
                with b.scope(j):
                    x = _cna(b, x, exp, k, stride, groups=exp, act=act, eps=eps)
                j += 1
                if use_se:
                    with b.scope(j):
                        x = _se(b, x, _make_divisible(exp // 4, 8), "relu", "hardsigmoid")
                    j += 1
                with b.scope(j):
                    x = _cna(b, x, out, 1, act=None, eps=eps,
                             gamma=_RESIDUAL_GAMMA if res else 1.0)
            if res:
                x = b.add(x, inp, name=f"{i}.add")
        with b.scope(len(setting) + 1):
            x = _cna(b, x, 6 * b.channels(x), 1, act="hardswish", eps=eps)
    x = b.flatten(b.global_avgpool(x, name="avgpool"), name="flatten")
    with b.scope("classifier"):
        x = b.hardswish(b.linear(x, adjust(last_channel), name="0"), name="1")
        x = b.dropout(x, 0.2, name="2")
        x = b.linear(x, nc, name="3")
    return _finish(b, x)


def mobilenet_v3_large(num_classes: int = 1000, random_state: Any = 0, resolution: int = 224,
                       width_mult: float = 1.0) -> Model:
    """MobileNetV3-Large (Howard et al. 2019) as in torchvision.

    Inverted residual blocks with squeeze-excitation (GlobalAveragePool,
    1x1 conv, ReLU, 1x1 conv, HardSigmoid, Mul) and HardSwish, BN epsilon
    0.001, classifier Linear(960, 1280), HardSwish, Dropout(0.2), Linear.

    Parameters
    ----------
    num_classes : int
        Output classes.
    random_state : int or numpy.random.Generator
        Seed of the random weights.
    resolution : int
        Input height and width.
    width_mult : float
        Width multiplier (channels rounded with ``_make_divisible``).

    Returns
    -------
    Model
        5,483,032 parameters at width 1.0 and 1000 classes.

    Examples
    --------
    >>> mobilenet_v3_large().op_types()["HardSigmoid"]
    8
    """
    return _mobilenet_v3("mobilenet_v3_large", _V3_LARGE, 1280, num_classes, random_state,
                         resolution, width_mult)


def mobilenet_v3_small(num_classes: int = 1000, random_state: Any = 0, resolution: int = 224,
                       width_mult: float = 1.0) -> Model:
    """MobileNetV3-Small (Howard et al. 2019) as in torchvision.

    Like :func:`mobilenet_v3_large` with 11 blocks and a 1024-wide classifier.

    Parameters
    ----------
    num_classes : int
        Output classes.
    random_state : int or numpy.random.Generator
        Seed of the random weights.
    resolution : int
        Input height and width.
    width_mult : float
        Width multiplier (channels rounded with ``_make_divisible``).

    Returns
    -------
    Model
        2,542,856 parameters at width 1.0 and 1000 classes.

    Examples
    --------
    >>> mobilenet_v3_small(num_classes=10).outputs[0].shape
    ('N', 10)
    """
    return _mobilenet_v3("mobilenet_v3_small", _V3_SMALL, 1024, num_classes, random_state,
                         resolution, width_mult)


# ---------------------------------------------------------------------------
# SqueezeNet
# ---------------------------------------------------------------------------
def _fire(b: GraphBuilder, x: str, squeeze: int, e1: int, e3: int) -> str:
    s = b.relu(b.conv(x, squeeze, 1, name="squeeze"), name="squeeze_activation")
    a = b.relu(b.conv(s, e1, 1, name="expand1x1"), name="expand1x1_activation")
    c = b.relu(b.conv(s, e3, 3, pad=1, name="expand3x3"), name="expand3x3_activation")
    return b.concat([a, c], name="concat")


def _squeezenet(version: str, num_classes: Any, random_state: Any, resolution: Any) -> Model:
    name = "squeezenet1_0" if version == "1_0" else "squeezenet1_1"
    b, x, nc = _start(name, num_classes, random_state, resolution, 32)
    if version == "1_0":
        layers: List[Any] = [("conv", 96, 7), "M", (16, 64, 64), (16, 64, 64), (32, 128, 128), "M",
                             (32, 128, 128), (48, 192, 192), (48, 192, 192), (64, 256, 256), "M",
                             (64, 256, 256)]
    else:
        layers = [("conv", 64, 3), "M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128),
                  (32, 128, 128), "M", (48, 192, 192), (48, 192, 192), (64, 256, 256),
                  (64, 256, 256)]
    i = 0
    with b.scope("features"):
        for layer in layers:
            if layer == "M":
                x = b.maxpool(x, 3, 2, ceil_mode=True, name=str(i))
                i += 1
            elif layer[0] == "conv":
                x = b.conv(x, layer[1], layer[2], 2, pad=0, name=str(i))
                x = b.relu(x, name=str(i + 1))
                i += 2
            else:
                with b.scope(i):
                    x = _fire(b, x, *layer)
                i += 1
    with b.scope("classifier"):
        x = b.dropout(x, 0.5, name="0")
        x = b.relu(b.conv(x, nc, 1, name="1"), name="2")
        x = b.global_avgpool(x, name="3")
    return _finish(b, b.flatten(x, name="flatten"))


def squeezenet1_0(num_classes: int = 1000, random_state: Any = 0, resolution: int = 224) -> Model:
    """SqueezeNet 1.0 (Iandola et al. 2016) as in torchvision.

    A 7x7/2 convolution, eight Fire modules (1x1 squeeze, then 1x1 and 3x3
    expand convolutions joined by ``Concat``), max pools with
    ``ceil_mode=1``, and a 1x1 convolution classifier with ReLU and global
    average pooling.

    Parameters
    ----------
    num_classes : int
        Output classes.
    random_state : int or numpy.random.Generator
        Seed of the random weights.
    resolution : int
        Input height and width.

    Returns
    -------
    Model
        1,248,424 parameters at 1000 classes.

    Examples
    --------
    >>> squeezenet1_0().op_types()["Concat"]
    8
    """
    return _squeezenet("1_0", num_classes, random_state, resolution)


def squeezenet1_1(num_classes: int = 1000, random_state: Any = 0, resolution: int = 224) -> Model:
    """SqueezeNet 1.1 as in torchvision: a 3x3/2 first convolution and earlier pooling
    (2.4x fewer operations than 1.0 at the same accuracy).

    Parameters
    ----------
    num_classes : int
        Output classes.
    random_state : int or numpy.random.Generator
        Seed of the random weights.
    resolution : int
        Input height and width.

    Returns
    -------
    Model
        1,235,496 parameters at 1000 classes.

    Examples
    --------
    >>> squeezenet1_1().num_parameters()
    1235496
    """
    return _squeezenet("1_1", num_classes, random_state, resolution)


# ---------------------------------------------------------------------------
# ShuffleNetV2
# ---------------------------------------------------------------------------
def _shuffle_unit(b: GraphBuilder, x: str, out: int, stride: int) -> str:
    bf = out // 2
    if stride == 1:
        x1, x2 = b.split(x, [b.channels(x) // 2] * 2, name="split")
        src = x2
    else:
        cin = b.channels(x)
        with b.scope("branch1"):
            y = b.conv(x, cin, 3, stride, pad=1, groups=cin, bias=False, name="0")
            y = b.bn(y, name="1")
            y = b.conv(y, bf, 1, bias=False, name="2")
            x1 = b.relu(b.bn(y, name="3"), name="4")
        src = x
    with b.scope("branch2"):
        y = b.conv(src, bf, 1, bias=False, name="0")
        y = b.relu(b.bn(y, name="1"), name="2")
        y = b.conv(y, bf, 3, stride, pad=1, groups=bf, bias=False, name="3")
        y = b.bn(y, name="4")
        y = b.conv(y, bf, 1, bias=False, name="5")
        y = b.relu(b.bn(y, name="6"), name="7")
    x = b.concat([x1, y], name="concat")
    return b.channel_shuffle(x, 2, name="channel_shuffle")


def shufflenet_v2_x1_0(num_classes: int = 1000, random_state: Any = 0,
                       resolution: int = 224) -> Model:
    """ShuffleNetV2 1.0x (Ma et al. 2018) as in torchvision.

    Stages of 4, 8 and 4 units with 116, 232 and 464 channels. A stride-1 unit
    splits its input into two halves (ONNX ``Split`` with an int64 ``split``
    input), transforms one, concatenates and shuffles the channels
    (``Reshape`` → ``Transpose`` → ``Reshape``); a stride-2 unit transforms the
    whole input in two branches. ``x.mean([2, 3])`` is a GlobalAveragePool
    and Flatten.

    Parameters
    ----------
    num_classes : int
        Output classes.
    random_state : int or numpy.random.Generator
        Seed of the random weights.
    resolution : int
        Input height and width.

    Returns
    -------
    Model
        2,278,604 parameters at 1000 classes.

    Examples
    --------
    >>> shufflenet_v2_x1_0().op_types()["Split"]
    13
    """
    b, x, nc = _start("shufflenet_v2_x1_0", num_classes, random_state, resolution, 32)
    with b.scope("conv1"):
        x = b.relu(b.bn(b.conv(x, 24, 3, 2, pad=1, bias=False, name="0"), name="1"), name="2")
    x = b.maxpool(x, 3, 2, pad=1, name="maxpool")
    for si, (reps, out) in enumerate(zip((4, 8, 4), (116, 232, 464)), start=2):
        with b.scope(f"stage{si}"):
            for j in range(reps):
                with b.scope(j):
                    x = _shuffle_unit(b, x, out, 2 if j == 0 else 1)
    with b.scope("conv5"):
        x = b.relu(b.bn(b.conv(x, 1024, 1, bias=False, name="0"), name="1"), name="2")
    x = b.flatten(b.global_avgpool(x, name="mean"), name="flatten")
    return _finish(b, b.linear(x, nc, name="fc"))


# ---------------------------------------------------------------------------
# EfficientNet
# ---------------------------------------------------------------------------
def efficientnet_b0(num_classes: int = 1000, random_state: Any = 0,
                    resolution: int = 224) -> Model:
    """EfficientNet-B0 (Tan & Le 2019) as in torchvision.

    MBConv blocks (1x1 expansion, depthwise kxk, squeeze-excitation with
    SiLU and Sigmoid, 1x1 projection), SiLU written as ``x * Sigmoid(x)``,
    a 1280-channel head, Dropout(0.2) and a linear classifier. Stochastic
    depth is an identity at inference and is omitted.

    Parameters
    ----------
    num_classes : int
        Output classes.
    random_state : int or numpy.random.Generator
        Seed of the random weights.
    resolution : int
        Input height and width.

    Returns
    -------
    Model
        5,288,548 parameters at 1000 classes.

    Examples
    --------
    >>> efficientnet_b0().num_parameters() >= 5_288_548
    True
    """
    b, x, nc = _start("efficientnet_b0", num_classes, random_state, resolution, 32)
    # expand_ratio, kernel, stride, input_channels, out_channels, num_layers
    setting = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
               (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
               (6, 3, 1, 192, 320, 1)]
    with b.scope("features"):
        with b.scope(0):
            x = _cna(b, x, setting[0][3], 3, 2, act="silu")
        for si, (t, k, s, cin, cout, n) in enumerate(setting, start=1):
            for j in range(n):
                cin_j = cin if j == 0 else cout
                stride = s if j == 0 else 1
                with b.scope(si), b.scope(j), b.scope("block"):
                    inp = x
                    res = stride == 1 and cin_j == cout
                    exp = _make_divisible(cin_j * t, 8)
                    i = 0
                    if exp != cin_j:
                        with b.scope(i):
                            x = _cna(b, x, exp, 1, act="silu")
                        i += 1
                    with b.scope(i):
                        x = _cna(b, x, exp, k, stride, groups=exp, act="silu")
                    with b.scope(i + 1):
                        x = _se(b, x, max(1, cin_j // 4), "silu", "sigmoid")
                    with b.scope(i + 2):
                        x = _cna(b, x, cout, 1, act=None, gamma=_RESIDUAL_GAMMA if res else 1.0)
                if res:
                    x = b.add(x, inp, name=f"{si}.{j}.add")
        with b.scope(len(setting) + 1):
            x = _cna(b, x, 4 * b.channels(x), 1, act="silu")
    x = b.flatten(b.global_avgpool(x, name="avgpool"), name="flatten")
    with b.scope("classifier"):
        x = b.dropout(x, 0.2, name="0")
        x = b.linear(x, nc, name="1")
    return _finish(b, x)


# ---------------------------------------------------------------------------
# registry and reference models
# ---------------------------------------------------------------------------
_ARCHITECTURES = [
    "alexnet", "vgg16", "resnet18", "resnet50", "mobilenet_v1", "mobilenet_v2",
    "mobilenet_v3_small", "mobilenet_v3_large", "squeezenet1_0", "squeezenet1_1",
    "shufflenet_v2_x1_0", "efficientnet_b0",
]


def architectures() -> List[str]:
    """Names of the architecture functions of this module.

    Returns
    -------
    list of str
        Call them with ``getattr(lpcv.zoo, name)(...)``.

    Examples
    --------
    >>> from lpcv import zoo
    >>> zoo.architectures()[:3]
    ['alexnet', 'vgg16', 'resnet18']
    >>> getattr(zoo, "squeezenet1_1")(num_classes=10).outputs[0].shape
    ('N', 10)
    """
    return list(_ARCHITECTURES)


def published(name: str) -> Dict[str, Any]:
    """The published parameter and MAC counts of an architecture, for use as oracles.

    Parameters
    ----------
    name : str
        One of :func:`architectures`.

    Returns
    -------
    dict
        ``params`` (exact, at 1000 classes and width 1.0), ``macs``
        (multiply-accumulates of the convolution and linear layers at
        224x224, as published, so rounded: torchvision gives two decimals of
        GMACs) and ``source``.

    Raises
    ------
    ValidationError
        For an unknown name.

    Examples
    --------
    >>> published("resnet18")["params"]
    11689512
    """
    if name not in _PUBLISHED:
        raise ValidationError(f"unknown architecture {name!r}; valid names are: "
                              + ", ".join(_ARCHITECTURES))
    params, macs, source = _PUBLISHED[name]
    return {"params": params, "macs": int(macs), "source": source}


def _reference_dir():  # -> importlib.resources.abc.Traversable
    return importlib.resources.files("lpcv").joinpath("_reference")


def reference_names() -> List[str]:
    """Names of the trained reference models shipped in ``lpcv/_reference``.

    Returns
    -------
    list of str
        Sorted, e.g. ``['fmnist-lenet300', 'fmnist-lenet5', ...]``; empty
        when none are installed.

    Examples
    --------
    >>> isinstance(reference_names(), list)
    True
    """
    d = _reference_dir()
    if not d.is_dir():
        return []
    return sorted(p.name[: -len(".onnx")] for p in d.iterdir()
                  if p.name.endswith(".onnx") and p.is_file())


def _check_reference(name: Any) -> str:
    names = reference_names()
    if not isinstance(name, str) or name not in names:
        valid = ", ".join(names) if names else "(none installed)"
        raise ValidationError(f"unknown reference model {name!r}; valid names are: {valid}")
    return name


def reference(name: str) -> Model:
    """Load a reference model trained by this project on Fashion-MNIST.

    Parameters
    ----------
    name : str
        One of :func:`reference_names` (``"fmnist-lenet5"``, ``"fmnist-resnet"``, ...).

    Returns
    -------
    Model

    Raises
    ------
    ValidationError
        For an unknown name; the message lists the valid names.

    Examples
    --------
    >>> m = reference("fmnist-lenet300")
    >>> m.inputs[0].shape, m.outputs[0].shape
    (('N', 1, 28, 28), ('N', 10))
    >>> m.num_parameters()  # LeNet-300-100: 784*300+300 + 300*100+100 + 100*10+10
    266610
    """
    name = _check_reference(name)
    from .onnx_io import load

    data = _reference_dir().joinpath(f"{name}.onnx").read_bytes()
    return load(data)


def model_card(name: str) -> Dict[str, Any]:
    """The model card of a reference model (training data, recipe, accuracy...).

    Parameters
    ----------
    name : str
        One of :func:`reference_names`.

    Returns
    -------
    dict
        The model's entry in ``lpcv/_reference/model_card.json`` (a new dict
        on every call).

    Raises
    ------
    ValidationError
        For an unknown name; the message lists the valid names.
    DataNotFoundError
        When ``model_card.json`` is missing or has no entry for the model.

    Examples
    --------
    >>> card = model_card("fmnist-lenet300")
    >>> card["params"], card["input"]["shape"]
    (266610, ['N', 1, 28, 28])
    """
    name = _check_reference(name)
    f = _reference_dir().joinpath("model_card.json")
    if not f.is_file():
        raise DataNotFoundError("lpcv/_reference/model_card.json is missing; reinstall lpcv")
    cards = json.loads(f.read_text(encoding="utf-8"))
    entry = _find_card(cards, name)
    if entry is None:
        raise DataNotFoundError(f"lpcv/_reference/model_card.json has no entry for {name!r}")
    return entry


def _find_card(cards: Any, name: str) -> Optional[Dict[str, Any]]:
    """Accept ``{name: card}``, ``{"models": {name: card}}`` or a list of cards with ``name``."""
    if isinstance(cards, dict):
        if isinstance(cards.get(name), dict):
            return cards[name]
        for key in ("models", "reference_models"):
            if key in cards:
                return _find_card(cards[key], name)
        return None
    if isinstance(cards, list):
        for c in cards:
            if isinstance(c, dict) and c.get("name") == name:
                return c
    return None
