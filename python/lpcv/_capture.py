"""Streaming capture of intermediate tensors from calibration data.

Model passes that learn from data (activation ranges, AdaRound, GPTQ, bias
correction, and later data-aware pruning) need the tensors a layer sees. They
never hold all of them: :func:`capture` runs the model one batch at a time with
the wanted tensors as extra outputs and hands each batch to the caller, which
reduces it (histogram, Hessian, row sample, mean) before the next one comes.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .exceptions import ValidationError
from .graph import Model, ValueInfo

__all__ = ["CalibrationData", "capture", "with_outputs"]


class CalibrationData:
    """User calibration data as a re-iterable stream of feed dicts.

    Parameters
    ----------
    data : ndarray, sequence of ndarray, sequence of dict, or re-iterable
        One array ``(N, ...)`` split into batches of ``batch_size``; or
        batches (arrays for single-input models, ``{input name: array}``
        dicts otherwise). One-shot iterators are refused: passes read the
        data several times.
    model : Model
        The model the data feed (names and ranks of its inputs).
    batch_size : int
        Batch length when ``data`` is one array.
    max_samples : int, optional
        Use at most this many samples (the first ones).
    name : str
        Parameter name for error messages.
    """

    def __init__(self, data: Any, model: Model, batch_size: int = 32,
                 max_samples: Optional[int] = None, name: str = "calib"):
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) \
                or batch_size < 1:
            raise ValidationError(f"batch_size must be a positive int, got {batch_size!r}")
        if max_samples is not None and (not isinstance(max_samples, (int, np.integer))
                                        or isinstance(max_samples, bool) or max_samples < 1):
            raise ValidationError(f"max_samples must be a positive int or None, got {max_samples!r}")
        self.name = name
        self.inputs = [vi for vi in model.inputs if vi.name not in model.initializers]
        if not self.inputs:
            raise ValidationError("the model has no inputs to feed calibration data to")
        self.batch_size = int(batch_size)
        self.max_samples = None if max_samples is None else int(max_samples)
        if data is None:
            raise ValidationError(f"{name} is required (calibration samples), got None")
        if isinstance(data, (np.ndarray, dict)):
            self._data = data
        elif iter(data) is data:
            raise ValidationError(f"{name} must be re-iterable (an array, a list of batches or a "
                                  "data loader); a one-shot iterator or generator can be read "
                                  "only once")
        else:
            self._data = data
        self.n_samples = 0
        self.n_batches = 0
        for feeds in self:  # validates every batch once
            self.n_batches += 1
            self.n_samples += len(next(iter(feeds.values())))
        if self.n_samples == 0:
            raise ValidationError(f"{name} is empty: no calibration samples")

    def _feeds(self, batch: Any) -> Dict[str, np.ndarray]:
        if isinstance(batch, Mapping):
            missing = [vi.name for vi in self.inputs if vi.name not in batch]
            if missing:
                raise ValidationError(f"{self.name}: a batch lacks the model inputs {missing}")
            feeds = {vi.name: batch[vi.name] for vi in self.inputs}
        else:
            if len(self.inputs) != 1:
                raise ValidationError(
                    f"{self.name}: the model has {len(self.inputs)} inputs "
                    f"{[vi.name for vi in self.inputs]}; give batches as dicts of arrays")
            feeds = {self.inputs[0].name: batch}
        out = {}
        for vi in self.inputs:
            a = np.asarray(feeds[vi.name])
            if a.dtype.kind != "f":
                raise TypeError(f"{self.name}: input {vi.name!r} must be floating point, "
                                f"got dtype {a.dtype}")
            if a.ndim != len(vi.shape):
                raise ValidationError(f"{self.name}: input {vi.name!r} needs rank {len(vi.shape)} "
                                      f"(shape {vi.shape}), got shape {a.shape}")
            if not np.isfinite(a).all():
                raise ValidationError(f"{self.name}: input {vi.name!r} contains NaN or Inf")
            out[vi.name] = np.ascontiguousarray(a, dtype=np.float32)
        return out

    def __iter__(self) -> Iterator[Dict[str, np.ndarray]]:
        seen = 0
        limit = self.max_samples
        if isinstance(self._data, np.ndarray) or isinstance(self._data, Mapping):
            first = self._data if isinstance(self._data, np.ndarray) else \
                next(iter(self._data.values()))
            n = len(first) if np.ndim(first) else 0
            if limit is not None:
                n = min(n, limit)
            for i in range(0, n, self.batch_size):
                if isinstance(self._data, np.ndarray):
                    yield self._feeds(self._data[i:i + self.batch_size])
                else:
                    yield self._feeds({k: np.asarray(v)[i:i + self.batch_size]
                                       for k, v in self._data.items()})
            return
        for batch in self._data:
            feeds = self._feeds(batch)
            b = len(next(iter(feeds.values())))
            if limit is not None and seen + b > limit:
                feeds = {k: v[:limit - seen] for k, v in feeds.items()}
                b = limit - seen
            if b > 0:
                yield feeds
            seen += b
            if limit is not None and seen >= limit:
                return

    def __len__(self) -> int:
        return self.n_batches

    def first(self, n: int) -> Dict[str, np.ndarray]:
        """The first ``n`` samples as one feed dict."""
        parts: Dict[str, List[np.ndarray]] = {vi.name: [] for vi in self.inputs}
        got = 0
        for feeds in self:
            for k, v in feeds.items():
                parts[k].append(v[:n - got])
            got += len(next(iter(feeds.values())))
            if got >= n:
                break
        return {k: np.concatenate(v) for k, v in parts.items()}


def with_outputs(model: Model, tensors: Sequence[str]) -> Model:
    """``model`` whose outputs are exactly ``tensors``, without the nodes they do not need."""
    infos = model.infer_shapes(batch_size=1)
    outs = []
    for t in tensors:
        if t not in infos:
            raise ValidationError(f"tensor {t!r} is not in the model")
        shape = ("N",) + tuple(infos[t].shape[1:]) if infos[t].shape else ()
        outs.append(ValueInfo(t, shape, infos[t].dtype))
    from .transforms import prune_unused
    return prune_unused(model.with_changes(outputs=outs))  # nothing past the wanted tensors runs


def capture(model: Model, tensors: Sequence[str], data: CalibrationData, *,
            quantized: Optional[str] = None, threads: Optional[int] = None,
            desc: str = "", progress: bool = False
            ) -> Iterator[Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]]:
    """Yield, batch by batch, ``(feeds, values of tensors)`` on ``data``.

    The data are read once, one batch at a time.

    ``quantized`` is passed to :class:`lpcv.Session` for models with
    QuantizeLinear/DequantizeLinear nodes (``"simulate"`` runs them in float).
    """
    from tqdm.auto import tqdm

    from .runtime import Session

    m = with_outputs(model, list(dict.fromkeys(tensors)))
    kwargs: Dict[str, Any] = {"threads": threads}
    if quantized is not None:
        kwargs["quantized"] = quantized
    sess = Session(m, batch_size=data.batch_size, **kwargs)
    for feeds in tqdm(data, total=len(data), desc=desc, disable=not progress, leave=False):
        yield feeds, sess.run(feeds)
