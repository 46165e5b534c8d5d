// Non-uniform quantization. See nonuniform.hpp.
#include "lpcv/quantize/nonuniform.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <queue>
#include <random>
#include <unordered_set>

#include "lpcv/common/errors.hpp"
#include "lpcv/common/parallel.hpp"

namespace lpcv::quantize {
namespace {

constexpr std::int64_t kChunk = 1 << 16;

/// Index of the nearest of the sorted centroids c[0..k) (lowest on ties).
inline std::int32_t nearest(const double* c, int k, double v) {
  const std::int32_t j = static_cast<std::int32_t>(std::upper_bound(c, c + k, v) - c);
  std::int32_t best;
  if (j == 0) best = 0;
  else if (j == k) best = k - 1;
  else best = (v - c[j - 1] <= c[j] - v) ? j - 1 : j;
  while (best > 0 && c[best - 1] == c[best]) --best;
  return best;
}

struct AssignStats {
  std::vector<double> sum;
  std::vector<std::int64_t> count;
  std::int64_t changed = 0;
  double sse = 0.0;
};

/// Assigns labels; per-chunk partial sums merged in chunk order (so the
/// result does not depend on the number of threads).
AssignStats assign(const float* x, std::int64_t n, const std::vector<double>& c,
                   std::int32_t* labels, bool track_changes) {
  const int k = static_cast<int>(c.size());
  const std::int64_t units = (n + kChunk - 1) / kChunk;
  std::vector<double> psum(static_cast<std::size_t>(units) * k, 0.0);
  std::vector<std::int64_t> pcnt(static_cast<std::size_t>(units) * k, 0);
  std::vector<std::int64_t> pchanged(units, 0);
  std::vector<double> psse(units, 0.0);
  parallel_for_dynamic(units, [&](std::int64_t u) {
    const std::int64_t i0 = u * kChunk, i1 = std::min(n, i0 + kChunk);
    double* s = psum.data() + static_cast<std::size_t>(u) * k;
    std::int64_t* cn = pcnt.data() + static_cast<std::size_t>(u) * k;
    std::int64_t changed = 0;
    double sse = 0.0;
    for (std::int64_t i = i0; i < i1; ++i) {
      const double v = x[i];
      const std::int32_t j = nearest(c.data(), k, v);
      if (track_changes) changed += labels[i] != j;
      labels[i] = j;
      s[j] += v;
      cn[j] += 1;
      sse += (v - c[j]) * (v - c[j]);
    }
    pchanged[u] = changed;
    psse[u] = sse;
  }, 2);
  AssignStats st;
  st.sum.assign(k, 0.0);
  st.count.assign(k, 0);
  for (std::int64_t u = 0; u < units; ++u) {
    for (int j = 0; j < k; ++j) {
      st.sum[j] += psum[static_cast<std::size_t>(u) * k + j];
      st.count[j] += pcnt[static_cast<std::size_t>(u) * k + j];
    }
    st.changed += pchanged[u];
    st.sse += psse[u];
  }
  return st;
}

}  // namespace

KMeansResult kmeans_1d(const float* x, std::int64_t n, const KMeansParams& p,
                       std::int32_t* labels) {
  if (n < 1) throw InvalidArgument("kmeans: empty input");
  if (p.n_clusters < 1 || p.n_clusters > 65536)
    throw InvalidArgument(cat("n_clusters must be in 1..65536, got ", p.n_clusters));
  if (p.max_iter < 1)
    throw InvalidArgument(cat("max_iter must be >= 1, got ", p.max_iter));
  if (!(p.tol >= 0.0) || !std::isfinite(p.tol))
    throw InvalidArgument(cat("tol must be finite and >= 0, got ", p.tol));
  const int k = p.n_clusters;
  Layout L;
  L.inner = n;
  float flo, fhi;
  min_max(x, L, &flo, &fhi);  // throws on NaN / Inf
  const double lo = flo, hi = fhi;
  std::vector<double> c(k);
  if (p.init == KMeansInit::linear) {
    for (int j = 0; j < k; ++j)
      c[j] = k == 1 ? 0.5 * (lo + hi) : lo + (hi - lo) * j / (k - 1);
  } else {
    std::mt19937_64 rng(p.seed);
    // Floyd's sampling of min(k, n) distinct positions
    const std::int64_t m = std::min<std::int64_t>(k, n);
    std::unordered_set<std::int64_t> chosen;
    std::vector<std::int64_t> order;
    for (std::int64_t r = n - m; r < n; ++r) {
      std::uniform_int_distribution<std::int64_t> d(0, r);
      const std::int64_t t = d(rng);
      const std::int64_t pick = chosen.count(t) ? r : t;
      chosen.insert(pick);
      order.push_back(pick);
    }
    for (int j = 0; j < k; ++j) c[j] = x[order[j % m]];
  }
  std::sort(c.begin(), c.end());
  std::fill(labels, labels + n, -1);
  KMeansResult res;
  const double move_tol = p.tol * (hi - lo);
  for (int it = 0; it < p.max_iter; ++it) {
    const AssignStats st = assign(x, n, c, labels, true);
    res.n_iter = it + 1;
    if (it > 0 && st.changed == 0) break;  // converged: centroids are the means
    double shift = 0.0;
    for (int j = 0; j < k; ++j) {
      if (st.count[j] == 0) continue;
      const double m = st.sum[j] / static_cast<double>(st.count[j]);
      shift = std::max(shift, std::fabs(m - c[j]));
      c[j] = m;
    }
    std::sort(c.begin(), c.end());
    if (shift <= move_tol) break;
  }
  res.codebook.resize(k);
  for (int j = 0; j < k; ++j) res.codebook[j] = static_cast<float>(c[j]);
  std::sort(res.codebook.begin(), res.codebook.end());
  res.inertia = kmeans_assign(x, n, res.codebook.data(), k, labels);
  return res;
}

double kmeans_assign(const float* x, std::int64_t n, const float* codebook,
                     int k, std::int32_t* labels) {
  if (k < 1) throw InvalidArgument("kmeans_assign: empty codebook");
  std::vector<double> c(codebook, codebook + k);
  for (int j = 0; j < k; ++j)
    if (!std::isfinite(c[j]) || (j > 0 && c[j] < c[j - 1]))
      throw InvalidArgument("codebook must be finite and sorted ascending");
  for (std::int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) throw InvalidArgument("kmeans: input contains NaN or Inf");
  return assign(x, n, c, labels, false).sse;
}

std::vector<std::int64_t> label_counts(const std::int32_t* labels,
                                       std::int64_t n, int k) {
  std::vector<std::int64_t> f(k, 0);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t l = labels[i];
    if (l < 0 || l >= k)
      throw InvalidArgument(cat("index ", l, " at position ", i, " is outside [0, ", k, ")"));
    ++f[l];
  }
  return f;
}

std::vector<int> huffman_code_lengths(const std::vector<std::int64_t>& freq) {
  const int m = static_cast<int>(freq.size());
  std::vector<int> len(m, 0);
  using Node = std::pair<std::int64_t, int>;  // (weight, node id)
  std::priority_queue<Node, std::vector<Node>, std::greater<Node>> heap;
  std::vector<int> parent;
  for (int s = 0; s < m; ++s) {
    if (freq[s] < 0) throw InvalidArgument("negative frequency");
    if (freq[s] > 0) {
      parent.push_back(-1);
      heap.push({freq[s], static_cast<int>(parent.size()) - 1});
    }
  }
  const int used = static_cast<int>(parent.size());
  if (used == 0) return len;
  if (used == 1) {
    for (int s = 0; s < m; ++s) len[s] = freq[s] > 0 ? 1 : 0;
    return len;
  }
  while (heap.size() > 1) {
    const Node a = heap.top();
    heap.pop();
    const Node b = heap.top();
    heap.pop();
    parent.push_back(-1);
    const int id = static_cast<int>(parent.size()) - 1;
    parent[a.second] = id;
    parent[b.second] = id;
    heap.push({a.first + b.first, id});
  }
  int leaf = 0;
  for (int s = 0; s < m; ++s) {
    if (freq[s] == 0) continue;
    int d = 0;
    for (int v = leaf; parent[v] != -1; v = parent[v]) ++d;
    len[s] = d;
    ++leaf;
  }
  return len;
}

namespace {
/// Calls f(element_index, param_index) for every element, serially.
template <typename F>
void for_each_element(const Layout& L, F&& f) {
  const std::int64_t C = L.channels, G = L.group;
  std::int64_t e = 0;
  for (std::int64_t o = 0; o < L.outer; ++o)
    for (std::int64_t c = 0; c < C; ++c) {
      for (std::int64_t i = 0; i < L.inner; ++i, ++e) {
        std::int64_t p = 0;
        if (L.granularity == Granularity::per_channel) p = c;
        else if (L.granularity == Granularity::per_group)
          p = (o * (C / G) + c / G) * L.inner + i;
        f(e, p);
      }
    }
}

std::vector<double> mean_abs(const float* w, const Layout& L) {
  const std::int64_t P = L.num_params();
  std::vector<double> s(P, 0.0);
  std::vector<std::int64_t> cnt(P, 0);
  bool bad = false;
  for_each_element(L, [&](std::int64_t e, std::int64_t p) {
    bad |= !std::isfinite(w[e]);
    s[p] += std::fabs(static_cast<double>(w[e]));
    ++cnt[p];
  });
  if (bad) throw InvalidArgument("input contains NaN or Inf");
  for (std::int64_t p = 0; p < P; ++p) s[p] /= static_cast<double>(cnt[p]);
  return s;
}
}  // namespace

void binarize(const float* w, const Layout& L, std::int8_t* b, float* alpha) {
  if (L.size() == 0) throw InvalidArgument("binarize: empty input");
  const std::vector<double> m = mean_abs(w, L);
  for (std::size_t p = 0; p < m.size(); ++p) alpha[p] = static_cast<float>(m[p]);
  for_each_element(L, [&](std::int64_t e, std::int64_t) {
    b[e] = w[e] >= 0.0f ? 1 : -1;
  });
}

void ternarize(const float* w, const Layout& L, double factor, std::int8_t* t,
               float* alpha, float* delta) {
  if (L.size() == 0) throw InvalidArgument("ternarize: empty input");
  if (!(factor >= 0.0) || !std::isfinite(factor))
    throw InvalidArgument(cat("threshold factor must be finite and >= 0, got ", factor));
  const std::vector<double> m = mean_abs(w, L);
  const std::int64_t P = L.num_params();
  std::vector<double> d(P), s(P, 0.0);
  std::vector<std::int64_t> cnt(P, 0);
  for (std::int64_t p = 0; p < P; ++p) d[p] = factor * m[p];
  for_each_element(L, [&](std::int64_t e, std::int64_t p) {
    const double a = std::fabs(static_cast<double>(w[e]));
    if (a > d[p]) {
      t[e] = w[e] > 0.0f ? 1 : -1;
      s[p] += a;
      ++cnt[p];
    } else {
      t[e] = 0;
    }
  });
  for (std::int64_t p = 0; p < P; ++p) {
    alpha[p] = cnt[p] ? static_cast<float>(s[p] / static_cast<double>(cnt[p])) : 0.0f;
    delta[p] = static_cast<float>(d[p]);
  }
}

}  // namespace lpcv::quantize
