// Bindings of lpcv::cost (roofline pricing) and the runtime micro-benchmarks
// the cost model's host measurement uses.
#include <pybind11/stl.h>

#include "lpcv/cost/roofline.hpp"
#include "lpcv/runtime/microbench.hpp"
#include "numpy_views.hpp"

namespace lpcv::bindings {

void bind_cost(py::module_& m) {
  using namespace lpcv::cost;
  py::class_<DeviceSpec>(m, "DeviceSpec")
      .def(py::init<>())
      .def_readwrite("peak_flops", &DeviceSpec::peak_flops)
      .def_readwrite("energy_per_mac", &DeviceSpec::energy_per_mac)
      .def_readwrite("cache_bytes", &DeviceSpec::cache_bytes)
      .def_readwrite("cache_bandwidth", &DeviceSpec::cache_bandwidth)
      .def_readwrite("cache_read_bandwidth", &DeviceSpec::cache_read_bandwidth)
      .def_readwrite("shared_cache_bytes", &DeviceSpec::shared_cache_bytes)
      .def_readwrite("shared_cache_bandwidth", &DeviceSpec::shared_cache_bandwidth)
      .def_readwrite("dram_bandwidth", &DeviceSpec::dram_bandwidth)
      .def_readwrite("dram_write_cost", &DeviceSpec::dram_write_cost)
      .def_readwrite("cache_energy_per_byte", &DeviceSpec::cache_energy_per_byte)
      .def_readwrite("shared_cache_energy_per_byte", &DeviceSpec::shared_cache_energy_per_byte)
      .def_readwrite("dram_energy_per_byte", &DeviceSpec::dram_energy_per_byte)
      .def_readwrite("overhead", &DeviceSpec::overhead)
      .def_readwrite("compute_efficiency", &DeviceSpec::compute_efficiency)
      .def_readwrite("memory_efficiency", &DeviceSpec::memory_efficiency);
  py::class_<LayerCounts>(m, "LayerCounts")
      .def(py::init([](int op_class, int precision, double macs, double other_ops,
                       double weight_bytes, double input_bytes, double output_bytes,
                       bool input_in_cache, bool weights_in_cache, double weight_reads,
                       bool input_in_shared_cache, bool weights_in_shared_cache) {
             if (op_class < 0 || op_class >= kOpClasses) throw InvalidArgument("bad op_class");
             if (precision < 0 || precision >= kPrecisions) throw InvalidArgument("bad precision");
             return LayerCounts{OpClass(op_class), Precision(precision), macs, other_ops,
                                weight_bytes, input_bytes, output_bytes, input_in_cache,
                                weights_in_cache, input_in_shared_cache,
                                weights_in_shared_cache, weight_reads};
           }),
           py::arg("op_class"), py::arg("precision"), py::arg("macs"), py::arg("other_ops"),
           py::arg("weight_bytes"), py::arg("input_bytes"), py::arg("output_bytes"),
           py::arg("input_in_cache"), py::arg("weights_in_cache"), py::arg("weight_reads") = 1.0,
           py::arg("input_in_shared_cache") = false, py::arg("weights_in_shared_cache") = false);
  py::class_<LayerCost>(m, "LayerCost")
      .def_readonly("flops", &LayerCost::flops)
      .def_readonly("bytes", &LayerCost::bytes)
      .def_readonly("dram_bytes", &LayerCost::dram_bytes)
      .def_readonly("shared_cache_bytes", &LayerCost::shared_cache_bytes)
      .def_readonly("intensity", &LayerCost::intensity)
      .def_readonly("compute_time", &LayerCost::compute_time)
      .def_readonly("memory_time", &LayerCost::memory_time)
      .def_readonly("far_time", &LayerCost::far_time)
      .def_readonly("dram_time", &LayerCost::dram_time)
      .def_readonly("latency", &LayerCost::latency)
      .def_readonly("compute_energy", &LayerCost::compute_energy)
      .def_readonly("memory_energy", &LayerCost::memory_energy)
      .def_readonly("memory_bound", &LayerCost::memory_bound);
  m.def("check_device", &check_device, py::arg("device"));
  m.def("estimate", &estimate, py::arg("layers"), py::arg("device"),
        py::call_guard<py::gil_scoped_release>());
  m.def("peak_live_bytes", &peak_live_bytes, py::arg("sizes"), py::arg("birth"),
        py::arg("death"));
  m.def("time_matmul",
        [](std::int64_t mm, std::int64_t n, std::int64_t k, const std::string& dtype, int repeats,
           int threads) {
          const runtime::DType dt = dtype_from_name(dtype);
          py::gil_scoped_release release;
          return runtime::time_matmul(mm, n, k, dt, repeats, threads);
        },
        py::arg("m"), py::arg("n"), py::arg("k"), py::arg("dtype"), py::arg("repeats"),
        py::arg("threads") = 0);
  m.def("time_copy", &runtime::time_copy, py::arg("bytes"), py::arg("repeats"),
        py::arg("threads") = 0, py::call_guard<py::gil_scoped_release>());
  m.def("time_tiny_primitive", &runtime::time_tiny_primitive, py::arg("repeats"),
        py::arg("threads") = 0, py::call_guard<py::gil_scoped_release>());
}

}  // namespace lpcv::bindings
