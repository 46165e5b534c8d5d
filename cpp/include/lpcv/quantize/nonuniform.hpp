#pragma once
/// @file nonuniform.hpp
/// Non-uniform weight quantization: 1-D k-means weight sharing (Deep
/// Compression), Huffman-coded index size, binary (XNOR-Net) and ternary
/// (TWN) weights with per-channel scales. Needs only lpcv::common.
#include <cstdint>
#include <vector>

#include "lpcv/quantize/uniform.hpp"

namespace lpcv::quantize {

enum class KMeansInit {
  linear,  ///< k centroids evenly spaced in [min, max] (Deep Compression)
  random,  ///< k distinct data values drawn with the seed
};

struct KMeansParams {
  int n_clusters = 16;     ///< 1..65536
  int max_iter = 300;      ///< Lloyd iterations at most (>= 1)
  double tol = 0.0;        ///< stop when no centroid moves more than tol*(max-min)
  KMeansInit init = KMeansInit::linear;
  std::uint64_t seed = 0;  ///< used by KMeansInit::random only
};

struct KMeansResult {
  std::vector<float> codebook;  ///< [n_clusters], sorted ascending
  int n_iter = 0;               ///< Lloyd iterations run
  double inertia = 0.0;         ///< sum of squared distances to the centroid
};

/// Lloyd's algorithm on the values x. Each iteration assigns every value to
/// the nearest centroid (the lower one on exact ties; centroids kept sorted)
/// and moves each centroid to the mean of its values (an empty cluster keeps
/// its centroid). Stops when no label changes, when no centroid moves more
/// than tol * (max - min), or after max_iter iterations. Sums use a fixed
/// chunking, so results do not depend on the number of threads.
/// @param x       float32 [n], finite (throws InvalidArgument otherwise)
/// @param labels  int32 [n] output: index into the codebook
KMeansResult kmeans_1d(const float* x, std::int64_t n, const KMeansParams& p,
                       std::int32_t* labels);

/// Nearest codebook entry of every value (lower index on exact ties).
/// @param codebook float32 [k], sorted ascending
/// @return squared error sum
double kmeans_assign(const float* x, std::int64_t n, const float* codebook,
                     int k, std::int32_t* labels);

/// Huffman code lengths (bits) of symbols with the given frequencies.
/// Symbols with frequency 0 get length 0; a single used symbol gets 1 bit.
std::vector<int> huffman_code_lengths(const std::vector<std::int64_t>& freq);

/// Frequencies of the labels 0..k-1 (throws if a label is out of range).
std::vector<std::int64_t> label_counts(const std::int32_t* labels,
                                       std::int64_t n, int k);

/// Binary weights (XNOR-Net): per parameter block of `layout`
/// alpha = mean |w| and b = sign(w) in {-1, +1} (sign(0) = +1).
/// @param b      int8 [layout.size()] output
/// @param alpha  float32 [layout.num_params()] output
void binarize(const float* w, const Layout& layout, std::int8_t* b,
              float* alpha);

/// Ternary weights (TWN): per block delta = 0.7 * mean |w|,
/// t = sign(w) where |w| > delta else 0, alpha = mean of |w| over |w| > delta
/// (0 when no element exceeds delta).
/// @param t      int8 [layout.size()] output in {-1, 0, +1}
/// @param alpha  float32 [layout.num_params()] output
/// @param delta  float32 [layout.num_params()] output (thresholds)
void ternarize(const float* w, const Layout& layout, double threshold_factor,
               std::int8_t* t, float* alpha, float* delta);

}  // namespace lpcv::quantize
