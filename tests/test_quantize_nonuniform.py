"""lpcv.quantize non-uniform quantizers against NumPy references."""
from __future__ import annotations

import heapq

import numpy as np
import pytest

from lpcv.exceptions import NotFittedError, ValidationError
from lpcv.quantize import (KMeansQuantizer, binarize, huffman_bits, huffman_code_lengths,
                           kmeans_quantize, ternarize)

F32 = np.float32


def np_kmeans(x, k, max_iter=300, init=None):
    """Straightforward NumPy Lloyd with Deep Compression's linear init."""
    x = x.astype(np.float64).ravel()
    lo, hi = x.min(), x.max()
    c = (np.array([0.5 * (lo + hi)]) if k == 1 else lo + (hi - lo) * np.arange(k) / (k - 1)) \
        if init is None else np.sort(np.asarray(init, np.float64))
    labels = None
    for it in range(max_iter):
        new = np.argmin(np.abs(x[:, None] - c[None, :]), axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        sums = np.bincount(labels, weights=x, minlength=k)
        cnt = np.bincount(labels, minlength=k)
        c = np.where(cnt > 0, sums / np.maximum(cnt, 1), c)
        c = np.sort(c)
    cb = np.sort(c.astype(F32))
    labels = np.argmin(np.abs(x[:, None] - cb.astype(np.float64)[None, :]), axis=1)
    return cb, labels


@pytest.mark.parametrize("k", [1, 2, 5, 16, 64])
@pytest.mark.parametrize("dist", ["normal", "laplace", "bimodal"])
def test_kmeans_matches_numpy_lloyd(k, dist):
    rng = np.random.default_rng(k)
    n = 20_000 if k <= 16 else 6_000
    if dist == "normal":
        w = rng.standard_normal(n)
    elif dist == "laplace":
        w = rng.laplace(size=n)
    else:
        w = np.concatenate([rng.normal(-2, 0.3, n // 2), rng.normal(1, 0.1, n // 2)])
    w = w.astype(F32).reshape(100, -1)  # n divisible by 100
    w0 = w.copy()
    cb, idx = kmeans_quantize(w, n_clusters=k)
    assert np.array_equal(w, w0)
    cb_ref, lab_ref = np_kmeans(w, k)
    assert cb.dtype == np.float32 and cb.shape == (k,) and np.all(np.diff(cb) >= 0)
    assert idx.dtype == np.uint8 and idx.shape == w.shape
    np.testing.assert_allclose(cb, cb_ref, rtol=1e-5, atol=1e-6)
    # indices are the nearest codebook entries of the returned codebook
    near = np.argmin(np.abs(w.reshape(-1, 1).astype(np.float64) - cb.astype(np.float64)),
                     axis=1)
    np.testing.assert_array_equal(idx.ravel(), near)
    assert (idx.ravel() != lab_ref).mean() < 1e-3


def test_kmeans_large_parallel_and_deterministic():
    w = np.random.default_rng(0).standard_normal(300_000).astype(F32)
    a = kmeans_quantize(w, 32, max_iter=20)
    b = kmeans_quantize(w, 32, max_iter=20)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    cb_ref, _ = np_kmeans(w[:], 32, max_iter=20)
    np.testing.assert_allclose(a[0], cb_ref, rtol=1e-5, atol=1e-6)


def test_kmeans_random_init_uses_random_state():
    w = np.random.default_rng(1).standard_normal(5000).astype(F32)
    a = kmeans_quantize(w, 8, init="random", random_state=3)
    b = kmeans_quantize(w, 8, init="random", random_state=3)
    np.testing.assert_array_equal(a[0], b[0])
    c = kmeans_quantize(w, 8, init="random", random_state=np.random.default_rng(7))
    assert c[0].shape == (8,)
    # converged k-means is at least as good as a single assignment to its init
    err = float(np.sum((a[0][a[1]] - w) ** 2))
    assert err < float(np.sum((w - w.mean()) ** 2))


def test_kmeans_estimator():
    w = np.random.default_rng(2).standard_normal((32, 3, 3)).astype(F32)
    km = KMeansQuantizer(n_clusters=8)
    assert km.get_params() == {"n_clusters": 8, "init": "linear", "max_iter": 300, "tol": 0.0,
                               "random_state": None}
    with pytest.raises(NotFittedError):
        km.transform(w)
    with pytest.raises(NotFittedError):
        km.inverse_transform(np.zeros(3, np.uint8))
    km.fit(w)
    cb, idx = kmeans_quantize(w, 8)
    np.testing.assert_array_equal(km.codebook_, cb)
    np.testing.assert_array_equal(km.transform(w), idx)
    np.testing.assert_array_equal(km.fake_quantize(w), cb[idx])
    assert km.inertia_ == pytest.approx(float(np.sum((cb[idx].astype(np.float64) - w) ** 2)),
                                        rel=1e-6)
    assert 1 <= km.n_iter_ <= 300
    new = np.array([-100.0, 0.0, 100.0], F32)
    np.testing.assert_array_equal(km.transform(new), [0, np.argmin(np.abs(cb)), 7])
    assert km.set_params(n_clusters=300) is km
    assert km.fit(w).transform(w).dtype == np.uint16
    with pytest.raises(ValidationError, match="indices"):
        km.inverse_transform(np.array([400]))


def test_kmeans_bad_input():
    w = np.ones(10, F32)
    with pytest.raises(ValidationError, match="n_clusters"):
        kmeans_quantize(w, 0)
    with pytest.raises(ValidationError, match="init"):
        kmeans_quantize(w, 2, init="kmeans++")
    with pytest.raises(ValidationError, match="max_iter"):
        kmeans_quantize(w, 2, max_iter=0)
    with pytest.raises(ValidationError, match="w contains NaN"):
        kmeans_quantize(np.array([1.0, np.nan], F32), 2)
    with pytest.raises(ValidationError, match="empty"):
        kmeans_quantize(np.zeros(0, F32), 2)
    with pytest.raises(TypeError):
        kmeans_quantize(np.arange(5), 2)
    with pytest.raises(TypeError, match="random_state"):
        kmeans_quantize(w, 2, init="random", random_state="seed")
    # constant weights: every centroid the constant, exact reconstruction
    cb, idx = kmeans_quantize(np.full(7, 0.3, F32), 4)
    np.testing.assert_array_equal(cb[idx], np.full(7, 0.3, F32))


# ------------------------------------------------------------------ Huffman
def heapq_huffman_total(indices):
    vals, freq = np.unique(np.asarray(indices).ravel(), return_counts=True)
    if len(freq) == 1:
        return int(freq[0])
    heap = [(int(f), i, {i: 0}) for i, f in enumerate(freq)]
    heapq.heapify(heap)
    uid = len(heap)
    while len(heap) > 1:
        f1, _, d1 = heapq.heappop(heap)
        f2, _, d2 = heapq.heappop(heap)
        merged = {s: d + 1 for s, d in {**d1, **d2}.items()}
        heapq.heappush(heap, (f1 + f2, uid, merged))
        uid += 1
    depths = heap[0][2]
    return int(sum(int(freq[s]) * d for s, d in depths.items()))


@pytest.mark.parametrize("seed", range(6))
def test_huffman_against_heapq(seed):
    rng = np.random.default_rng(seed)
    k = [2, 3, 16, 50, 256, 7][seed]
    p = rng.dirichlet(np.ones(k) * 0.3)
    idx = rng.choice(k, size=10_000, p=p).astype(np.uint8 if k <= 256 else np.int32)
    assert huffman_bits(idx) == heapq_huffman_total(idx)
    lengths = huffman_code_lengths(idx, n_symbols=k)
    used = np.bincount(idx, minlength=k) > 0
    assert np.all(lengths[~used] == 0)
    assert np.sum(2.0 ** -lengths[used]) <= 1.0 + 1e-12  # Kraft: a prefix code
    assert huffman_bits(idx) <= idx.size * int(np.ceil(np.log2(max(used.sum(), 2))))


def test_huffman_edge_cases():
    assert huffman_bits(np.zeros(9, np.uint8)) == 9
    assert huffman_bits(np.array([0, 1])) == 2
    assert huffman_bits(np.array([5, 5, 9])) == 3
    with pytest.raises(ValidationError, match=">= 0"):
        huffman_bits(np.array([-1, 0]))
    with pytest.raises(TypeError):
        huffman_bits(np.array([0.5]))
    with pytest.raises(ValidationError, match="empty"):
        huffman_bits(np.array([], np.int64))


def test_kmeans_then_huffman_deep_compression():
    w = np.random.default_rng(5).standard_normal(50_000).astype(F32)
    cb, idx = kmeans_quantize(w, 16)
    bits = huffman_bits(idx)
    assert bits < 4 * w.size  # Gaussian weights: Huffman beats 4-bit fixed width
    assert bits == heapq_huffman_total(idx)


# ----------------------------------------------------------- XNOR / TWN
@pytest.mark.parametrize("axis", [0, 1, -1, None])
def test_binarize_formula(axis):
    w = np.random.default_rng(0).standard_normal((8, 4, 3, 3)).astype(F32)
    w[0, 0, 0, 0] = 0.0
    w0 = w.copy()
    b, alpha = binarize(w, axis=axis)
    assert np.array_equal(w, w0)
    np.testing.assert_array_equal(b, np.where(w >= 0, 1, -1).astype(np.int8))
    assert b.dtype == np.int8
    if axis is None:
        ref = np.abs(w.astype(np.float64)).mean()
        assert alpha.shape == ()
    else:
        other = tuple(d for d in range(4) if d != axis % 4)
        ref = np.abs(w.astype(np.float64)).mean(axis=other)
        assert alpha.shape == (w.shape[axis],)
    np.testing.assert_allclose(alpha, ref, rtol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, None])
def test_ternarize_formula(axis):
    w = np.random.default_rng(1).standard_normal((16, 5, 3)).astype(F32)
    w[3] = 0.0  # an all-zero filter: t = 0, alpha = 0
    t, alpha = ternarize(w, axis=axis)
    w64 = np.abs(w.astype(np.float64))
    if axis is None:
        delta = 0.7 * w64.mean()
        mask = w64 > delta
        ref_alpha = w64[mask].mean()
    else:
        other = tuple(d for d in range(3) if d != axis)
        delta = np.expand_dims(0.7 * w64.mean(axis=other), other)
        mask = w64 > delta
        ref_alpha = np.where(mask, w64, 0).sum(axis=other) / np.maximum(mask.sum(axis=other), 1)
    np.testing.assert_array_equal(t, np.where(mask, np.sign(w), 0).astype(np.int8))
    np.testing.assert_allclose(alpha, ref_alpha, rtol=1e-6)
    if axis == 0:
        assert alpha[3] == 0 and not t[3].any()
    # the ternary approximation is better than the binary one for Gaussian weights
    if axis == 0:
        b, a_b = binarize(w, axis=0)
        et = np.sum((alpha[:, None, None] * t - w) ** 2)
        eb = np.sum((a_b[:, None, None] * b - w) ** 2)
        assert et < eb


def test_binary_ternary_bad_input():
    with pytest.raises(ValidationError, match="axis"):
        binarize(np.ones((2, 3), F32), axis=2)
    with pytest.raises(ValidationError, match="w contains NaN"):
        ternarize(np.array([[1.0, np.inf]], F32))
    with pytest.raises(ValidationError, match="empty"):
        binarize(np.zeros((0, 3), F32))
    with pytest.raises(TypeError):
        ternarize(np.ones((2, 2), np.int64))
    with pytest.raises(ValidationError, match="threshold"):
        ternarize(np.ones((2, 2), F32), threshold=-1)
