// Bindings of lpcv::quantize. Thin: arrays in as C-contiguous views with the
// exact dtype (the Python layer converts), outputs allocated here, GIL
// released around every core call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "lpcv/common/errors.hpp"
#include "lpcv/quantize/calibration.hpp"
#include "lpcv/quantize/nonuniform.hpp"
#include "lpcv/quantize/uniform.hpp"

#include "numpy_views.hpp"

namespace lpcv::bindings {

namespace py = pybind11;
namespace q = lpcv::quantize;

namespace {

q::Granularity granularity_from(const std::string& g) {
  if (g == "per_tensor") return q::Granularity::per_tensor;
  if (g == "per_channel") return q::Granularity::per_channel;
  if (g == "per_group") return q::Granularity::per_group;
  throw InvalidArgument(cat("granularity must be per_tensor, per_channel or "
                            "per_group, got ", g));
}

q::Layout layout_of(const py::array& a, const std::string& g, int axis,
                    std::int64_t group) {
  return q::make_layout(shape_of(a), granularity_from(g), axis, group);
}

template <typename T>
void require_params(const carray<float>& scale, const carray<T>& zp,
                    const q::Layout& L) {
  if (scale.size() != L.num_params() || zp.size() != L.num_params())
    throw ShapeError(cat("expected ", L.num_params(),
                         " scales and zero points, got ", scale.size(), " and ",
                         zp.size()));
}

// Calls f with a value of the smallest integer type holding the scheme's
// codes (int8/uint8 up to 8 bits, else int16/uint16): one dispatch for every
// binding that returns quantized integers.
template <typename F>
auto with_int_type(const q::Scheme& s, F&& f) -> decltype(f(std::int8_t{})) {
  if (s.bits <= 8) return s.is_signed ? f(std::int8_t{}) : f(std::uint8_t{});
  return s.is_signed ? f(std::int16_t{}) : f(std::uint16_t{});
}

template <typename T>
py::array quantize_as(const carray<float>& x, const carray<float>& scale,
                      const carray<std::int32_t>& zp, const q::Layout& L,
                      const q::Scheme& s) {
  carray<T> out(shape_of(x));
  const float* xp = x.data();
  T* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    q::quantize<T>(xp, op, L, scale.data(), zp.data(), s);
  }
  return std::move(out);
}

template <typename T>
bool try_dequantize(const py::array& qa, float* y, const q::Layout& L,
                    const float* s, const std::int32_t* z) {
  if (!py::isinstance<carray<T>>(qa) || !(qa.flags() & py::array::c_style))
    return false;
  auto a = py::array_t<T>::ensure(qa);
  if (!a.dtype().is(py::dtype::of<T>())) return false;
  const T* qp = a.data();
  py::gil_scoped_release release;
  q::dequantize<T>(qp, y, L, s, z);
  return true;
}

q::Histogram hist_from(const carray<std::int64_t>& counts, double lo, double hi) {
  q::Histogram h;
  h.lo = lo;
  h.hi = hi;
  h.counts.assign(counts.data(), counts.data() + counts.size());
  q::histogram_edges(lo, hi, static_cast<std::int64_t>(h.counts.size()));  // validates
  return h;
}

}  // namespace

void bind_quantize(py::module_& m) {
  py::class_<q::Scheme>(m, "QuantScheme")
      .def(py::init([](int bits, bool is_signed, bool symmetric, bool narrow,
                       bool pot) {
             q::Scheme s{bits, is_signed, symmetric, narrow, pot};
             q::int_range(s);  // validates bits
             return s;
           }),
           py::arg("bits"), py::arg("is_signed"), py::arg("symmetric"),
           py::arg("narrow_range"), py::arg("power_of_two"))
      .def_readonly("bits", &q::Scheme::bits)
      .def_readonly("is_signed", &q::Scheme::is_signed)
      .def_readonly("symmetric", &q::Scheme::symmetric)
      .def_readonly("narrow_range", &q::Scheme::narrow_range)
      .def_readonly("power_of_two", &q::Scheme::power_of_two);
  m.def("quant_int_range", [](const q::Scheme& s) {
    auto r = q::int_range(s);
    return py::make_tuple(r.qmin, r.qmax);
  });
  m.def("quant_num_params",
        [](const std::vector<std::int64_t>& shape, const std::string& g,
           int axis, std::int64_t group) {
          return q::make_layout(shape, granularity_from(g), axis, group).num_params();
        },
        py::arg("shape"), py::arg("granularity"), py::arg("axis"), py::arg("group_size"));
  auto min_max = [](bool ref) {
    return [ref](const carray<float>& x, const std::string& g, int axis,
                 std::int64_t group) {
      const q::Layout L = layout_of(x, g, axis, group);
      carray<float> lo(L.num_params()), hi(L.num_params());
      const float* xp = x.data();
      float* lp = lo.mutable_data();
      float* hp = hi.mutable_data();
      {
        py::gil_scoped_release release;
        if (ref) q::ref_min_max(xp, L, lp, hp);
        else q::min_max(xp, L, lp, hp);
      }
      return py::make_tuple(lo, hi);
    };
  };
  m.def("quant_min_max", min_max(false), py::arg("x").noconvert(),
        py::arg("granularity"), py::arg("axis"), py::arg("group_size"));
  m.def("ref_quant_min_max", min_max(true), py::arg("x").noconvert(),
        py::arg("granularity"), py::arg("axis"), py::arg("group_size"));
  m.def("quant_params",
        [](const carray<float>& lo, const carray<float>& hi, const q::Scheme& s) {
          if (lo.size() != hi.size())
            throw ShapeError(cat("lo and hi sizes differ: ", lo.size(), " vs ", hi.size()));
          carray<float> scale(lo.size());
          carray<std::int32_t> zp(lo.size());
          q::params_from_range(lo.data(), hi.data(), lo.size(), s,
                               scale.mutable_data(), zp.mutable_data());
          return py::make_tuple(scale, zp);
        },
        py::arg("lo").noconvert(), py::arg("hi").noconvert(), py::arg("scheme"));
  m.def("quant_check_params",
        [](const carray<float>& scale, const carray<std::int32_t>& zp,
           const q::Scheme& s) {
          if (scale.size() != zp.size())
            throw ShapeError(cat("scale and zero_point sizes differ: ",
                                 scale.size(), " vs ", zp.size()));
          q::check_params(scale.data(), zp.data(), scale.size(), s);
        },
        py::arg("scale").noconvert(), py::arg("zero_point").noconvert(),
        py::arg("scheme"));
  auto fq = [](bool ref) {
    return [ref](const carray<float>& x, const carray<float>& scale,
                 const carray<std::int32_t>& zp, const std::string& g, int axis,
                 std::int64_t group, const q::Scheme& s, py::object out) {
      const q::Layout L = layout_of(x, g, axis, group);
      require_params(scale, zp, L);
      carray<float> y;
      if (out.is_none()) {
        y = carray<float>(shape_of(x));
      } else {
        py::array oa = out.cast<py::array>();
        if (!oa.dtype().is(py::dtype::of<float>()) ||
            !(oa.flags() & py::array::c_style) || !oa.writeable() ||
            shape_of(oa) != shape_of(x))
          throw InvalidArgument("out must be a writeable C-contiguous float32 "
                                "array with the shape of x");
        y = py::reinterpret_borrow<carray<float>>(oa);
      }
      const float* xp = x.data();
      float* yp = y.mutable_data();
      {
        py::gil_scoped_release release;
        if (ref) q::ref_fake_quantize(xp, yp, L, scale.data(), zp.data(), s);
        else q::fake_quantize(xp, yp, L, scale.data(), zp.data(), s);
      }
      return y;
    };
  };
  m.def("quant_fake_quantize", fq(false), py::arg("x").noconvert(),
        py::arg("scale").noconvert(), py::arg("zero_point").noconvert(),
        py::arg("granularity"), py::arg("axis"), py::arg("group_size"),
        py::arg("scheme"), py::arg("out") = py::none());
  m.def("ref_quant_fake_quantize", fq(true), py::arg("x").noconvert(),
        py::arg("scale").noconvert(), py::arg("zero_point").noconvert(),
        py::arg("granularity"), py::arg("axis"), py::arg("group_size"),
        py::arg("scheme"), py::arg("out") = py::none());
  m.def("quant_quantize",
        [](const carray<float>& x, const carray<float>& scale,
           const carray<std::int32_t>& zp, const std::string& g, int axis,
           std::int64_t group, const q::Scheme& s) -> py::array {
          const q::Layout L = layout_of(x, g, axis, group);
          require_params(scale, zp, L);
          q::int_range(s);
          return with_int_type(
              s, [&](auto t) { return quantize_as<decltype(t)>(x, scale, zp, L, s); });
        },
        py::arg("x").noconvert(), py::arg("scale").noconvert(),
        py::arg("zero_point").noconvert(), py::arg("granularity"),
        py::arg("axis"), py::arg("group_size"), py::arg("scheme"));
  m.def("ref_quant_quantize",
        [](const carray<float>& x, const carray<float>& scale,
           const carray<std::int32_t>& zp, const std::string& g, int axis,
           std::int64_t group, const q::Scheme& s) {
          const q::Layout L = layout_of(x, g, axis, group);
          require_params(scale, zp, L);
          carray<std::int32_t> out(shape_of(x));
          q::ref_quantize_i32(x.data(), out.mutable_data(), L, scale.data(),
                              zp.data(), s);
          return out;
        },
        py::arg("x").noconvert(), py::arg("scale").noconvert(),
        py::arg("zero_point").noconvert(), py::arg("granularity"),
        py::arg("axis"), py::arg("group_size"), py::arg("scheme"));
  m.def("quant_dequantize",
        [](const py::array& qa, const carray<float>& scale,
           const carray<std::int32_t>& zp, const std::string& g, int axis,
           std::int64_t group) {
          const q::Layout L = layout_of(qa, g, axis, group);
          require_params(scale, zp, L);
          carray<float> y(shape_of(qa));
          float* yp = y.mutable_data();
          const float* sp = scale.data();
          const std::int32_t* zpp = zp.data();
          if (!(try_dequantize<std::int8_t>(qa, yp, L, sp, zpp) ||
                try_dequantize<std::uint8_t>(qa, yp, L, sp, zpp) ||
                try_dequantize<std::int16_t>(qa, yp, L, sp, zpp) ||
                try_dequantize<std::uint16_t>(qa, yp, L, sp, zpp)))
            throw InvalidArgument(cat("dequantize: q must be a C-contiguous int8, "
                                      "uint8, int16 or uint16 array, got ",
                                      std::string(py::str(qa.dtype()))));
          return y;
        },
        py::arg("q").noconvert(), py::arg("scale").noconvert(),
        py::arg("zero_point").noconvert(), py::arg("granularity"),
        py::arg("axis"), py::arg("group_size"));
  m.def("quant_pack_int4",
        [](const carray<std::int8_t>& qa, bool is_signed) {
          const std::int64_t n = qa.size();
          carray<std::uint8_t> out((n + 1) / 2);
          const std::int8_t* qp = qa.data();
          std::uint8_t* op = out.mutable_data();
          {
            py::gil_scoped_release release;
            q::pack_int4(qp, n, is_signed, op);
          }
          return out;
        },
        py::arg("q").noconvert(), py::arg("is_signed"));
  m.def("quant_unpack_int4",
        [](const carray<std::uint8_t>& packed, std::int64_t n, bool is_signed) {
          if (n < 0 || (n + 1) / 2 != packed.size())
            throw ShapeError(cat("unpack_int4: ", packed.size(),
                                 " bytes cannot hold ", n, " values"));
          carray<std::int8_t> out(n);
          const std::uint8_t* pp = packed.data();
          std::int8_t* op = out.mutable_data();
          {
            py::gil_scoped_release release;
            q::unpack_int4(pp, n, is_signed, op);
          }
          return out;
        },
        py::arg("packed").noconvert(), py::arg("n"), py::arg("is_signed"));
  // ---- calibration ----
  m.def("calib_edges", [](double lo, double hi, std::int64_t bins) {
    auto e = q::histogram_edges(lo, hi, bins);
    carray<double> out(static_cast<py::ssize_t>(e.size()));
    std::copy(e.begin(), e.end(), out.mutable_data());
    return out;
  }, py::arg("lo"), py::arg("hi"), py::arg("bins"));
  auto hist_add = [](bool ref) {
    return [ref](const carray<float>& x, double lo, double hi, py::array counts) {
      if (!counts.dtype().is(py::dtype::of<std::int64_t>()) ||
          !(counts.flags() & py::array::c_style) || !counts.writeable() || counts.ndim() != 1)
        throw InvalidArgument("counts must be a writeable 1-d C-contiguous int64 array");
      auto c = py::reinterpret_borrow<carray<std::int64_t>>(counts);
      const float* xp = x.data();
      std::int64_t* cp = c.mutable_data();
      const std::int64_t n = x.size(), bins = c.size();
      py::gil_scoped_release release;
      return ref ? q::ref_histogram_add(xp, n, lo, hi, bins, cp)
                 : q::histogram_add(xp, n, lo, hi, bins, cp);
    };
  };
  m.def("calib_histogram_add", hist_add(false), py::arg("x").noconvert(), py::arg("lo"),
        py::arg("hi"), py::arg("counts"));
  m.def("ref_calib_histogram_add", hist_add(true), py::arg("x").noconvert(), py::arg("lo"),
        py::arg("hi"), py::arg("counts"));
  m.def("calib_grow",
        [](const carray<std::int64_t>& counts, double lo, double hi, double new_min,
           double new_max, bool zero_centered) {
          q::Histogram g = q::grow_histogram(hist_from(counts, lo, hi), new_min, new_max,
                                             zero_centered);
          carray<std::int64_t> out(static_cast<py::ssize_t>(g.counts.size()));
          std::copy(g.counts.begin(), g.counts.end(), out.mutable_data());
          return py::make_tuple(out, g.lo, g.hi);
        },
        py::arg("counts").noconvert(), py::arg("lo"), py::arg("hi"), py::arg("new_min"),
        py::arg("new_max"), py::arg("zero_centered"));
  m.def("calib_percentile",
        [](const carray<std::int64_t>& counts, double lo, double hi, double fraction) {
          return q::histogram_percentile(hist_from(counts, lo, hi), fraction);
        },
        py::arg("counts").noconvert(), py::arg("lo"), py::arg("hi"), py::arg("fraction"));
  m.def("calib_quant_error",
        [](const carray<std::int64_t>& counts, double lo, double hi, double a, double b,
           const q::Scheme& s, double p) {
          return q::histogram_quant_error(hist_from(counts, lo, hi), a, b, s, p);
        },
        py::arg("counts").noconvert(), py::arg("lo"), py::arg("hi"), py::arg("a"),
        py::arg("b"), py::arg("scheme"), py::arg("p"));
  m.def("calib_mse_range",
        [](const carray<std::int64_t>& counts, double lo, double hi, double dmin,
           double dmax, const q::Scheme& s, double p, int n_candidates) {
          const q::Histogram h = hist_from(counts, lo, hi);
          py::gil_scoped_release release;
          return q::mse_range(h, dmin, dmax, s, p, n_candidates);
        },
        py::arg("counts").noconvert(), py::arg("lo"), py::arg("hi"), py::arg("data_min"),
        py::arg("data_max"), py::arg("scheme"), py::arg("p"), py::arg("n_candidates"));
  m.def("calib_entropy_threshold",
        [](const carray<std::int64_t>& abs_counts, double width, std::int64_t quant_bins) {
          std::vector<std::int64_t> h(abs_counts.data(), abs_counts.data() + abs_counts.size());
          py::gil_scoped_release release;
          return q::entropy_threshold(h, width, quant_bins);
        },
        py::arg("abs_counts").noconvert(), py::arg("width"), py::arg("quant_bins"));
  // ---- non-uniform ----
  m.def("kmeans_1d",
        [](const carray<float>& x, int n_clusters, int max_iter, double tol,
           const std::string& init, std::uint64_t seed) {
          q::KMeansParams p;
          p.n_clusters = n_clusters;
          p.max_iter = max_iter;
          p.tol = tol;
          if (init == "linear") p.init = q::KMeansInit::linear;
          else if (init == "random") p.init = q::KMeansInit::random;
          else throw InvalidArgument(cat("init must be 'linear' or 'random', got ", init));
          p.seed = seed;
          carray<std::int32_t> labels(shape_of(x));
          const float* xp = x.data();
          std::int32_t* lp = labels.mutable_data();
          const std::int64_t n = x.size();
          q::KMeansResult r;
          {
            py::gil_scoped_release release;
            r = q::kmeans_1d(xp, n, p, lp);
          }
          carray<float> cb(static_cast<py::ssize_t>(r.codebook.size()));
          std::copy(r.codebook.begin(), r.codebook.end(), cb.mutable_data());
          return py::make_tuple(cb, labels, r.n_iter, r.inertia);
        },
        py::arg("x").noconvert(), py::arg("n_clusters"), py::arg("max_iter"), py::arg("tol"),
        py::arg("init"), py::arg("seed"));
  m.def("kmeans_assign",
        [](const carray<float>& x, const carray<float>& codebook) {
          carray<std::int32_t> labels(shape_of(x));
          const float* xp = x.data();
          const float* cp = codebook.data();
          std::int32_t* lp = labels.mutable_data();
          const std::int64_t n = x.size();
          const int k = static_cast<int>(codebook.size());
          double sse;
          {
            py::gil_scoped_release release;
            sse = q::kmeans_assign(xp, n, cp, k, lp);
          }
          return py::make_tuple(labels, sse);
        },
        py::arg("x").noconvert(), py::arg("codebook").noconvert());
  m.def("label_counts",
        [](const carray<std::int32_t>& labels, int k) {
          if (k < 1) throw InvalidArgument(cat("number of symbols must be >= 1, got ", k));
          std::vector<std::int64_t> f;
          {
            py::gil_scoped_release release;
            f = q::label_counts(labels.data(), labels.size(), k);
          }
          carray<std::int64_t> out(static_cast<py::ssize_t>(f.size()));
          std::copy(f.begin(), f.end(), out.mutable_data());
          return out;
        },
        py::arg("labels").noconvert(), py::arg("k"));
  m.def("huffman_code_lengths",
        [](const carray<std::int64_t>& freq) {
          std::vector<std::int64_t> f(freq.data(), freq.data() + freq.size());
          const std::vector<int> len = q::huffman_code_lengths(f);
          carray<std::int64_t> out(static_cast<py::ssize_t>(len.size()));
          std::copy(len.begin(), len.end(), out.mutable_data());
          return out;
        },
        py::arg("freq").noconvert());
  m.def("binarize",
        [](const carray<float>& w, const std::string& g, int axis, std::int64_t group) {
          const q::Layout L = layout_of(w, g, axis, group);
          carray<std::int8_t> b(shape_of(w));
          carray<float> alpha(L.num_params());
          const float* wp = w.data();
          std::int8_t* bp = b.mutable_data();
          float* ap = alpha.mutable_data();
          {
            py::gil_scoped_release release;
            q::binarize(wp, L, bp, ap);
          }
          return py::make_tuple(b, alpha);
        },
        py::arg("w").noconvert(), py::arg("granularity"), py::arg("axis"),
        py::arg("group_size"));
  m.def("ternarize",
        [](const carray<float>& w, const std::string& g, int axis, std::int64_t group,
           double factor) {
          const q::Layout L = layout_of(w, g, axis, group);
          carray<std::int8_t> t(shape_of(w));
          carray<float> alpha(L.num_params()), delta(L.num_params());
          const float* wp = w.data();
          std::int8_t* tp = t.mutable_data();
          float* ap = alpha.mutable_data();
          float* dp = delta.mutable_data();
          {
            py::gil_scoped_release release;
            q::ternarize(wp, L, factor, tp, ap, dp);
          }
          return py::make_tuple(t, alpha, delta);
        },
        py::arg("w").noconvert(), py::arg("granularity"), py::arg("axis"),
        py::arg("group_size"), py::arg("threshold_factor"));
}

}  // namespace lpcv::bindings

// ---- layer-wise rounding: GPTQ and AdaRound (arrays (G, M, K)) ----
#include <memory>

#include "lpcv/quantize/adaround.hpp"
#include "lpcv/quantize/gptq.hpp"

namespace lpcv::bindings {

namespace {

template <typename T>
py::tuple gptq_as(const carray<float>& w, const carray<float>& h, const carray<float>& scale,
                  const carray<std::int32_t>& zp, const q::GptqParams& p) {
  const std::int64_t G = w.shape(0), M = w.shape(1), K = w.shape(2);
  carray<T> out({G, M, K});
  q::GptqResult r;
  const float* wp = w.data();
  const float* hp = h.data();
  const float* sp = scale.data();
  const std::int32_t* zpp = zp.data();
  T* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    r = q::gptq<T>(wp, hp, G, M, K, sp, zpp, p, op);
  }
  return py::make_tuple(out, r.loss, r.dead_columns);
}

// Keeps the arrays the core's views point into alive with the solver.
struct PyAdaRound {
  carray<float> w, x, xq, scale, bias;
  carray<std::int32_t> zp;
  std::unique_ptr<q::AdaRound> solver;
  std::int64_t G = 0, M = 0, K = 0;
};

template <typename T>
py::array ints_as(const std::vector<std::int32_t>& v, std::int64_t G, std::int64_t M,
                  std::int64_t K) {
  carray<T> out({G, M, K});
  T* op = out.mutable_data();
  for (std::size_t i = 0; i < v.size(); ++i) op[i] = static_cast<T>(v[i]);
  return std::move(out);
}

}  // namespace

void bind_quantize_layerwise(py::module_& m) {
  m.def("gptq",
        [](const carray<float>& w, const carray<float>& h, const carray<float>& scale,
           const carray<std::int32_t>& zp, const q::Scheme& scheme, std::int64_t block_size,
           double damp, bool act_order) {
          if (w.ndim() != 3) throw ShapeError("gptq: w must be 3-d (G, M, K)");
          const std::int64_t G = w.shape(0), M = w.shape(1), K = w.shape(2);
          if (h.ndim() != 3 || h.shape(0) != G || h.shape(1) != K || h.shape(2) != K)
            throw ShapeError(cat("gptq: hessian must have shape (", G, ", ", K, ", ", K, ")"));
          if (scale.size() != G * M || zp.size() != G * M)
            throw ShapeError(cat("gptq: expected ", G * M, " scales and zero points, got ",
                                 scale.size(), " and ", zp.size()));
          q::GptqParams p;
          p.scheme = scheme;
          p.block_size = block_size;
          p.damp = damp;
          p.act_order = act_order;
          q::int_range(scheme);
          return with_int_type(
              scheme, [&](auto t) { return gptq_as<decltype(t)>(w, h, scale, zp, p); });
        },
        py::arg("w").noconvert(), py::arg("hessian").noconvert(), py::arg("scale").noconvert(),
        py::arg("zero_point").noconvert(), py::arg("scheme"), py::arg("block_size"),
        py::arg("damp"), py::arg("act_order"));

  py::class_<PyAdaRound>(m, "AdaRoundSolver")
      .def(py::init([](const carray<float>& w, const carray<float>& x, py::object xq,
                       const carray<float>& scale, const carray<std::int32_t>& zp,
                       py::object bias, const q::Scheme& scheme, std::int64_t iters,
                       std::int64_t batch_size, double lr, double reg_weight, double beta_start,
                       double beta_end, double warm_start, const std::string& activation,
                       std::uint64_t seed) {
             auto p = std::make_unique<PyAdaRound>();
             if (w.ndim() != 3) throw ShapeError("adaround: w must be 3-d (G, M, K)");
             p->G = w.shape(0);
             p->M = w.shape(1);
             p->K = w.shape(2);
             const std::int64_t G = p->G, M = p->M, K = p->K;
             if (x.ndim() != 3 || x.shape(0) != G || x.shape(2) != K)
               throw ShapeError(cat("adaround: x must have shape (", G, ", N, ", K, ")"));
             const std::int64_t N = x.shape(1);
             p->w = w;
             p->x = x;
             if (!xq.is_none()) {
               p->xq = xq.cast<carray<float>>();
               if (p->xq.ndim() != 3 || p->xq.shape(0) != G || p->xq.shape(1) != N ||
                   p->xq.shape(2) != K)
                 throw ShapeError("adaround: x_quantized must have the shape of x");
             }
             if (scale.size() != G * M || zp.size() != G * M)
               throw ShapeError(cat("adaround: expected ", G * M, " scales and zero points"));
             p->scale = scale;
             p->zp = zp;
             if (!bias.is_none()) {
               p->bias = bias.cast<carray<float>>();
               if (p->bias.size() != G * M)
                 throw ShapeError(cat("adaround: bias must have ", G * M, " values"));
             }
             q::AdaRoundParams ap;
             ap.scheme = scheme;
             ap.iters = iters;
             ap.batch_size = batch_size;
             ap.lr = lr;
             ap.reg_weight = reg_weight;
             ap.beta_start = beta_start;
             ap.beta_end = beta_end;
             ap.warm_start = warm_start;
             if (activation == "none") ap.activation = q::Activation::none;
             else if (activation == "relu") ap.activation = q::Activation::relu;
             else if (activation == "relu6") ap.activation = q::Activation::relu6;
             else throw InvalidArgument(cat("activation must be None, 'relu' or 'relu6', got ",
                                            activation));
             ap.seed = seed;
             q::AdaRoundData d;
             d.W = p->w.data();
             d.X = p->x.data();
             d.Xq = xq.is_none() ? d.X : p->xq.data();
             d.scale = p->scale.data();
             d.zero_point = p->zp.data();
             d.bias = bias.is_none() ? nullptr : p->bias.data();
             d.G = G;
             d.M = M;
             d.K = K;
             d.N = N;
             {
               py::gil_scoped_release release;
               p->solver = std::make_unique<q::AdaRound>(d, ap);
             }
             return p;
           }),
           py::arg("w").noconvert(), py::arg("x").noconvert(), py::arg("x_quantized"),
           py::arg("scale").noconvert(), py::arg("zero_point").noconvert(), py::arg("bias"),
           py::arg("scheme"), py::arg("iters"), py::arg("batch_size"), py::arg("lr"),
           py::arg("reg_weight"), py::arg("beta_start"), py::arg("beta_end"),
           py::arg("warm_start"), py::arg("activation"), py::arg("seed"))
      .def("run",
           [](PyAdaRound& self, std::int64_t n) {
             py::gil_scoped_release release;
             self.solver->run(n);
           },
           py::arg("n"))
      .def_property_readonly("iteration", [](const PyAdaRound& self) {
        return self.solver->iteration();
      })
      .def_property_readonly("last_loss", [](const PyAdaRound& self) {
        return self.solver->last_loss();
      })
      .def_property_readonly("V", [](const PyAdaRound& self) {
        carray<float> out({self.G, self.M, self.K});
        const auto& v = self.solver->V();
        std::copy(v.begin(), v.end(), out.mutable_data());
        return out;
      })
      .def("loss_and_grad",
           [](const PyAdaRound& self, std::int64_t g, const carray<float>& V,
              const carray<std::int64_t>& rows, double beta, bool use_reg) {
             if (V.size() != self.M * self.K) throw ShapeError("V must have M * K values");
             carray<float> grad({self.M, self.K});
             const float* vp = V.data();
             const std::int64_t* rp = rows.data();
             const std::int64_t nr = rows.size();
             float* gp = grad.mutable_data();
             double l;
             {
               py::gil_scoped_release release;
               l = self.solver->loss_and_grad(g, vp, rp, nr, beta, use_reg, gp);
             }
             return py::make_tuple(l, grad);
           },
           py::arg("g"), py::arg("V").noconvert(), py::arg("rows").noconvert(), py::arg("beta"),
           py::arg("use_reg"))
      .def("integers",
           [](const PyAdaRound& self, bool nearest, const q::Scheme& s) -> py::array {
             std::vector<std::int32_t> v(static_cast<std::size_t>(self.G * self.M * self.K));
             {
               py::gil_scoped_release release;
               if (nearest) self.solver->nearest(v.data());
               else self.solver->rounded(v.data());
             }
             return with_int_type(
                 s, [&](auto t) { return ints_as<decltype(t)>(v, self.G, self.M, self.K); });
           },
           py::arg("nearest"), py::arg("scheme"))
      .def("output_error",
           [](const PyAdaRound& self, const carray<std::int32_t>& q) {
             if (q.size() != self.G * self.M * self.K)
               throw ShapeError("output_error: q must have G * M * K values");
             const std::int32_t* qp = q.data();
             py::gil_scoped_release release;
             return self.solver->output_error(qp);
           },
           py::arg("q").noconvert());
}

}  // namespace lpcv::bindings
