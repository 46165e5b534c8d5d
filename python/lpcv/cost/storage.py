"""Bytes a weight tensor occupies in a given storage format.

Formats cover what compression produces: lower precision (fp16, bf16, int8,
int4, binary), unstructured sparsity (dense zeros, CSR, bitmap), N:M
structured sparsity with its index metadata, k-means weight sharing (codebook
+ indices, optionally Huffman-coded), and the quantization scales and zero
points that come with integer weights.

Examples
--------
>>> import numpy as np
>>> from lpcv.cost import WeightFormat, storage_bytes
>>> w = np.ones((64, 64), np.float32)
>>> storage_bytes(w, WeightFormat("int8", scales=64, zero_points=64))["total"]
4416
>>> w[:, ::2] = 0
>>> storage_bytes(w, WeightFormat("fp32", sparsity="bitmap"))["total"]
8704
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from ..exceptions import ValidationError
from .device import PRECISIONS

__all__ = ["WeightFormat", "storage_bytes", "BITS"]

#: Bits per element of each precision.
BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4, "binary": 1}
_SPARSITY = ("dense", "csr", "bitmap", "nm")


@dataclass(frozen=True)
class WeightFormat:
    """How a weight tensor is stored.

    Parameters
    ----------
    precision : str
        Element precision, one of ``fp32, fp16, bf16, int8, int4, binary``.
    sparsity : str
        ``"dense"`` (zeros stored), ``"csr"`` (values + column indices + row
        pointers over the tensor viewed as rows = output channels),
        ``"bitmap"`` (values + one bit per element) or ``"nm"``.
    nm : (int, int), optional
        For ``sparsity="nm"``: N non-zeros kept in every group of M; each kept
        value carries ceil(log2 M) bits of position metadata.
    codebook_size : int, optional
        k-means weight sharing: values are indices of ceil(log2 K) bits into a
        codebook of K centroids stored at ``precision``.
    huffman_bits : int, optional
        Total size in bits of the Huffman-coded indices (from a codebook
        quantizer); replaces the fixed-width indices.
    scales, zero_points : int
        Number of fp32 scales and of zero points (stored at the element
        width) that dequantization needs.
    """

    precision: str = "fp32"
    sparsity: str = "dense"
    nm: Optional[Tuple[int, int]] = None
    codebook_size: Optional[int] = None
    huffman_bits: Optional[int] = None
    scales: int = 0
    zero_points: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValidationError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.sparsity not in _SPARSITY:
            raise ValidationError(f"sparsity must be one of {_SPARSITY}, got {self.sparsity!r}")
        if self.sparsity == "nm":
            if (self.nm is None or len(self.nm) != 2 or not all(isinstance(v, int) for v in self.nm)
                    or not 0 < self.nm[0] <= self.nm[1]):
                raise ValidationError(f"nm must be (N, M) with 0 < N <= M, got {self.nm!r}")
        if self.codebook_size is not None and (not isinstance(self.codebook_size, int)
                                               or self.codebook_size < 1):
            raise ValidationError(f"codebook_size must be a positive int, got {self.codebook_size!r}")
        if self.huffman_bits is not None and (self.codebook_size is None or self.huffman_bits < 0):
            raise ValidationError("huffman_bits needs a codebook_size and must be >= 0")
        for f in ("scales", "zero_points"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 0:
                raise ValidationError(f"{f} must be a non-negative int, got {v!r}")


def storage_bytes(weights: np.ndarray, fmt: WeightFormat = WeightFormat()) -> Dict[str, int]:
    """Bytes ``weights`` occupy in format ``fmt``, by component.

    Returns
    -------
    dict
        ``values``, ``metadata`` (indices, bitmaps, row pointers, N:M
        positions), ``codebook``, ``quant_params`` (scales and zero points)
        and their ``total``. Each component is rounded up to whole bytes.
    """
    if not isinstance(weights, np.ndarray):
        raise ValidationError(f"weights must be a numpy array, got {type(weights).__name__}")
    if not isinstance(fmt, WeightFormat):
        raise ValidationError(f"fmt must be a WeightFormat, got {type(fmt).__name__}")
    n = int(weights.size)
    bits = BITS[fmt.precision]
    value_bits = math.ceil(math.log2(fmt.codebook_size)) if fmt.codebook_size and fmt.codebook_size > 1 \
        else (1 if fmt.codebook_size else bits)
    nnz = int(np.count_nonzero(weights)) if fmt.sparsity in ("csr", "bitmap") else n
    metadata_bits = 0
    if fmt.sparsity == "dense":
        stored = n
    elif fmt.sparsity == "csr":
        stored = nnz
        rows = int(weights.shape[0]) if weights.ndim else 1
        cols = n // max(rows, 1)
        index_bytes = 2 if cols <= 65536 else 4
        metadata_bits = 8 * (nnz * index_bytes + (rows + 1) * 4)
    elif fmt.sparsity == "bitmap":
        stored = nnz
        metadata_bits = n
    else:  # nm
        keep, group = fmt.nm
        stored = math.ceil(n / group) * keep
        metadata_bits = stored * max(1, math.ceil(math.log2(group)))
    if fmt.huffman_bits is not None:
        values = math.ceil(fmt.huffman_bits / 8)
    else:
        values = math.ceil(stored * value_bits / 8)
    codebook = math.ceil(fmt.codebook_size * bits / 8) if fmt.codebook_size else 0
    quant = fmt.scales * 4 + math.ceil(fmt.zero_points * bits / 8)
    metadata = math.ceil(metadata_bits / 8)
    return {"values": values, "metadata": metadata, "codebook": codebook,
            "quant_params": quant, "total": values + metadata + codebook + quant}


def default_format(weights: np.ndarray) -> WeightFormat:
    """The format a plain initializer is stored in (its dtype, dense)."""
    kind = {np.dtype(np.float32): "fp32", np.dtype(np.float16): "fp16",
            np.dtype(np.int8): "int8", np.dtype(np.uint8): "int8"}.get(weights.dtype, "fp32")
    return WeightFormat(kind)
