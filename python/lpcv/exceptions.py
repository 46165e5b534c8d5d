"""Exceptions raised by lpcv.

Every error lpcv raises on purpose derives from :class:`LpcvError` and from the
built-in exception a Python user would expect (``ValueError`` for bad values
and shapes, ``NotImplementedError`` for unsupported features, ``RuntimeError``
for backend failures), so ``except ValueError`` keeps working.
"""
from __future__ import annotations

__all__ = [
    "LpcvError",
    "ValidationError",
    "ShapeError",
    "ModelError",
    "ONNXLoadError",
    "UnsupportedOpError",
    "UnsupportedError",
    "BackendError",
    "NotFittedError",
    "DataNotFoundError",
]


class LpcvError(Exception):
    """Base class of every exception raised by lpcv."""


class ValidationError(LpcvError, ValueError):
    """A parameter has a wrong value, dtype or range (message names it)."""


class ShapeError(ValidationError):
    """An array or tensor has the wrong rank or extent."""


class ModelError(LpcvError, ValueError):
    """A model graph is malformed (cycle, dangling input, missing weight...)."""


class ONNXLoadError(ModelError):
    """An ONNX file or byte string cannot be parsed into a model."""


class UnsupportedError(LpcvError, NotImplementedError):
    """A valid request that lpcv does not implement (dtype, mode, ...)."""


class UnsupportedOpError(UnsupportedError):
    """A model contains an operator lpcv does not support.

    Attributes
    ----------
    op : str
        The operator type, e.g. ``"LSTM"``.
    node : str
        The name of the offending node.
    supported : tuple of str
        The operators that are supported in this context.
    """

    def __init__(self, op: str, node: str, supported):
        self.op = op
        self.node = node
        self.supported = tuple(sorted(supported))
        super().__init__(
            f"unsupported op {op!r} in node {node!r}; supported ops are: "
            + ", ".join(self.supported)
        )


class BackendError(LpcvError, RuntimeError):
    """A failure inside the C++ core or oneDNN."""


class NotFittedError(LpcvError, ValueError, AttributeError):
    """An estimator was used before ``fit``."""


class DataNotFoundError(LpcvError, FileNotFoundError):
    """A data set file is missing (message says how to install it)."""
