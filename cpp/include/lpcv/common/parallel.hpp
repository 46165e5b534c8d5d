#pragma once
/// @file parallel.hpp
/// OpenMP parallel-for that captures the first exception thrown by the body
/// and rethrows it after the region (exceptions must not leave an OpenMP
/// region, DESIGN.md §6).
#include <omp.h>

#include <cstdint>
#include <exception>
#include <mutex>

namespace lpcv {

/// Limits the calling thread's OpenMP pool (which oneDNN follows) to @p n
/// threads for the lifetime of the object; n <= 0 keeps the current limit.
class ThreadLimit {
 public:
  explicit ThreadLimit(int n) : saved_(omp_get_max_threads()) {
    if (n > 0) omp_set_num_threads(n);
  }
  ~ThreadLimit() { omp_set_num_threads(saved_); }
  ThreadLimit(const ThreadLimit&) = delete;
  ThreadLimit& operator=(const ThreadLimit&) = delete;

 private:
  int saved_;
};

namespace detail {
// Runs body(i), keeping the first exception for rethrow after the region.
template <typename Body>
inline void guarded(Body& body, std::int64_t i, std::exception_ptr& error,
                    std::mutex& error_mutex) {
  try {
    body(i);
  } catch (...) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (!error) error = std::current_exception();
  }
}
}  // namespace detail

/// Calls body(i) for i in [0, n) on the OpenMP thread pool.
/// @param n     number of iterations (>= 0)
/// @param body  callable taking std::int64_t; may throw
/// @param grain below this many iterations the loop runs serially
template <typename Body>
void parallel_for(std::int64_t n, Body&& body, std::int64_t grain = 1) {
  if (n <= 0) return;
  if (n < grain) {
    for (std::int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) detail::guarded(body, i, error, error_mutex);
  if (error) std::rethrow_exception(error);
}

/// Like parallel_for, with dynamic scheduling (one iteration at a time), for
/// chunked streaming kernels: on a shared machine a descheduled thread's
/// chunks are taken by the others instead of making them all wait.
template <typename Body>
void parallel_for_dynamic(std::int64_t n, Body&& body, std::int64_t grain = 1) {
  if (n <= 0) return;
  if (n < grain) {
    for (std::int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel for schedule(dynamic, 1)
  for (std::int64_t i = 0; i < n; ++i) detail::guarded(body, i, error, error_mutex);
  if (error) std::rethrow_exception(error);
}

}  // namespace lpcv
