#pragma once
// Private to lpcv::quantize: like lpcv::parallel_for but with dynamic
// scheduling, for chunked streaming kernels. On a shared machine one thread
// may be descheduled; with static scheduling every other thread then waits
// for its whole share, with dynamic scheduling the others take its chunks.
#include <cstdint>
#include <exception>
#include <mutex>

namespace lpcv::quantize::detail {

template <typename Body>
void dynamic_for(std::int64_t n, Body&& body, std::int64_t grain = 1) {
  if (n <= 0) return;
  if (n < grain) {
    for (std::int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel for schedule(dynamic, 1)
  for (std::int64_t i = 0; i < n; ++i) {
    try {
      body(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace lpcv::quantize::detail
