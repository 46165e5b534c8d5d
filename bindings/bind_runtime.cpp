// Bindings of lpcv::runtime::Plan.
#include <pybind11/stl.h>

#include "numpy_views.hpp"

namespace lpcv::bindings {

namespace {

using runtime::Plan;

// The plan plus the declared boundary shapes, so that arrays are checked
// before any pointer reaches the core.
struct PyPlan {
  std::unique_ptr<Plan> plan;
  std::vector<std::vector<std::int64_t>> in_shapes, out_shapes;
  std::vector<runtime::DType> in_types, out_types;
  py::list keep_alive;  // arrays backing constants, during compile only

  void check(const std::vector<py::array>& ins, const std::vector<py::array>& outs,
             std::vector<const void*>& ip, std::vector<void*>& op) const {
    if (ins.size() != in_shapes.size())
      throw InvalidArgument(cat("expected ", in_shapes.size(), " inputs, got ", ins.size()));
    if (outs.size() != out_shapes.size())
      throw InvalidArgument(cat("expected ", out_shapes.size(), " outputs, got ", outs.size()));
    for (std::size_t i = 0; i < ins.size(); ++i) {
      require_array(ins[i], in_types[i], in_shapes[i], cat("input ", i));
      ip.push_back(ins[i].data());
    }
    for (std::size_t i = 0; i < outs.size(); ++i) {
      require_array(outs[i], out_types[i], out_shapes[i], cat("output ", i));
      if (!outs[i].writeable()) throw InvalidArgument(cat("output ", i, " is read-only"));
      op.push_back(const_cast<void*>(outs[i].data()));
    }
  }
};

}  // namespace

void bind_runtime(py::module_& m) {
  py::class_<PyPlan>(m, "Plan")
      .def(py::init([](const std::vector<std::tuple<std::string, std::vector<std::int64_t>,
                                                    std::string>>& tensors,
                       const std::vector<std::tuple<std::string, std::string, std::vector<int>,
                                                    std::vector<int>,
                                                    std::map<std::string, runtime::Attr>>>& ops,
                       const std::vector<int>& inputs, const std::vector<int>& outputs,
                       const std::map<int, py::array>& constants, int threads) {
             runtime::GraphDecl g;
             for (const auto& [name, shape, dtype] : tensors)
               g.tensors.push_back({name, shape, dtype_from_name(dtype)});
             for (const auto& [op, name, ins, outs, attrs] : ops)
               g.ops.push_back({op, name, ins, outs, attrs});
             g.inputs = inputs;
             g.outputs = outputs;
             for (const auto& [id, arr] : constants) {
               if (!(arr.flags() & py::array::c_style))
                 throw InvalidArgument(cat("constant ", id, " must be C-contiguous"));
               g.constants[id] = {arr.data(), shape_of(arr), dtype_of(arr)};
             }
             auto p = std::make_unique<PyPlan>();
             for (int t : inputs) {
               if (t < 0 || t >= int(g.tensors.size())) throw InvalidArgument("bad input id");
               p->in_shapes.push_back(g.tensors[t].shape);
               p->in_types.push_back(g.tensors[t].dtype);
             }
             for (int t : outputs) {
               if (t < 0 || t >= int(g.tensors.size())) throw InvalidArgument("bad output id");
               p->out_shapes.push_back(g.tensors[t].shape);
               p->out_types.push_back(g.tensors[t].dtype);
             }
             {
               py::gil_scoped_release release;
               p->plan = std::make_unique<Plan>(g, threads);
             }
             return p;
           }),
           py::arg("tensors"), py::arg("ops"), py::arg("inputs"), py::arg("outputs"),
           py::arg("constants"), py::arg("threads") = 0)
      .def("run",
           [](PyPlan& self, const std::vector<py::array>& ins,
              const std::vector<py::array>& outs) {
             std::vector<const void*> ip;
             std::vector<void*> op;
             self.check(ins, outs, ip, op);
             py::gil_scoped_release release;
             self.plan->run(ip, op);
           },
           py::arg("inputs"), py::arg("outputs"))
      .def("profile",
           [](PyPlan& self, const std::vector<py::array>& ins,
              const std::vector<py::array>& outs, int repeats) {
             std::vector<const void*> ip;
             std::vector<void*> op;
             self.check(ins, outs, ip, op);
             std::vector<runtime::Plan::StepTiming> t;
             {
               py::gil_scoped_release release;
               t = self.plan->profile(ip, op, repeats);
             }
             // (median, min) seconds per step
             std::vector<std::pair<double, double>> out;
             for (const auto& s : t) out.emplace_back(s.median, s.min);
             return out;
           },
           py::arg("inputs"), py::arg("outputs"), py::arg("repeats"))
      .def("steps",
           [](const PyPlan& self) {
             std::vector<std::tuple<std::string, std::string, std::string>> out;
             for (const auto& s : self.plan->steps()) out.emplace_back(s.node, s.kind, s.detail);
             return out;
           })
      .def_property_readonly("activation_bytes",
                             [](const PyPlan& self) { return self.plan->activation_bytes(); });
}

}  // namespace lpcv::bindings
