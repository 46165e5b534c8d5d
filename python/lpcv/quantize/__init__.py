"""Quantization: uniform (per tensor / channel / group), calibration of
activation ranges, non-uniform schemes (k-means weight sharing, binary,
ternary), and whole-model post-training quantization to QDQ graphs
(:func:`quantize_model`) with per-layer bit widths under a budget
(:func:`choose_bits`).

Array functions are stateless (NumPy in, NumPy out); estimators follow the
scikit-learn contract (``fit`` learns attributes ending in ``_``).

Examples
--------
>>> import numpy as np
>>> from lpcv import quantize
>>> w = np.linspace(-1, 1, 9, dtype=np.float32).reshape(3, 3)
>>> q, scale, zp = quantize.quantize(w, bits=4, axis=0)
>>> q
array([[-7, -5, -3],
       [-7,  0,  7],
       [ 3,  5,  7]], dtype=int8)
"""
from __future__ import annotations

from .calibration import Calibrator, histogram
from .nonuniform import (KMeansQuantizer, binarize, huffman_bits, huffman_code_lengths,
                         kmeans_quantize, ternarize)
from .adaround import AdaRoundResult, adaround
from .equalize import EqualizationReport, cross_layer_equalization
from .gptq import GPTQResult, gptq
from .mixed import MixedPrecisionResult, choose_bits
from .model import QuantizationReport, quantizable_layers, quantize_model
from .uniform import (UniformQuantizer, dequantize, fake_quantize, int_range, pack_int4,
                      quantize, unpack_int4)

__all__ = ["fake_quantize", "quantize", "dequantize", "pack_int4", "unpack_int4", "int_range",
           "UniformQuantizer", "Calibrator", "histogram", "kmeans_quantize", "KMeansQuantizer",
           "huffman_bits", "huffman_code_lengths", "binarize", "ternarize",
           "quantize_model", "QuantizationReport", "quantizable_layers", "choose_bits",
           "MixedPrecisionResult", "cross_layer_equalization", "EqualizationReport",
           "adaround", "AdaRoundResult", "gptq", "GPTQResult"]
