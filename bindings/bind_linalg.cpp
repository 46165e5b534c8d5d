// Bindings of lpcv::linalg (im2col, streaming Hessians, dense helpers).
// Thin: arrays in as C-contiguous views with the exact dtype (the Python
// layer converts), outputs allocated here, GIL released around core calls.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <string>
#include <vector>

#include "lpcv/common/errors.hpp"
#include "lpcv/linalg/dense.hpp"
#include "lpcv/linalg/hessian.hpp"
#include "lpcv/linalg/im2col.hpp"

#include "numpy_views.hpp"

namespace lpcv::bindings {

namespace py = pybind11;
namespace la = lpcv::linalg;

namespace {


la::ConvGeometry make_geometry(const std::vector<std::int64_t>& x_shape,
                               const std::vector<std::int64_t>& kernel,
                               const std::vector<std::int64_t>& strides,
                               const std::vector<std::int64_t>& pads,
                               const std::vector<std::int64_t>& dilations, std::int64_t group) {
  if (x_shape.size() != 4 || kernel.size() != 2 || strides.size() != 2 || pads.size() != 4 ||
      dilations.size() != 2)
    throw ShapeError("conv geometry: expected a 4-d input shape, 2 kernel extents, 2 strides, "
                     "4 pads and 2 dilations");
  la::ConvGeometry g;
  g.batch = x_shape[0];
  g.channels = x_shape[1];
  g.height = x_shape[2];
  g.width = x_shape[3];
  g.kernel_h = kernel[0];
  g.kernel_w = kernel[1];
  g.stride_h = strides[0];
  g.stride_w = strides[1];
  g.pad_top = pads[0];
  g.pad_left = pads[1];
  g.pad_bottom = pads[2];
  g.pad_right = pads[3];
  g.dilation_h = dilations[0];
  g.dilation_w = dilations[1];
  g.group = group;
  g.validate();
  return g;
}

carray<double> writeable_f64(const py::array& a, const std::vector<std::int64_t>& shape,
                             const char* what) {
  if (!a.dtype().is(py::dtype::of<double>()) || !(a.flags() & py::array::c_style) ||
      !a.writeable())
    throw InvalidArgument(cat(what, " must be a writeable C-contiguous float64 array"));
  if (shape_of(a) != shape) throw ShapeError(cat(what, " has the wrong shape"));
  return py::reinterpret_borrow<carray<double>>(a);
}

}  // namespace

void bind_linalg(py::module_& m) {
  m.def("conv_output_shape",
        [](const std::vector<std::int64_t>& x_shape, const std::vector<std::int64_t>& kernel,
           const std::vector<std::int64_t>& strides, const std::vector<std::int64_t>& pads,
           const std::vector<std::int64_t>& dilations, std::int64_t group) {
          const la::ConvGeometry g = make_geometry(x_shape, kernel, strides, pads, dilations, group);
          return py::make_tuple(g.out_h(), g.out_w(), g.rows(), g.cols());
        },
        py::arg("x_shape"), py::arg("kernel"), py::arg("strides"), py::arg("pads"),
        py::arg("dilations"), py::arg("group"));
  m.def("im2col",
        [](const carray<float>& x, const std::vector<std::int64_t>& kernel,
           const std::vector<std::int64_t>& strides, const std::vector<std::int64_t>& pads,
           const std::vector<std::int64_t>& dilations, std::int64_t group, py::object rows) {
          const la::ConvGeometry g = make_geometry(shape_of(x), kernel, strides, pads, dilations,
                                                   group);
          const float* xp = x.data();
          if (rows.is_none()) {
            carray<float> out({g.group, g.rows(), g.cols()});
            float* op = out.mutable_data();
            py::gil_scoped_release release;
            la::im2col(xp, g, op);
            return out;
          }
          auto r = rows.cast<carray<std::int64_t>>();
          if (r.ndim() != 1) throw ShapeError("rows must be a 1-d int64 array");
          carray<float> out({g.group, static_cast<std::int64_t>(r.size()), g.cols()});
          float* op = out.mutable_data();
          const std::int64_t* rp = r.data();
          const std::int64_t n = r.size();
          py::gil_scoped_release release;
          la::im2col_rows(xp, g, rp, n, op);
          return out;
        },
        py::arg("x").noconvert(), py::arg("kernel"), py::arg("strides"), py::arg("pads"),
        py::arg("dilations"), py::arg("group"), py::arg("rows") = py::none());
  m.def("accumulate_gram",
        [](const carray<float>& X, py::array S) {
          if (X.ndim() != 3) throw ShapeError("X must be 3-d (G, N, K)");
          const std::int64_t G = X.shape(0), n = X.shape(1), k = X.shape(2);
          auto s = writeable_f64(S, {G, k, k}, "S");
          const float* xp = X.data();
          double* sp = s.mutable_data();
          py::gil_scoped_release release;
          la::accumulate_gram(xp, G, n, k, sp);
        },
        py::arg("X").noconvert(), py::arg("S"));
  m.def("accumulate_conv_gram",
        [](const carray<float>& x, const std::vector<std::int64_t>& kernel,
           const std::vector<std::int64_t>& strides, const std::vector<std::int64_t>& pads,
           const std::vector<std::int64_t>& dilations, std::int64_t group, py::array S) {
          const la::ConvGeometry g = make_geometry(shape_of(x), kernel, strides, pads, dilations,
                                                   group);
          auto s = writeable_f64(S, {g.group, g.cols(), g.cols()}, "S");
          const float* xp = x.data();
          double* sp = s.mutable_data();
          py::gil_scoped_release release;
          la::accumulate_conv_gram(xp, g, sp);
        },
        py::arg("x").noconvert(), py::arg("kernel"), py::arg("strides"), py::arg("pads"),
        py::arg("dilations"), py::arg("group"), py::arg("S"));
  m.def("inverse_cholesky_upper",
        [](const carray<float>& A) {
          if (A.ndim() != 2 || A.shape(0) != A.shape(1))
            throw ShapeError("A must be a square 2-d array");
          const std::int64_t n = A.shape(0);
          carray<float> U({n, n});
          const float* ap = A.data();
          float* up = U.mutable_data();
          bool ok;
          {
            py::gil_scoped_release release;
            ok = la::inverse_cholesky_upper(ap, n, up);
          }
          if (!ok) throw InvalidArgument("A is not positive definite");
          return U;
        },
        py::arg("A").noconvert());
  m.def("sgemm",
        [](const carray<float>& A, const carray<float>& B, bool ta, bool tb) {
          if (A.ndim() != 2 || B.ndim() != 2) throw ShapeError("A and B must be 2-d");
          const std::int64_t m = ta ? A.shape(1) : A.shape(0), k = ta ? A.shape(0) : A.shape(1);
          const std::int64_t kb = tb ? B.shape(1) : B.shape(0), n = tb ? B.shape(0) : B.shape(1);
          if (k != kb) throw ShapeError("sgemm: inner dimensions differ");
          carray<float> C({m, n});
          const float* ap = A.data();
          const float* bp = B.data();
          float* cp = C.mutable_data();
          const std::int64_t lda = A.shape(1), ldb = B.shape(1);
          py::gil_scoped_release release;
          la::sgemm(ta, tb, m, n, k, 1.0f, ap, lda, bp, ldb, 0.0f, cp, n);
          return C;
        },
        py::arg("A").noconvert(), py::arg("B").noconvert(), py::arg("trans_a") = false,
        py::arg("trans_b") = false);
}

}  // namespace lpcv::bindings
