#pragma once
/// @file errors.hpp
/// Typed errors thrown by every public entry point of the C++ core. The
/// bindings map them onto the Python exceptions of lpcv.exceptions.
#include <sstream>
#include <stdexcept>
#include <string>

namespace lpcv {

/// A value is outside what the algorithm accepts (bad setting, NaN, ...).
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// An array has the wrong rank or extent.
class ShapeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A valid request that this build does not implement (op, dtype, mode).
class Unsupported : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A failure inside a backend library (oneDNN).
class BackendError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Builds a message from streamable parts: cat("expected ", 3, " got ", n).
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

}  // namespace lpcv
