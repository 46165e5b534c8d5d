#pragma once
/// @file plan.hpp
/// A compiled execution plan: a lowered graph turned once into a sequence of
/// oneDNN primitives and lpcv kernels over preallocated buffers, then run
/// many times. No oneDNN type appears here (DESIGN.md §1); the Python layer
/// (lpcv.runtime) does graph rewriting and fusion decisions and hands the
/// result over as a GraphDecl.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace lpcv::runtime {

/// Element types of tensors crossing the plan boundary.
enum class DType { f32, s8, u8, s32, s64 };

/// Size in bytes of one element of @p t.
std::size_t dtype_size(DType t);

/// An attribute value of a lowered op.
using Attr = std::variant<std::int64_t, double, std::string,
                          std::vector<std::int64_t>, std::vector<double>>;

/// A tensor of the lowered graph. Shapes are static (the batch is fixed at
/// compile time).
struct TensorDecl {
  std::string name;
  std::vector<std::int64_t> shape;
  DType dtype = DType::f32;
};

/// A read-only view of caller-owned constant data (row-major, dense).
struct ConstView {
  const void* data = nullptr;
  std::vector<std::int64_t> shape;
  DType dtype = DType::f32;
};

/// One lowered op. Names and attributes follow ONNX, plus the fusion
/// attributes documented in python/lpcv/runtime.py (post-op lists).
struct OpDecl {
  std::string op;
  std::string name;
  std::vector<int> inputs;   ///< tensor ids; -1 for an omitted input
  std::vector<int> outputs;  ///< tensor ids
  std::map<std::string, Attr> attrs;
};

/// A whole lowered graph.
struct GraphDecl {
  std::vector<TensorDecl> tensors;
  std::vector<OpDecl> ops;  ///< topological order
  std::vector<int> inputs;
  std::vector<int> outputs;
  std::map<int, ConstView> constants;  ///< copied during compilation
};

/// What one plan step does (for profiling and inspection).
struct StepInfo {
  std::string node;    ///< lowered op name ("" for an edge reorder)
  std::string kind;    ///< e.g. "convolution", "reorder", "pad"
  std::string detail;  ///< implementation, e.g. "brg:avx512_core"
};

/// Compiled plan. Not safe to run from two threads at once.
class Plan {
 public:
  /// Compiles @p graph. Throws InvalidArgument/ShapeError for a malformed
  /// graph, Unsupported for ops or dtypes the runtime lacks, BackendError for
  /// oneDNN failures. Constants are copied; the views may die afterwards.
  /// @param threads OpenMP threads the plan is compiled for and runs with
  ///        (0 = library default); oneDNN fixes it when primitives are made
  explicit Plan(const GraphDecl& graph, int threads = 0);
  ~Plan();
  Plan(Plan&&) noexcept;
  Plan& operator=(Plan&&) noexcept;

  /// Runs the plan. @p inputs and @p outputs point to dense row-major
  /// buffers of the declared shapes and dtypes, in GraphDecl order.
  void run(const std::vector<const void*>& inputs, const std::vector<void*>& outputs);

  /// Per-step wall-clock statistics of Plan::profile, in seconds.
  struct StepTiming {
    double median;
    double min;  ///< the fastest repeat: on a shared machine, the uncontended time
  };

  /// Runs @p repeats times and returns, per step, the median and fastest seconds.
  std::vector<StepTiming> profile(const std::vector<const void*>& inputs,
                              const std::vector<void*>& outputs, int repeats);

  /// The steps, in execution order.
  std::vector<StepInfo> steps() const;

  /// Bytes of activation buffers the plan allocated (after reuse).
  std::int64_t activation_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lpcv::runtime
