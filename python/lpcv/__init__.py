"""lpcv: compress and profile neural networks for low-power devices.

Quick tour
----------
>>> import lpcv
>>> model = lpcv.zoo.reference("fmnist-lenet5")      # trained, ships with lpcv
>>> images, labels = lpcv.data.load_sample(100)
>>> logits = lpcv.Session(model, batch_size=100).run({"input": images})["logits"]
>>> float((logits.argmax(1) == labels).mean()) > 0.8
True
"""
from __future__ import annotations

from ._version import __version__


def _openmp_defaults() -> None:
    """Spin briefly, not for long, at OpenMP barriers (unless the user chose).

    GNU OpenMP spins ~300k iterations before sleeping; on a loaded machine
    a spinning thread takes the core from the thread that has work, and a
    plan of many small primitives then stalls for whole scheduler quanta.
    A short spin keeps wake-ups fast on an idle machine. This must happen
    before libgomp is loaded; it has no effect if it already is.
    """
    import os
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = "10000"


def _load_core():
    """Import the C++ extension, preloading oneDNN if the loader cannot find it.

    The extension's RUNPATH points at ``<prefix>/lib``, where the
    ``onednn-cpu-gomp`` wheel installs ``libdnnl.so.3``; layouts where that
    relative path does not hold (e.g. some editable installs) fall back to
    locating the library through the wheel's metadata.
    """
    try:
        from . import _core
        return _core
    except ImportError as first:
        import ctypes
        from importlib import metadata
        try:
            files = metadata.distribution("onednn-cpu-gomp").files or []
        except metadata.PackageNotFoundError:
            raise first from None
        for f in files:
            if str(f).endswith("libdnnl.so.3"):
                ctypes.CDLL(str(f.locate()), mode=ctypes.RTLD_GLOBAL)
                from . import _core
                return _core
        raise first from None


_openmp_defaults()
_load_core()

from . import cost, data, exceptions, transforms, zoo  # noqa: E402
from . import layerdata, quantize  # noqa: E402
from .graph import Model, Node, ValueInfo  # noqa: E402
from .onnx_io import load, save  # noqa: E402
from .runtime import Session  # noqa: E402

__all__ = ["__version__", "Model", "Node", "ValueInfo", "Session", "load", "save",
           "cost", "data", "exceptions", "transforms", "zoo"]
__all__ += ["quantize", "layerdata"]
