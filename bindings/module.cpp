// lpcv._core: the private extension module. Each capability binds itself in
// bind_<capability>.cpp; this file registers the shared exception mapping.
#include <pybind11/pybind11.h>

#include "lpcv/common/errors.hpp"

namespace py = pybind11;

namespace lpcv::bindings {
void bind_runtime(py::module_& m);
void bind_cost(py::module_& m);
void bind_quantize(py::module_& m);
void bind_linalg(py::module_& m);
void bind_quantize_layerwise(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "lpcv C++ core (private; use the lpcv package)";
  py::module_ exc = py::module_::import("lpcv.exceptions");
  static py::object validation = exc.attr("ValidationError");
  static py::object shape = exc.attr("ShapeError");
  static py::object unsupported = exc.attr("UnsupportedError");
  static py::object backend = exc.attr("BackendError");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const lpcv::ShapeError& e) {
      PyErr_SetString(shape.ptr(), e.what());
    } catch (const lpcv::InvalidArgument& e) {
      PyErr_SetString(validation.ptr(), e.what());
    } catch (const lpcv::Unsupported& e) {
      PyErr_SetString(unsupported.ptr(), e.what());
    } catch (const lpcv::BackendError& e) {
      PyErr_SetString(backend.ptr(), e.what());
    }
  });
  lpcv::bindings::bind_runtime(m);
  lpcv::bindings::bind_cost(m);
  lpcv::bindings::bind_quantize(m);
  lpcv::bindings::bind_linalg(m);
  lpcv::bindings::bind_quantize_layerwise(m);
}
