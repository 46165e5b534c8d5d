"""lpcv.quantize calibration against NumPy references."""
from __future__ import annotations

import numpy as np
import pytest

from lpcv import _core
from lpcv.exceptions import NotFittedError, ValidationError
from lpcv.quantize import Calibrator, histogram

F32 = np.float32


def _gauss(n, seed=0, loc=0.0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(n) * scale + loc).astype(F32)


# -------------------------------------------------------------- histogram
@pytest.mark.parametrize("bins", [1, 7, 256, 2048, 100_000])
@pytest.mark.parametrize("rng_", [None, (-1.0, 2.5), (0.1, 0.10001), (-1e-3, 1e-3)])
def test_histogram_matches_numpy_exactly(bins, rng_):
    x = _gauss(300_001, seed=bins)
    x[:64] = F32(0.1000001)
    counts, edges = histogram(x, bins=bins, range=rng_)
    # values exactly on edges, and just below/above them
    e32 = edges[: min(bins, 300)].astype(F32)
    x[100:100 + e32.size] = e32
    x[1000:1000 + e32.size] = np.nextafter(e32, -np.inf)
    counts, edges = histogram(x, bins=bins, range=rng_)
    assert counts.dtype == np.int64 and counts.shape == (bins,) and edges.shape == (bins + 1,)
    ref, _ = np.histogram(x.astype(np.float64), bins=edges)
    np.testing.assert_array_equal(counts, ref)
    lo, hi = (float(x.min()), float(x.max())) if rng_ is None else rng_
    assert edges[0] == lo and edges[-1] == hi
    oracle = np.zeros(bins, np.int64)
    _core.ref_calib_histogram_add(x, lo, hi, oracle)
    np.testing.assert_array_equal(counts, oracle)


def test_histogram_uniform_edges_match_numpy_linspace():
    x = _gauss(10_000).astype(np.float64)
    counts, edges = histogram(x, bins=64, range=(-3.0, 3.0))
    np.testing.assert_allclose(edges, np.linspace(-3.0, 3.0, 65), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(counts, np.histogram(x.astype(F32).astype(np.float64),
                                                       bins=edges)[0])


def test_histogram_constant_and_bad_input():
    counts, edges = histogram(np.full(5, 2.0, F32), bins=4)
    assert edges[0] == 1.5 and edges[-1] == 2.5 and counts.sum() == 5
    with pytest.raises(ValidationError, match="empty"):
        histogram(np.zeros(0, F32))
    with pytest.raises(ValidationError, match="x contains NaN or Inf"):
        histogram(np.array([1.0, np.nan], F32))
    with pytest.raises(ValidationError, match="NaN or Inf"):
        histogram(np.array([1.0, np.inf], F32), range=(0, 1))
    with pytest.raises(TypeError):
        histogram(np.arange(4))
    with pytest.raises(ValidationError, match="bins"):
        histogram(np.ones(3), bins=0)
    with pytest.raises(ValidationError, match="range"):
        histogram(np.ones(3), range=(1.0, 1.0))
    with pytest.raises(ValidationError, match="range"):
        histogram(np.ones(3), range=(0.0, np.inf))


# ------------------------------------------------------------- streaming
def test_streaming_equals_all_at_once_when_range_fixed():
    x = _gauss(200_000, seed=1)
    i, j = int(np.argmin(x)), int(np.argmax(x))
    first = np.concatenate([x[[i, j]], x[:1000]])  # holds the global min and max
    rest = np.array_split(x, 7)
    for method in ("minmax", "percentile"):
        s = Calibrator(method=method, percentile=99.9)
        s.update(first)
        for r in rest:
            s.update(r)
        a = Calibrator(method=method, percentile=99.9).update(np.concatenate([first] + rest))
        assert s.compute_range() == a.compute_range()
        assert s.n_samples_seen_ == a.n_samples_seen_ == x.size + 1002
        if method == "percentile":
            np.testing.assert_array_equal(s.histogram_, a.histogram_)
            np.testing.assert_array_equal(s.bin_edges_, a.bin_edges_)


def test_streaming_with_growing_range():
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal(50_000).astype(F32) * F32(s) + F32(o)
               for s, o in [(0.1, 0), (1, 0), (3, 2), (0.5, -9), (10, 0)]]
    cal = Calibrator(method="percentile", bins=512)
    for b in batches:
        cal.update(b)
        lo, hi = cal.bin_edges_[0], cal.bin_edges_[-1]
        assert lo <= cal.min_ and hi >= cal.max_
    allx = np.concatenate(batches)
    assert cal.histogram_.sum() == allx.size
    assert cal.min_ == allx.min() and cal.max_ == allx.max()
    # exact re-binning: the same histogram as binning everything with the final edges
    # (up to values lying within float rounding of an edge)
    ref, _ = np.histogram(allx.astype(np.float64), bins=cal.bin_edges_)
    assert np.abs(cal.histogram_ - ref).sum() <= 4


def test_grow_histogram_is_exact_rebinning():
    counts = np.arange(1, 9, dtype=np.int64)  # 8 bins over [0, 8): width 1
    new, lo, hi = _core.calib_grow(counts, 0.0, 8.0, -2.5, 9.0, False)
    # j = 3 old bins added below, k = 2: new width 2 from -3
    assert (lo, hi) == (-3.0, 13.0)
    expected = np.zeros(8, np.int64)
    for i, c in enumerate(counts):
        expected[(i + 3) // 2] += c
    np.testing.assert_array_equal(new, expected)
    new, lo, hi = _core.calib_grow(counts, -4.0, 4.0, -5.0, 11.0, True)  # zero-centred
    assert (lo, hi) == (-12.0, 12.0)  # k = 3, j = 8
    expected = np.zeros(8, np.int64)
    for i, c in enumerate(counts):
        expected[(i + 8) // 3] += c
    np.testing.assert_array_equal(new, expected)
    same, lo, hi = _core.calib_grow(counts, 0.0, 8.0, 1.0, 2.0, False)
    np.testing.assert_array_equal(same, counts)


# ---------------------------------------------------------------- methods
@pytest.mark.parametrize("pct", [99.99, 99.0, 90.0, 50.0])
def test_percentile_within_one_bin(pct):
    x = np.concatenate([_gauss(300_000, seed=3), _gauss(1000, seed=4, scale=20)])
    cal = Calibrator(method="percentile", percentile=pct, bins=2048).update(x)
    lo, hi = cal.compute_range()
    w = cal.bin_edges_[1] - cal.bin_edges_[0]
    assert abs(hi - np.percentile(x, pct)) <= w
    assert abs(lo - np.percentile(x, 100 - pct)) <= w


def np_quant_error(counts, lo, hi, a, b, bits, signed, symmetric, p):
    """Expected Lp error over bin centres (independent NumPy version)."""
    if signed:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        qmin, qmax = 0, 2 ** bits - 1
    z = 0.0
    if symmetric:
        amax = max(abs(a), abs(b)) if signed else max(b, 0.0)
        s = amax / qmax
    else:
        a0, b0 = min(a, 0.0), max(b, 0.0)
        s = (b0 - a0) / (qmax - qmin)
        if s > 0:
            z = float(np.clip(qmin - np.rint(a0 / s), qmin, qmax))
    if not s > 0:
        s = np.finfo(np.float64).tiny
    w = (hi - lo) / counts.size
    c = lo + (np.arange(counts.size) + 0.5) * w
    q = np.clip(np.rint(c / s) + z, qmin, qmax)
    d = np.abs(c - (q - z) * s)
    return float(np.sum(counts * d ** p))


@pytest.mark.parametrize("symmetric,signed", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("bits,p", [(8, 2.0), (4, 2.0), (4, 1.0), (6, 2.4)])
def test_mse_against_brute_force(symmetric, signed, bits, p):
    rng = np.random.default_rng(bits)
    x = np.concatenate([rng.laplace(size=100_000), rng.laplace(size=50) * 30]).astype(F32)
    if not signed:
        x = np.abs(x)
    cal = Calibrator(method="mse", bits=bits, symmetric=symmetric, signed=signed, p=p,
                     bins=1024).update(x)
    a, b = cal.compute_range()
    h, (lo, hi) = cal.histogram_, (cal.bin_edges_[0], cal.bin_edges_[-1])
    mn, mx = float(x.min()), float(x.max())
    amax = max(abs(mn), abs(mx)) if signed else max(mx, 0.0)
    errs, cands = [], []
    for k in range(1, 513):
        al = k / 512
        if symmetric:
            cand = (-al * amax, al * amax) if signed else (0.0, al * amax)
        else:
            cand = (al * mn, al * mx)
        cands.append(cand)
        errs.append(np_quant_error(h, lo, hi, *cand, bits, signed, symmetric, p))
    best = int(np.argmin(errs))
    got = np_quant_error(h, lo, hi, a, b, bits, signed, symmetric, p)
    assert got <= errs[best] * (1 + 1e-9)
    assert any(np.isclose(a, c[0], rtol=1e-12, atol=0) and np.isclose(b, c[1], rtol=1e-12)
               for c in cands)
    assert np.isclose(_core.calib_quant_error(h, lo, hi, a, b,
                                              _core.QuantScheme(bits, signed, symmetric,
                                                                False, False), p),
                      got, rtol=1e-9)
    # clipping beats min-max for heavy-tailed data at low bit width
    if bits == 4:
        assert b < amax


def np_entropy_threshold(hist, width, nq):
    """TensorRT-style KL search, written independently with NumPy."""
    hist = hist.astype(np.float64)
    n = hist.size
    best_i, best_kl = None, np.inf
    for i in range(nq, n + 1):
        P = hist[:i].copy()
        P[i - 1] += hist[i:].sum()
        m = i // nq
        starts = np.arange(nq) * m
        stops = np.append(starts[1:], i)
        Q = np.zeros(i)
        for st, sp in zip(starts, stops):
            nz = P[st:sp] != 0
            if nz.any():
                Q[st:sp][nz] = hist[st:sp].sum() / nz.sum()
        if P.sum() == 0 or Q.sum() == 0:
            continue
        P /= P.sum()
        Q /= Q.sum()
        mask = P > 0
        if np.any(Q[mask] == 0):
            continue
        kl = float(np.sum(P[mask] * np.log(P[mask] / Q[mask])))
        if kl < best_kl - 1e-12 * abs(best_kl) or best_i is None:
            best_i, best_kl = i, kl
    return best_i * width, best_kl


@pytest.mark.parametrize("bits,signed", [(4, True), (5, False), (8, True)])
def test_entropy_against_brute_force(bits, signed):
    rng = np.random.default_rng(bits)
    x = np.concatenate([rng.standard_normal(200_000), rng.standard_normal(300) * 8])
    if not signed:
        x = np.abs(x)
    x = x.astype(F32)
    cal = Calibrator(method="entropy", bits=bits, signed=signed, bins=1024).update(x)
    lo, hi = cal.compute_range()
    h = cal.histogram_
    half = h.size // 2
    width = (cal.bin_edges_[-1] - cal.bin_edges_[0]) / h.size
    assert cal.bin_edges_[0] == -cal.bin_edges_[-1]  # zero-centred
    abs_h = h[half:] + h[half - 1::-1]
    ref_abs, _ = np.histogram(np.abs(x).astype(np.float64),
                              bins=cal.bin_edges_[half:])
    assert np.abs(abs_h - ref_abs).sum() <= 2  # folding is exact up to edge rounding
    nq = 2 ** (bits - 1) if signed else 2 ** bits
    t_ref, _ = np_entropy_threshold(abs_h, width, nq)
    t = _core.calib_entropy_threshold(np.ascontiguousarray(abs_h), width, nq)
    assert t == pytest.approx(t_ref, rel=1e-12)
    assert hi == pytest.approx(min(float(x.max()), t_ref), rel=1e-12)
    assert lo == pytest.approx(max(float(x.min()), -t_ref), rel=1e-12)
    assert 1.5 < t < float(np.abs(x).max())  # clips the outliers, keeps the bulk


def test_moving_average():
    batches = [_gauss(1000, seed=s, scale=s + 1) for s in range(5)]
    cal = Calibrator(method="moving_average", momentum=0.8)
    mn = mx = None
    for b in batches:
        cal.update(b)
        bmin, bmax = float(b.min()), float(b.max())
        mn = bmin if mn is None else 0.8 * mn + 0.2 * bmin
        mx = bmax if mx is None else 0.8 * mx + 0.2 * bmax
    assert cal.compute_range() == pytest.approx((mn, mx), rel=1e-12)
    assert cal.min_ == min(float(b.min()) for b in batches)
    assert cal.histogram_ is None  # no histogram needed: constant and tiny memory


@pytest.mark.parametrize("method", ["minmax", "moving_average", "percentile", "mse", "entropy"])
@pytest.mark.parametrize("c", [0.0, 2.5, -0.75])
def test_constant_data(method, c):
    cal = Calibrator(method=method, symmetric=False)
    cal.update(np.full(100, c, F32)).update(np.full(7, c, F32))
    assert cal.compute_range() == (c, c)
    s, z = cal.scale_zero_point()
    assert s == (abs(c) if c else 1.0)
    q = np.clip(np.rint(c / s) + z, -128, 127)
    assert (q - z) * s == c  # exact round trip


@pytest.mark.parametrize("method", ["percentile", "mse", "entropy"])
def test_constant_then_spread(method):
    cal = Calibrator(method=method).update(np.zeros(1000, F32)).update(_gauss(5000))
    assert cal.histogram_.sum() == 6000
    lo, hi = cal.compute_range()
    assert lo < 0 < hi


def test_scale_zero_point_matches_quantize_formulas():
    from lpcv.quantize import quantize
    x = _gauss(10_000, seed=9, loc=1.0)
    cal = Calibrator(method="minmax", symmetric=False, bits=8).update(x)
    s, z = cal.scale_zero_point()
    _, s2, z2 = quantize(x, bits=8, symmetric=False)
    assert s == float(s2) and z == int(z2)


def test_fit_and_estimator_contract():
    cal = Calibrator(method="percentile", percentile=99.0)
    assert cal.get_params()["percentile"] == 99.0
    with pytest.raises(NotFittedError):
        cal.compute_range()
    with pytest.raises(NotFittedError):
        cal.scale_zero_point()
    batches = [_gauss(1000, seed=s) for s in range(3)]
    kept = [b.copy() for b in batches]
    r1 = cal.fit(batches, progress=False).compute_range()
    assert cal.n_batches_ == 3
    for b, k in zip(batches, kept):
        np.testing.assert_array_equal(b, k)
    r2 = cal.fit((b for b in batches), progress=False).compute_range()
    assert r1 == r2
    cal.reset()
    with pytest.raises(NotFittedError):
        cal.compute_range()
    assert cal.set_params(method="minmax") is cal
    assert cal.fit(np.concatenate(batches), progress=False).compute_range() == (
        float(np.concatenate(batches).min()), float(np.concatenate(batches).max()))
    with pytest.raises(ValidationError, match="batches is empty"):
        cal.fit([], progress=False)


def test_bad_input():
    with pytest.raises(ValidationError, match="empty"):
        Calibrator().update(np.zeros((0, 4), F32))
    for bad in (np.nan, np.inf):
        with pytest.raises(ValidationError, match="batch contains NaN or Inf"):
            Calibrator(method="percentile").update(np.array([1.0, bad]))
    with pytest.raises(TypeError):
        Calibrator().update(np.arange(10))
    with pytest.raises(TypeError):
        Calibrator().update(np.ones(3, np.complex64))
    with pytest.raises(ValidationError, match="method"):
        Calibrator(method="kl").update(np.ones(3))
    with pytest.raises(ValidationError, match="percentile"):
        Calibrator(method="percentile", percentile=101).update(np.ones(3))
    with pytest.raises(ValidationError, match="momentum"):
        Calibrator(momentum=1.0).update(np.ones(3))
    with pytest.raises(ValidationError, match="bins"):
        Calibrator(bins=3).update(np.ones(3))
    with pytest.raises(ValidationError, match="bins >= 256"):
        Calibrator(method="entropy", bins=128).update(np.ones(3))
    with pytest.raises(ValidationError, match="bits"):
        Calibrator(bits=1).update(np.ones(3))
    with pytest.raises(ValidationError, match="p must"):
        Calibrator(method="mse", p=0).update(np.ones(3))
    # a failed update leaves the state untouched
    cal = Calibrator(method="percentile").update(np.ones(3) * 2)
    with pytest.raises(ValidationError):
        cal.update(np.array([np.nan]))
    assert cal.n_samples_seen_ == 3
