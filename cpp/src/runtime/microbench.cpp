#include "lpcv/runtime/microbench.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <oneapi/dnnl/dnnl.hpp>

#include "lpcv/common/errors.hpp"
#include "lpcv/common/parallel.hpp"

namespace lpcv::runtime {
namespace {

using dnnl::memory;
using clock_type = std::chrono::steady_clock;

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

template <typename F>
double best_of(int repeats, F&& f) {
  if (repeats < 1) throw InvalidArgument(cat("repeats must be >= 1, got ", repeats));
  f();  // warm-up: page faults, JIT, caches
  double best = std::numeric_limits<double>::infinity();
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = clock_type::now();
    f();
    best = std::min(best, std::chrono::duration<double>(clock_type::now() - t0).count());
  }
  return best;
}

void fill(memory& m, unsigned char value) {
  std::memset(m.get_data_handle(), value, m.get_desc().get_size());
}

}  // namespace

double time_matmul(std::int64_t m, std::int64_t n, std::int64_t k, DType dtype, int repeats,
                   int threads) {
  if (m < 1 || n < 1 || k < 1) throw InvalidArgument("time_matmul: sizes must be >= 1");
  ThreadLimit scope(threads);
  try {
    const bool int8 = dtype == DType::s8;
    if (!int8 && dtype != DType::f32) throw Unsupported("time_matmul: f32 or s8 only");
    using dt = memory::data_type;
    using tag = memory::format_tag;
    memory::desc a({m, k}, int8 ? dt::u8 : dt::f32, tag::ab);
    memory::desc b_any({k, n}, int8 ? dt::s8 : dt::f32, tag::any);
    memory::desc c({m, n}, int8 ? dt::s32 : dt::f32, tag::ab);
    dnnl::matmul::primitive_desc pd(engine(), a, b_any, c);
    memory am(a, engine()), bm(pd.weights_desc(), engine()), cm(c, engine());
    fill(am, 1);
    fill(bm, 1);
    dnnl::stream s(engine());
    dnnl::matmul prim(pd);
    return best_of(repeats, [&] {
      prim.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
      s.wait();
    });
  } catch (const dnnl::error& e) {
    throw BackendError(cat("time_matmul: oneDNN: ", e.what()));
  }
}

double time_copy(std::int64_t bytes, int repeats, int threads) {
  if (bytes < 64) throw InvalidArgument("time_copy: bytes must be >= 64");
  ThreadLimit scope(threads);
  try {
    memory::desc md({bytes / 4}, memory::data_type::f32, memory::format_tag::a);
    memory src(md, engine()), dst(md, engine());
    fill(src, 0);
    fill(dst, 0);
    dnnl::stream s(engine());
    dnnl::reorder prim(src, dst);
    return best_of(repeats, [&] {
      prim.execute(s, src, dst);
      s.wait();
    });
  } catch (const dnnl::error& e) {
    throw BackendError(cat("time_copy: oneDNN: ", e.what()));
  }
}

double time_tiny_primitive(int repeats, int threads) {
  ThreadLimit scope(threads);
  try {
    memory::desc md({16}, memory::data_type::f32, memory::format_tag::a);
    memory src(md, engine()), dst(md, engine());
    fill(src, 0);
    dnnl::eltwise_forward::primitive_desc pd(engine(), dnnl::prop_kind::forward_inference,
                                             dnnl::algorithm::eltwise_relu, md, md, 0.f, 0.f);
    dnnl::eltwise_forward prim(pd);
    dnnl::stream s(engine());
    // Time many executions together: one is below the clock's resolution.
    constexpr int kInner = 200;
    return best_of(repeats, [&] {
      for (int i = 0; i < kInner; ++i) prim.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
      s.wait();
    }) / kInner;
  } catch (const dnnl::error& e) {
    throw BackendError(cat("time_tiny_primitive: oneDNN: ", e.what()));
  }
}

}  // namespace lpcv::runtime
