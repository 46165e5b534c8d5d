#pragma once
// Conversions between NumPy arrays and the core's views. Arrays must arrive
// C-contiguous with the exact dtype (the Python layer converts); nothing here
// copies or loops over data.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "lpcv/common/errors.hpp"
#include "lpcv/runtime/plan.hpp"

namespace lpcv::bindings {

namespace py = pybind11;

/// A NumPy array argument pybind11 accepts only C-contiguous with dtype T.
template <typename T>
using carray = py::array_t<T, py::array::c_style>;

inline runtime::DType dtype_from_name(const std::string& name) {
  if (name == "float32") return runtime::DType::f32;
  if (name == "int8") return runtime::DType::s8;
  if (name == "uint8") return runtime::DType::u8;
  if (name == "int32") return runtime::DType::s32;
  if (name == "int64") return runtime::DType::s64;
  throw Unsupported(cat("dtype ", name, " is not supported by the runtime"));
}

inline runtime::DType dtype_of(const py::array& a) {
  // Compared as dtypes (C calls), not through their names: this runs on
  // every Session.run.
  const py::dtype d = a.dtype();
  if (d.equal(py::dtype::of<float>())) return runtime::DType::f32;
  if (d.equal(py::dtype::of<std::int8_t>())) return runtime::DType::s8;
  if (d.equal(py::dtype::of<std::uint8_t>())) return runtime::DType::u8;
  if (d.equal(py::dtype::of<std::int32_t>())) return runtime::DType::s32;
  if (d.equal(py::dtype::of<std::int64_t>())) return runtime::DType::s64;
  return dtype_from_name(py::str(d).cast<std::string>());  // throws Unsupported
}

inline std::vector<std::int64_t> shape_of(const py::array& a) {
  return std::vector<std::int64_t>(a.shape(), a.shape() + a.ndim());
}

/// Checks that `a` is C-contiguous with the given dtype and shape.
inline void require_array(const py::array& a, runtime::DType dtype,
                          const std::vector<std::int64_t>& shape,
                          const std::string& what) {
  if (!(a.flags() & py::array::c_style))
    throw InvalidArgument(cat(what, ": array must be C-contiguous"));
  if (dtype_of(a) != dtype)
    throw InvalidArgument(cat(what, ": wrong dtype ", std::string(py::str(a.dtype()))));
  if (shape_of(a) != shape) {
    std::string got, want;
    for (auto d : shape_of(a)) got += std::to_string(d) + ",";
    for (auto d : shape) want += std::to_string(d) + ",";
    throw ShapeError(cat(what, ": expected shape (", want, ") got (", got, ")"));
  }
}

}  // namespace lpcv::bindings
