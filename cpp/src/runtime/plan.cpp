// Plan compilation and execution on oneDNN.
//
// Compilation walks the lowered ops once. Every tensor lives in one or more
// "slots" (a oneDNN memory descriptor over a buffer): its primary slot in the
// layout its producer chose (often blocked, e.g. nChw16c) and extra slots in
// other layouts when a consumer needs them (reorder steps are inserted then).
// Buffers are reused once the tensors in them are dead, activations are
// updated in place where it is safe, and residual additions write into the
// buffer of the tensor they add to (oneDNN "sum" post-op).
#include "lpcv/runtime/plan.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <functional>
#include <limits>
#include <numeric>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>

#include "lpcv/common/errors.hpp"
#include "lpcv/common/parallel.hpp"
#include "lpcv/quantize/uniform.hpp"
#include "lpcv/runtime/kernels.hpp"

namespace lpcv::runtime {

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
    case DType::s32:
      return 4;
    case DType::s8:
    case DType::u8:
      return 1;
    case DType::s64:
      return 8;
  }
  return 0;
}

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;
using Dims = memory::dims;

constexpr std::int64_t kMaxRank = DNNL_MAX_NDIMS;

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dt to_dnnl(DType t) {
  switch (t) {
    case DType::f32: return dt::f32;
    case DType::s8: return dt::s8;
    case DType::u8: return dt::u8;
    case DType::s32: return dt::s32;
    case DType::s64: break;
  }
  throw Unsupported("int64 tensors are only supported as compile-time constants");
}

// Dense row-major descriptor; rank-0 tensors become {1}.
memory::desc plain_desc(const Dims& dims, dt type) {
  Dims d = dims.empty() ? Dims{1} : dims;
  Dims strides(d.size(), 1);
  for (std::size_t k = d.size() - 1; k-- > 0;) strides[k] = strides[k + 1] * d[k + 1];
  return memory::desc(d, type, strides);
}

bool is_plain(const memory::desc& md) {
  if (md.get_format_kind() != memory::format_kind::blocked) return false;
  return md == plain_desc(md.get_dims(), md.get_data_type());
}

// Right-aligns `dims` to `rank` by prepending ones.
Dims pad_rank(const Dims& dims, std::size_t rank) {
  Dims out(rank - std::min(rank, dims.size()), 1);
  out.insert(out.end(), dims.begin(), dims.end());
  return out;
}

// Eltwise algorithm codes shared with python/lpcv/runtime.py (_ELTWISE).
dnnl::algorithm eltwise_alg(std::int64_t code) {
  switch (code) {
    case 0: return dnnl::algorithm::eltwise_relu;
    case 1: return dnnl::algorithm::eltwise_clip_v2;
    case 2: return dnnl::algorithm::eltwise_logistic;
    case 3: return dnnl::algorithm::eltwise_tanh;
    case 4: return dnnl::algorithm::eltwise_hardsigmoid;
    case 5: return dnnl::algorithm::eltwise_hardswish;
    case 6: return dnnl::algorithm::eltwise_linear;
    case 9: return dnnl::algorithm::eltwise_swish;  // x·sigmoid(alpha·x)
    default: break;
  }
  throw InvalidArgument(cat("unknown eltwise code ", code));
}
constexpr std::int64_t kPostSum = 7;
constexpr std::int64_t kPostAddTensor = 8;  // int8 ops: binary add of a float input

struct Buffer {
  std::size_t bytes = 0;
  int refs = 0;
  int external = -1;     // >= 0: caller's input (index) — never written
  int external_out = -1; // >= 0: caller's output (index)
  void* ptr = nullptr;
};

struct Slot {
  memory::desc md;
  int buffer = -1;           // -1: constant
  std::optional<memory> constant;
};

struct Step {
  StepInfo info;
  std::optional<dnnl::primitive> prim;
  std::vector<std::pair<int, int>> args;  // dnnl arg key -> slot
  // Custom kernels receive the data pointers of `kernel_slots`.
  std::function<void(const std::vector<void*>&)> kernel;
  std::vector<int> kernel_slots;
  std::unordered_map<int, memory> bound;  // resolved at finalize
};

struct TensorState {
  std::vector<int> slots;  // slots[0] is the primary layout
  int uses_left = 0;
  bool is_output = false;
  bool is_input = false;
  bool is_const = false;
};

// Attribute access with defaults and type checks.
struct Attrs {
  const OpDecl& op;
  const Attr* find(const char* key) const {
    auto it = op.attrs.find(key);
    return it == op.attrs.end() ? nullptr : &it->second;
  }
  std::int64_t i(const char* key, std::int64_t def) const {
    const Attr* a = find(key);
    if (!a) return def;
    if (auto p = std::get_if<std::int64_t>(a)) return *p;
    throw InvalidArgument(cat("op ", op.name, ": attribute ", key, " must be an int"));
  }
  double f(const char* key, double def) const {
    const Attr* a = find(key);
    if (!a) return def;
    if (auto p = std::get_if<double>(a)) return *p;
    if (auto p = std::get_if<std::int64_t>(a)) return double(*p);
    throw InvalidArgument(cat("op ", op.name, ": attribute ", key, " must be a float"));
  }
  std::vector<std::int64_t> is(const char* key) const {
    const Attr* a = find(key);
    if (!a) return {};
    if (auto p = std::get_if<std::vector<std::int64_t>>(a)) return *p;
    if (auto p = std::get_if<std::vector<double>>(a); p && p->empty()) return {};
    throw InvalidArgument(cat("op ", op.name, ": attribute ", key, " must be ints"));
  }
  std::vector<double> fs(const char* key) const {
    const Attr* a = find(key);
    if (!a) return {};
    if (auto p = std::get_if<std::vector<double>>(a)) return *p;
    if (auto p = std::get_if<std::vector<std::int64_t>>(a))
      return std::vector<double>(p->begin(), p->end());
    throw InvalidArgument(cat("op ", op.name, ": attribute ", key, " must be floats"));
  }
  std::string s(const char* key, const std::string& def) const {
    const Attr* a = find(key);
    if (!a) return def;
    if (auto p = std::get_if<std::string>(a)) return *p;
    throw InvalidArgument(cat("op ", op.name, ": attribute ", key, " must be a string"));
  }
};

// Without VNNI, oneDNN's x86 int8 kernels add pairs of u8 x s8 products in
// saturating 16-bit lanes (vpmaddubsw): on a 2-vCPU EPYC (AVX2) int8
// convolutions came out up to 51 steps off the int32 arithmetic that the
// quantized model defines. Its reference kernels accumulate in int32.
bool int8_kernels_exact() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool exact =
      __builtin_cpu_supports("avx512vnni") || __builtin_cpu_supports("avxvnni");
  return exact;
#else
  return true;   // AArch64's dot-product and plain kernels accumulate in int32
#endif
}

// Moves ``pd`` to oneDNN's reference implementation when the fast int8
// kernels would saturate (slow, but exact); throws if there is none.
template <class PD>
void prefer_exact_int8(PD& pd, const std::string& what) {
  if (int8_kernels_exact()) return;
  do {
    if (std::string(pd.impl_info_str()).rfind("ref", 0) == 0) return;
  } while (pd.next_impl());
  throw Unsupported(cat(what, ": this CPU has no VNNI, so oneDNN's int8 kernels saturate, "
                        "and no exact reference kernel takes this layer"));
}

std::string impl_name(const dnnl::primitive_desc_base& pd) {
  try {
    return pd.impl_info_str();
  } catch (...) {
    return "?";
  }
}

// Quantized addition y = Q(clamp(DQ(a) + DQ(b), lo, hi)) in the float
// arithmetic of the simulation: DQ = (q - z) * s, one IEEE addition, the
// activation clamp, then QuantizeLinear (x / s, saturate, round half to even
// with the 1.5*2^23 trick, + z). Both operands are bytes, so the whole
// function is a 256 x 256 table, computed once by this scalar code; running
// it is a table lookup per element (exact, no FMA contraction possible).
struct QAddParams {
  float sa, za, sb, zb, sy, zy, lo, hi, qlo, qhi;
};

std::uint8_t qadd_scalar(int a, int b, const QAddParams& p) {
  constexpr float kMagic = 12582912.0f;
  const volatile float fa = (float(a) - p.za) * p.sa;
  const volatile float fb = (float(b) - p.zb) * p.sb;
  volatile float v = fa + fb;
  float w = v;
  w = w < p.lo ? p.lo : w;
  w = w > p.hi ? p.hi : w;
  volatile float d = w / p.sy;
  w = d;
  w = w < p.qlo ? p.qlo : w;
  w = w > p.qhi ? p.qhi : w;
  volatile float r = w + kMagic;
  const float rr = r - kMagic;
  return static_cast<std::uint8_t>(static_cast<std::int32_t>(rr + p.zy));  // two's complement
}

}  // namespace

struct Plan::Impl {
  const GraphDecl* g = nullptr;  // valid during compilation only
  int threads = 0;               // OpenMP threads (0 = library default)
  std::vector<TensorDecl> tensors;
  std::vector<int> inputs, outputs;
  std::vector<TensorState> ts;
  std::vector<Slot> slots;
  std::vector<Buffer> buffers;
  std::vector<int> free_buffers;
  std::vector<Step> steps;
  std::vector<void*> storage;  // owned activation memory
  std::vector<std::vector<std::pair<int, memory*>>> external_mems;
  std::vector<std::vector<std::pair<int, memory*>>> external_out_mems;
  std::vector<memory> slot_mem;
  dnnl::stream stream{cpu_engine()};

  ~Impl() {
    for (void* p : storage) std::free(p);
  }

  // ------------------------------------------------------------- buffers
  int alloc_buffer(std::size_t bytes) {
    int best = -1;
    for (int b : free_buffers) {
      if (buffers[b].bytes >= bytes &&
          (best < 0 || buffers[b].bytes < buffers[best].bytes))
        best = b;
    }
    if (best < 0) {
      for (int b : free_buffers)
        if (best < 0 || buffers[b].bytes > buffers[best].bytes) best = b;
    }
    if (best >= 0) {
      free_buffers.erase(std::find(free_buffers.begin(), free_buffers.end(), best));
      buffers[best].bytes = std::max(buffers[best].bytes, bytes);
      buffers[best].refs = 1;
      return best;
    }
    buffers.push_back(Buffer{bytes, 1});
    return int(buffers.size()) - 1;
  }

  void unref(int buffer) {
    if (buffer < 0) return;
    Buffer& b = buffers[buffer];
    if (--b.refs == 0 && b.external < 0 && b.external_out < 0)
      free_buffers.push_back(buffer);
  }

  int new_slot(const memory::desc& md, int buffer) {
    slots.push_back(Slot{md, buffer, std::nullopt});
    return int(slots.size()) - 1;
  }

  // A slot reinterpreting the bytes of slot `base` with descriptor `md`
  // (used within one step; the base tensor keeps the buffer alive).
  int view_slot(int base, const memory::desc& md) {
    if (slots[base].md == md) return base;
    if (slots[base].buffer >= 0) return new_slot(md, slots[base].buffer);
    memory m(md, cpu_engine(), slots[base].constant->get_data_handle());
    slots.push_back(Slot{md, -1, m});
    return int(slots.size()) - 1;
  }

  // A fresh slot for tensor `t` with layout `md` in a new buffer.
  int new_output(int t, const memory::desc& md) {
    int s = new_slot(md, alloc_buffer(md.get_size()));
    ts[t].slots.push_back(s);
    return s;
  }

  // A slot for tensor `t` that aliases `buffer` (in-place or view).
  int alias_output(int t, const memory::desc& md, int buffer) {
    buffers[buffer].refs++;
    int s = new_slot(md, buffer);
    ts[t].slots.push_back(s);
    return s;
  }

  // Whether op may overwrite the primary buffer of tensor `t` (last reader,
  // nothing else shares the buffer, not a caller's array, not an output).
  bool can_overwrite(int t, int slot) const {
    const TensorState& s = ts[t];
    if (s.is_const || s.is_output || s.uses_left != 1) return false;
    const int b = slots[slot].buffer;
    return b >= 0 && buffers[b].external < 0 && buffers[b].refs == 1 &&
           s.slots.size() == 1;
  }

  // ----------------------------------------------------------- constants
  memory const_memory(int t, const memory::desc& want) {
    auto it = g->constants.find(t);
    if (it == g->constants.end())
      throw InvalidArgument(cat("tensor ", tensors[t].name, " is not a constant"));
    const ConstView& c = it->second;
    memory::desc src = plain_desc(Dims(c.shape.begin(), c.shape.end()), to_dnnl(c.dtype));
    if (src.get_size() != want.get_size() && is_plain(want)) {
      // Same data, different logical dims (e.g. grouped weights): reshape.
      src = plain_desc(want.get_dims(), to_dnnl(c.dtype));
    } else if (src.get_dims() != want.get_dims()) {
      src = src.reshape(want.get_dims());
    }
    memory user(src, cpu_engine(), const_cast<void*>(c.data));
    memory out(want, cpu_engine());
    dnnl::reorder(user, out).execute(stream, user, out);
    stream.wait();
    return out;
  }

  // ------------------------------------------------------------- layouts
  const memory::desc& primary_desc(int t) {
    if (ts[t].slots.empty()) {
      // A constant read as data: materialise it in plain layout.
      if (!ts[t].is_const)
        throw InvalidArgument(cat("tensor ", tensors[t].name, " is read before it is written"));
      memory::desc md = plain_desc(dims_of(t), to_dnnl(tensors[t].dtype));
      slots.push_back(Slot{md, -1, const_memory(t, md)});
      ts[t].slots.push_back(int(slots.size()) - 1);
    }
    return slots[ts[t].slots[0]].md;
  }

  int primary(int t) {
    primary_desc(t);
    return ts[t].slots[0];
  }

  // The slot of tensor `t` in layout `md`, reordering once if needed.
  int slot_as(int t, const memory::desc& md, const std::string& why) {
    primary_desc(t);
    for (int s : ts[t].slots)
      if (slots[s].md == md) return s;
    if (ts[t].is_const) {
      slots.push_back(Slot{md, -1, const_memory(t, md)});
      ts[t].slots.push_back(int(slots.size()) - 1);
      return ts[t].slots.back();
    }
    const int src = ts[t].slots[0];
    const int dst = new_output(t, md);
    add_reorder(src, dst, why);
    return dst;
  }

  int plain(int t, const std::string& why) {
    return slot_as(t, plain_desc(dims_of(t), to_dnnl(tensors[t].dtype)), why);
  }

  void add_reorder(int src, int dst, const std::string& node) {
    dnnl::reorder::primitive_desc pd(cpu_engine(), slots[src].md, cpu_engine(),
                                     slots[dst].md);
    Step st;
    st.info = {node, "reorder", impl_name(pd)};
    st.prim = dnnl::reorder(pd);
    st.args = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    steps.push_back(std::move(st));
  }

  Dims dims_of(int t) const {
    const auto& s = tensors[t].shape;
    return Dims(s.begin(), s.end());
  }

  std::int64_t numel(int t) const {
    std::int64_t n = 1;
    for (auto d : tensors[t].shape) n *= d;
    return n;
  }

  void push_prim(const OpDecl& op, const char* kind, const dnnl::primitive& p,
                 const dnnl::primitive_desc_base& pd,
                 std::vector<std::pair<int, int>> args) {
    Step st;
    st.info = {op.name, kind, impl_name(pd)};
    st.prim = p;
    st.args = std::move(args);
    steps.push_back(std::move(st));
  }

  void push_kernel(const OpDecl& op, const char* kind, std::vector<int> kslots,
                   std::function<void(const std::vector<void*>&)> fn) {
    Step st;
    st.info = {op.name, kind, "lpcv"};
    st.kernel = std::move(fn);
    st.kernel_slots = std::move(kslots);
    steps.push_back(std::move(st));
  }

  // Post-ops from the lowered attributes; returns the index of the input
  // holding the residual for a "sum" post-op, or -1.
  dnnl::post_ops post_ops(const Attrs& a, bool allow_sum, bool* has_sum) {
    dnnl::post_ops po;
    const auto algs = a.is("post_algs");
    const auto alpha = a.fs("post_alpha");
    const auto beta = a.fs("post_beta");
    if (alpha.size() != algs.size() || beta.size() != algs.size())
      throw InvalidArgument(cat("op ", a.op.name, ": post-op lists differ in length"));
    *has_sum = false;
    for (std::size_t i = 0; i < algs.size(); ++i) {
      if (algs[i] == kPostSum) {
        if (!allow_sum || *has_sum)
          throw InvalidArgument(cat("op ", a.op.name, ": misplaced sum post-op"));
        po.append_sum(float(alpha[i]));
        *has_sum = true;
      } else {
        po.append_eltwise(eltwise_alg(algs[i]), float(alpha[i]), float(beta[i]));
      }
    }
    return po;
  }

  // Output slot for a primitive whose dst may need to hold the residual of a
  // sum post-op first (dst = op(src) + residual).
  int output_with_residual(const OpDecl& op, int out, const memory::desc& md,
                           int residual) {
    if (residual < 0) return new_output(out, md);
    const int rs = slot_as(residual, md, op.name);
    if (can_overwrite(residual, rs) && slots[rs].buffer >= 0) {
      return alias_output(out, md, slots[rs].buffer);
    }
    const int s = new_output(out, md);
    add_reorder(rs, s, op.name);
    return s;
  }

  // ------------------------------------------------------------- compile
  void compile_op(const OpDecl& op) {
    const Attrs a{op};
    const std::string& k = op.op;
    if (k == "Conv") return conv(op, a);
    if (k == "Gemm" || k == "MatMul") return matmul(op, a);
    if (k == "Eltwise") return eltwise(op, a);
    if (k == "Binary") return binary(op, a);
    if (k == "Pool") return pool(op, a);
    if (k == "BatchNormalization") return batchnorm(op, a);
    if (k == "Softmax") return softmax(op, a);
    if (k == "Concat") return concat(op, a);
    if (k == "Split") return split(op, a);
    if (k == "Transpose") return transpose(op, a);
    if (k == "View") return view(op);
    if (k == "Copy") return copy(op);
    if (k == "Pad") return pad_op(op, a);
    if (k == "Quantize") return quantize_op(op, a);
    if (k == "QConv") return qconv(op, a);
    if (k == "QMatMul") return qmatmul(op, a);
    if (k == "QAdd") return qadd(op, a);
    if (k == "Dequantize") return dequantize_op(op, a);
    throw Unsupported(cat("runtime: op ", k, " (node ", op.name, ") is not a lowered op"));
  }

  int in(const OpDecl& op, std::size_t i) const {
    if (i >= op.inputs.size() || op.inputs[i] < 0)
      throw InvalidArgument(cat("op ", op.name, ": missing input ", i));
    return op.inputs[i];
  }
  bool has_in(const OpDecl& op, std::size_t i) const {
    return i < op.inputs.size() && op.inputs[i] >= 0;
  }
  int out(const OpDecl& op, std::size_t i = 0) const {
    if (i >= op.outputs.size() || op.outputs[i] < 0)
      throw InvalidArgument(cat("op ", op.name, ": missing output ", i));
    return op.outputs[i];
  }

  /// Shapes and oneDNN geometry of a (float or int8) convolution.
  struct ConvGeometry {
    Dims xd, wd, yd, wdims, strides, dd, pl, pr;
    std::int64_t group;
  };

  ConvGeometry conv_geometry(const OpDecl& op, const Attrs& a, int x, int w, int y) const {
    ConvGeometry g;
    g.xd = dims_of(x), g.wd = dims_of(w), g.yd = dims_of(y);
    const std::size_t nd = g.xd.size() - 2;
    g.group = a.i("group", 1);
    auto strides = a.is("strides"), dil = a.is("dilations"), pads = a.is("pads");
    if (strides.size() != nd || dil.size() != nd || pads.size() != 2 * nd)
      throw InvalidArgument(cat(op.op, " ", op.name, ": strides/dilations/pads ranks"));
    g.strides = Dims(strides.begin(), strides.end());
    g.pl = Dims(pads.begin(), pads.begin() + nd), g.pr = Dims(nd), g.dd = Dims(nd);
    for (std::size_t i = 0; i < nd; ++i) {
      g.dd[i] = dil[i] - 1;
      // Right padding that yields exactly the declared output extent.
      g.pr[i] = (g.yd[2 + i] - 1) * strides[i] + (g.wd[2 + i] - 1) * dil[i] + 1 - g.xd[2 + i] -
                g.pl[i];
    }
    g.wdims = g.wd;
    if (g.group > 1) {
      g.wdims = {g.group, g.wd[0] / g.group};
      g.wdims.insert(g.wdims.end(), g.wd.begin() + 1, g.wd.end());
    }
    return g;
  }

  void conv(const OpDecl& op, const Attrs& a) {
    const int x = in(op, 0), w = in(op, 1), y = out(op);
    const ConvGeometry g = conv_geometry(op, a, x, w, y);
    const Dims &xd = g.xd, &wd = g.wd, &yd = g.yd, &wdims = g.wdims;
    bool has_sum = false;
    dnnl::primitive_attr attr;
    attr.set_post_ops(post_ops(a, true, &has_sum));
    const int residual = has_sum ? in(op, op.inputs.size() - 1) : -1;
    const bool bias = has_in(op, 2) && op.inputs[2] != residual;
    // Constant weights get the layout oneDNN prefers (reordered once);
    // weights computed at run time stay in ONNX's plain (g)oihw layout.
    const bool w_const = ts[w].is_const;
    memory::desc src_any(xd, dt::f32, tag::any), dst_any(yd, dt::f32, tag::any);
    memory::desc w_any = w_const ? memory::desc(wdims, dt::f32, tag::any) : plain_desc(wdims, dt::f32);
    memory::desc b_md = bias ? plain_desc({wd[0]}, dt::f32) : memory::desc();
    dnnl::convolution_forward::primitive_desc pd;
    try {
      pd = dnnl::convolution_forward::primitive_desc(
          cpu_engine(), dnnl::prop_kind::forward_inference,
          dnnl::algorithm::convolution_direct, src_any, w_any, b_md, dst_any,
          g.strides, g.dd, g.pl, g.pr, attr);
    } catch (const dnnl::error& e) {
      throw BackendError(cat("Conv ", op.name, ": oneDNN: ", e.what()));
    }
    const int xs = slot_as(x, pd.src_desc(), op.name);
    int ws;
    if (w_const) {
      slots.push_back(Slot{pd.weights_desc(), -1, const_memory(w, pd.weights_desc())});
      ws = int(slots.size()) - 1;
    } else {
      ws = view_slot(plain(w, op.name), pd.weights_desc());
    }
    std::vector<std::pair<int, int>> args = {{DNNL_ARG_SRC, xs}, {DNNL_ARG_WEIGHTS, ws}};
    if (bias) args.push_back({DNNL_ARG_BIAS, plain(in(op, 2), op.name)});
    const int ys = output_with_residual(op, y, pd.dst_desc(), residual);
    args.push_back({DNNL_ARG_DST, ys});
    push_prim(op, "convolution", dnnl::convolution_forward(pd), pd, std::move(args));
  }

  // Gemm (2-D, ONNX transA/transB/alpha/beta) and MatMul (N-D, broadcast).
  void matmul(const OpDecl& op, const Attrs& a) {
    const bool gemm = op.op == "Gemm";
    const int A = in(op, 0), B = in(op, 1), y = out(op);
    Dims ad = dims_of(A), bd = dims_of(B), yd = dims_of(y);
    const bool ta = gemm && a.i("transA", 0), tb = gemm && a.i("transB", 0);
    double alpha = gemm ? a.f("alpha", 1.0) : 1.0, beta = gemm ? a.f("beta", 1.0) : 1.0;
    // MatMul's 1-D operands: promote to matrices, then right-align ranks.
    const bool a_vec = ad.size() == 1, b_vec = bd.size() == 1;
    if (a_vec) ad.insert(ad.begin(), 1);
    if (b_vec) bd.push_back(1);
    const std::size_t rank = std::max({ad.size(), bd.size(), std::size_t(2)});
    ad = pad_rank(ad, rank);
    bd = pad_rank(bd, rank);
    Dims od(rank);
    for (std::size_t i = 0; i + 2 < rank; ++i) od[i] = std::max(ad[i], bd[i]);
    od[rank - 2] = ta ? ad[rank - 1] : ad[rank - 2];
    od[rank - 1] = tb ? bd[rank - 2] : bd[rank - 1];
    auto logical = [&](const Dims& d, bool trans) {
      // A view of a dense tensor with the last two axes swapped if trans.
      memory::desc md = plain_desc(d, dt::f32);
      if (!trans) return md;
      std::vector<int> perm(d.size());
      std::iota(perm.begin(), perm.end(), 0);
      std::swap(perm[d.size() - 1], perm[d.size() - 2]);
      return md.permute_axes(perm);
    };
    memory::desc a_md = logical(ad, ta);
    memory::desc b_md = logical(bd, tb);
    memory::desc y_md = plain_desc(od, dt::f32);
    const bool b_const = ts[B].is_const;
    dnnl::post_ops po;
    bool has_sum = false;
    dnnl::post_ops user = post_ops(a, false, &has_sum);
    int c_slot = -1;
    memory::desc bias_md;
    std::optional<memory> bias_mem;
    const bool has_c = gemm && has_in(op, 2) && beta != 0.0;
    // alpha·A·B + beta·C = beta·((alpha/beta)·A·B + C) when C is a tensor.
    if (has_c && !ts[in(op, 2)].is_const) {
      if (alpha / beta != 1.0) po.append_eltwise(dnnl::algorithm::eltwise_linear, float(alpha / beta), 0.f);
      Dims cd = pad_rank(dims_of(in(op, 2)), rank);
      c_slot = plain(in(op, 2), op.name);
      po.append_binary(dnnl::algorithm::binary_add, plain_desc(cd, dt::f32));
      if (beta != 1.0) po.append_eltwise(dnnl::algorithm::eltwise_linear, float(beta), 0.f);
    } else {
      if (alpha != 1.0 && !b_const) po.append_eltwise(dnnl::algorithm::eltwise_linear, float(alpha), 0.f);
      if (has_c) {
        // Constant C: scaled by beta and passed as the matmul bias.
        Dims cd = pad_rank(dims_of(in(op, 2)), rank);
        bias_md = plain_desc(cd, dt::f32);
        memory raw = const_memory(in(op, 2), bias_md);
        if (beta != 1.0) {
          float* p = static_cast<float*>(raw.get_data_handle());
          const std::size_t n = bias_md.get_size() / sizeof(float);
          for (std::size_t i = 0; i < n; ++i) p[i] = float(p[i] * beta);
        }
        bias_mem = raw;
      }
    }
    for (int i = 0; i < user.len(); ++i) {
      dnnl::algorithm alg;
      float al, be;
      user.get_params_eltwise(i, alg, al, be);
      po.append_eltwise(alg, al, be);
    }
    dnnl::primitive_attr attr;
    attr.set_post_ops(po);
    const memory::desc b_want =
        b_const ? memory::desc(b_md.get_dims(), dt::f32, tag::any) : b_md;
    dnnl::matmul::primitive_desc pd;
    try {
      pd = dnnl::matmul::primitive_desc(cpu_engine(), a_md, b_want, bias_md, y_md, attr);
    } catch (const dnnl::error& e) {
      throw BackendError(cat(op.op, " ", op.name, ": oneDNN: ", e.what()));
    }
    // A: the plain buffer of A reinterpreted with the logical descriptor.
    const int as = view_slot(plain(A, op.name), a_md);
    std::vector<std::pair<int, int>> args = {{DNNL_ARG_SRC, as}};
    if (b_const) {
      // Weights reordered once; alpha folded in.
      memory::desc b_src = b_md;
      auto it = g->constants.find(B);
      memory user_b(b_src, cpu_engine(), const_cast<void*>(it->second.data));
      memory wb(pd.weights_desc(), cpu_engine());
      dnnl::primitive_attr rattr;
      if (alpha != 1.0 && c_slot < 0) {
        dnnl::post_ops rpo;
        rpo.append_eltwise(dnnl::algorithm::eltwise_linear, float(alpha), 0.f);
        rattr.set_post_ops(rpo);
      }
      dnnl::reorder(dnnl::reorder::primitive_desc(cpu_engine(), b_src, cpu_engine(),
                                                  pd.weights_desc(), rattr))
          .execute(stream, user_b, wb);
      stream.wait();
      slots.push_back(Slot{pd.weights_desc(), -1, wb});
      args.push_back({DNNL_ARG_WEIGHTS, int(slots.size()) - 1});
    } else {
      args.push_back({DNNL_ARG_WEIGHTS, view_slot(plain(B, op.name), b_md)});
    }
    if (bias_mem) {
      slots.push_back(Slot{bias_md, -1, *bias_mem});
      args.push_back({DNNL_ARG_BIAS, int(slots.size()) - 1});
    }
    if (c_slot >= 0) {
      const int cs =
          view_slot(c_slot, plain_desc(pad_rank(dims_of(in(op, 2)), rank), dt::f32));
      const int idx = alpha / beta != 1.0 ? 1 : 0;
      args.push_back({DNNL_ARG_ATTR_MULTIPLE_POST_OP(idx) | DNNL_ARG_SRC_1, cs});
    }
    // Output: plain, with the declared (possibly squeezed) shape aliased.
    const int ys = new_output(y, plain_desc(yd, dt::f32));
    const int yv = new_slot(y_md, slots[ys].buffer);
    args.push_back({DNNL_ARG_DST, yv});
    push_prim(op, gemm ? "gemm" : "matmul", dnnl::matmul(pd), pd, std::move(args));
  }

  void eltwise(const OpDecl& op, const Attrs& a) {
    const int x = in(op, 0), y = out(op);
    const int xs = primary(x);
    const memory::desc md = slots[xs].md;
    dnnl::eltwise_forward::primitive_desc pd(
        cpu_engine(), dnnl::prop_kind::forward_inference, eltwise_alg(a.i("alg", 0)),
        md, md, float(a.f("alpha", 0.0)), float(a.f("beta", 0.0)));
    const int ys = can_overwrite(x, xs) ? alias_output(y, md, slots[xs].buffer)
                                        : new_output(y, md);
    push_prim(op, "eltwise", dnnl::eltwise_forward(pd), pd,
              {{DNNL_ARG_SRC, xs}, {DNNL_ARG_DST, ys}});
  }

  void binary(const OpDecl& op, const Attrs& a) {
    int x0 = in(op, 0), x1 = in(op, 1);
    const int y = out(op);
    std::string kind = a.s("kind", "add");
    const Dims yd = dims_of(y);
    const std::size_t rank = std::max<std::size_t>(yd.size(), 1);
    Dims d0 = pad_rank(dims_of(x0), rank), d1 = pad_rank(dims_of(x1), rank);
    const Dims ydr = pad_rank(yd, rank);
    dnnl::post_ops po;
    bool has_sum = false;
    dnnl::post_ops user = post_ops(a, false, &has_sum);
    const bool commutative = kind == "add" || kind == "mul";
    bool negate = false;
    if (d0 != ydr && d1 == ydr) {
      if (commutative) std::swap(x0, x1), std::swap(d0, d1);
      else if (kind == "sub") std::swap(x0, x1), std::swap(d0, d1), negate = true;
    }
    if (d0 != ydr) return binary_generic(op, kind, user);
    if (negate) po.append_eltwise(dnnl::algorithm::eltwise_linear, -1.f, 0.f);
    for (int i = 0; i < user.len(); ++i) {
      dnnl::algorithm alg;
      float al, be;
      user.get_params_eltwise(i, alg, al, be);
      po.append_eltwise(alg, al, be);
    }
    dnnl::primitive_attr attr;
    attr.set_post_ops(po);
    const dnnl::algorithm alg = kind == "add" ? dnnl::algorithm::binary_add
                                : kind == "sub" ? dnnl::algorithm::binary_sub
                                : kind == "mul" ? dnnl::algorithm::binary_mul
                                                : dnnl::algorithm::binary_div;
    // First try the producers' layouts, then plain ones.
    for (int attempt = 0; attempt < 2; ++attempt) {
      int s0 = attempt == 0 && yd.size() == rank ? primary(x0) : plain(x0, op.name);
      memory::desc m0 = slots[s0].md;
      if (m0.get_dims() != ydr) m0 = plain_desc(ydr, dt::f32);  // rank-0 case
      int s1;
      memory::desc m1;
      if (d1 == ydr && attempt == 0 && yd.size() == rank) {
        s1 = slot_as(x1, m0, op.name);
        m1 = m0;
      } else {
        s1 = plain(x1, op.name);
        m1 = plain_desc(d1, dt::f32);
      }
      dnnl::binary::primitive_desc pd;
      try {
        pd = dnnl::binary::primitive_desc(cpu_engine(), alg, m0, m1, m0, attr);
      } catch (const dnnl::error&) {
        if (attempt == 0) continue;
        return binary_generic(op, kind, user);
      }
      const int v0 = view_slot(s0, m0);
      const int v1 = view_slot(s1, m1);
      int ys;
      if (v0 == s0 && can_overwrite(x0, s0) && x0 != x1)
        ys = alias_output(y, m0, slots[s0].buffer);
      else
        ys = new_output(y, m0);
      push_prim(op, "binary", dnnl::binary(pd), pd,
                {{DNNL_ARG_SRC_0, v0}, {DNNL_ARG_SRC_1, v1}, {DNNL_ARG_DST, ys}});
      return;
    }
  }

  void binary_generic(const OpDecl& op, const std::string& kind, const dnnl::post_ops& user) {
    const int x0 = in(op, 0), x1 = in(op, 1), y = out(op);
    const int s0 = plain(x0, op.name), s1 = plain(x1, op.name);
    const int ys = new_output(y, plain_desc(dims_of(y), dt::f32));
    const BinaryOp bop = kind == "add" ? BinaryOp::add : kind == "sub" ? BinaryOp::sub
                         : kind == "mul" ? BinaryOp::mul : BinaryOp::div;
    auto s0d = tensors[x0].shape, s1d = tensors[x1].shape, yd = tensors[y].shape;
    push_kernel(op, "binary_broadcast", {s0, s1, ys},
                [=](const std::vector<void*>& p) {
                  broadcast_binary(bop, static_cast<const float*>(p[0]), s0d,
                                   static_cast<const float*>(p[1]), s1d,
                                   static_cast<float*>(p[2]), yd);
                });
    if (user.len()) {
      // Activations that followed: a separate in-place eltwise step each.
      for (int i = 0; i < user.len(); ++i) {
        dnnl::algorithm alg;
        float al, be;
        user.get_params_eltwise(i, alg, al, be);
        const memory::desc md = slots[ys].md;
        dnnl::eltwise_forward::primitive_desc pd(
            cpu_engine(), dnnl::prop_kind::forward_inference, alg, md, md, al, be);
        push_prim(op, "eltwise", dnnl::eltwise_forward(pd), pd,
                  {{DNNL_ARG_SRC, ys}, {DNNL_ARG_DST, ys}});
      }
    }
  }

  void pool(const OpDecl& op, const Attrs& a) {
    const int x = in(op, 0), y = out(op);
    const Dims xd = dims_of(x), yd = dims_of(y);
    const std::size_t nd = xd.size() - 2;
    const std::string mode = a.s("mode", "max");
    auto kernel = a.is("kernel"), strides = a.is("strides"), dil = a.is("dilations"),
         pads = a.is("pads");
    if (kernel.size() != nd || strides.size() != nd || dil.size() != nd || pads.size() != 2 * nd)
      throw InvalidArgument(cat("pool ", op.name, ": kernel/strides/dilations/pads ranks"));
    Dims pl(pads.begin(), pads.begin() + nd), pr(nd), dd(nd);
    for (std::size_t i = 0; i < nd; ++i) {
      dd[i] = dil[i] - 1;
      pr[i] = (yd[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - xd[2 + i] - pl[i];
    }
    const dnnl::algorithm alg =
        mode == "max" ? dnnl::algorithm::pooling_max
        : a.i("count_include_pad", 0) ? dnnl::algorithm::pooling_avg_include_padding
                                      : dnnl::algorithm::pooling_avg_exclude_padding;
    const int xs = primary(x);
    dnnl::pooling_forward::primitive_desc pd;
    try {
      pd = dnnl::pooling_forward::primitive_desc(
          cpu_engine(), dnnl::prop_kind::forward_inference, alg, slots[xs].md,
          memory::desc(yd, to_dnnl(tensors[y].dtype), tag::any),
          Dims(strides.begin(), strides.end()),
          Dims(kernel.begin(), kernel.end()), dd, pl, pr);
    } catch (const dnnl::error& e) {
      throw BackendError(cat("pool ", op.name, ": oneDNN: ", e.what()));
    }
    const int ys = new_output(y, pd.dst_desc());
    push_prim(op, "pooling", dnnl::pooling_forward(pd), pd,
              {{DNNL_ARG_SRC, xs}, {DNNL_ARG_DST, ys}});
  }

  void batchnorm(const OpDecl& op, const Attrs& a) {
    const int x = in(op, 0), y = out(op);
    const int xs = primary(x);
    const memory::desc md = slots[xs].md;
    const auto flags = dnnl::normalization_flags::use_global_stats |
                       dnnl::normalization_flags::use_scale |
                       dnnl::normalization_flags::use_shift;
    dnnl::batch_normalization_forward::primitive_desc pd(
        cpu_engine(), dnnl::prop_kind::forward_inference, md, md,
        float(a.f("epsilon", 1e-5)), flags);
    std::vector<std::pair<int, int>> args = {{DNNL_ARG_SRC, xs}};
    const int keys[] = {DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};
    for (int i = 0; i < 4; ++i) args.push_back({keys[i], plain(in(op, 1 + i), op.name)});
    const int ys = can_overwrite(x, xs) ? alias_output(y, md, slots[xs].buffer)
                                        : new_output(y, md);
    args.push_back({DNNL_ARG_DST, ys});
    push_prim(op, "batch_normalization", dnnl::batch_normalization_forward(pd), pd,
              std::move(args));
  }

  void softmax(const OpDecl& op, const Attrs& a) {
    const int x = in(op, 0), y = out(op);
    const int xs = plain(x, op.name);
    // Opset < 13 semantics arrive as a 2-D view (`coerce` = axis).
    Dims d = dims_of(x);
    if (d.empty()) d = {1};
    int axis = int(a.i("axis", -1));
    if (a.i("coerce", 0)) {
      std::int64_t outer = 1, inner = 1;
      for (int i = 0; i < int(d.size()); ++i) (i < axis ? outer : inner) *= d[i];
      d = {outer, inner};
      axis = 1;
    }
    if (axis < 0) axis += int(d.size());
    const memory::desc md = plain_desc(d, dt::f32);
    dnnl::softmax_forward::primitive_desc pd(
        cpu_engine(), dnnl::prop_kind::forward_inference,
        a.i("log", 0) ? dnnl::algorithm::softmax_log : dnnl::algorithm::softmax_accurate,
        md, md, axis);
    const int xv = view_slot(xs, md);
    const int ys = new_output(y, plain_desc(dims_of(y), dt::f32));
    const int yv = new_slot(md, slots[ys].buffer);
    push_prim(op, "softmax", dnnl::softmax_forward(pd), pd,
              {{DNNL_ARG_SRC, xv}, {DNNL_ARG_DST, yv}});
  }

  void concat(const OpDecl& op, const Attrs& a) {
    const int y = out(op);
    const int axis = int(a.i("axis", 0));
    std::vector<int> ins;
    for (int t : op.inputs)
      if (t >= 0 && numel(t) > 0) ins.push_back(t);
    if (ins.empty()) throw Unsupported(cat("Concat ", op.name, ": all inputs are empty"));
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::vector<memory::desc> mds;
      std::vector<int> ss;
      for (int t : ins) {
        ss.push_back(attempt == 0 ? primary(t) : plain(t, op.name));
        mds.push_back(slots[ss.back()].md);
      }
      dnnl::concat::primitive_desc pd;
      try {
        pd = dnnl::concat::primitive_desc(cpu_engine(), memory::desc(dims_of(y), dt::f32, tag::any),
                                          axis, mds);
      } catch (const dnnl::error& e) {
        if (attempt == 0) continue;
        throw BackendError(cat("Concat ", op.name, ": oneDNN: ", e.what()));
      }
      std::vector<std::pair<int, int>> args;
      for (std::size_t i = 0; i < ss.size(); ++i) args.push_back({DNNL_ARG_MULTIPLE_SRC + int(i), ss[i]});
      args.push_back({DNNL_ARG_DST, new_output(y, pd.dst_desc())});
      push_prim(op, "concat", dnnl::concat(pd), pd, std::move(args));
      return;
    }
  }

  void split(const OpDecl& op, const Attrs& a) {
    const int x = in(op, 0);
    const int axis = int(a.i("axis", 0));
    const auto sizes = a.is("sizes");
    if (sizes.size() != op.outputs.size())
      throw InvalidArgument(cat("Split ", op.name, ": need one size per output"));
    const int xs = plain(x, op.name);
    Dims offsets(tensors[x].shape.size(), 0);
    for (std::size_t j = 0; j < op.outputs.size(); ++j) {
      const int y = op.outputs[j];
      if (y >= 0) {  // -1: an empty part, not materialised
        const Dims yd = dims_of(y);
        const int view = view_slot(xs, slots[xs].md.submemory_desc(yd, offsets));
        add_reorder(view, new_output(y, plain_desc(yd, dt::f32)), op.name);
      }
      offsets[axis] += sizes[j];
    }
  }

  void transpose(const OpDecl& op, const Attrs& a) {
    const int x = in(op, 0), y = out(op);
    const auto perm = a.is("perm");
    const int xs = plain(x, op.name);
    std::vector<int> inv(perm.size());
    for (std::size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = int(i);
    memory::desc permuted = slots[xs].md;
    if (perm.size() > 1) permuted = permuted.permute_axes(inv);
    const int view = view_slot(xs, permuted);
    const int ys = new_output(y, plain_desc(dims_of(y), dt::f32));
    add_reorder(view, ys, op.name);
  }

  // Reshape/Flatten/Squeeze/Unsqueeze: the same bytes with new dims.
  void view(const OpDecl& op) {
    const int x = in(op, 0), y = out(op);
    const int xs = plain(x, op.name);
    const memory::desc md = plain_desc(dims_of(y), to_dnnl(tensors[y].dtype));
    if (slots[xs].buffer < 0) {  // a view of a constant is a constant view
      ts[y].slots.push_back(view_slot(xs, md));
      return;
    }
    alias_output(y, md, slots[xs].buffer);
  }

  void copy(const OpDecl& op) {
    const int x = in(op, 0), y = out(op);
    const int xs = primary(x);
    const int ys = new_output(y, slots[xs].md);
    add_reorder(xs, ys, op.name);
  }

  void pad_op(const OpDecl& op, const Attrs& a) {
    const int x = in(op, 0), y = out(op);
    const int xs = plain(x, op.name);
    const int ys = new_output(y, plain_desc(dims_of(y), dt::f32));
    const std::string m = a.s("mode", "constant");
    const PadMode mode = m == "reflect" ? PadMode::reflect : m == "edge" ? PadMode::edge
                         : m == "wrap" ? PadMode::wrap : PadMode::constant;
    const auto pads = a.is("pads");
    const float value = float(a.f("value", 0.0));
    const auto xd = tensors[x].shape;
    if (pads.size() != 2 * xd.size())
      throw InvalidArgument(cat("Pad ", op.name, ": expected ", 2 * xd.size(), " pads"));
    push_kernel(op, "pad", {xs, ys}, [=](const std::vector<void*>& p) {
      pad(static_cast<const float*>(p[0]), xd, static_cast<float*>(p[1]), pads, mode, value);
    });
  }

  // ------------------------------------------------------- quantization
  // Per-tensor (axis -1) or per-axis parameters of a Quantize/Dequantize op.
  struct QAttrs {
    std::vector<float> scale;
    std::vector<std::int32_t> zp;
    int axis = -1;
  };
  QAttrs qattrs(const OpDecl& op, const Attrs& a, int t) const {
    QAttrs q;
    for (double v : a.fs("scales")) q.scale.push_back(float(v));
    for (auto v : a.is("zero_points")) q.zp.push_back(std::int32_t(v));
    q.axis = int(a.i("axis", -1));
    if (q.scale.empty() || q.scale.size() != q.zp.size())
      throw InvalidArgument(cat(op.op, " ", op.name, ": scales and zero_points must be non-empty "
                                "and of equal length"));
    const auto& shape = tensors[t].shape;
    if (q.axis >= 0) {
      if (q.axis >= int(shape.size()) || shape[q.axis] != std::int64_t(q.scale.size()))
        throw ShapeError(cat(op.op, " ", op.name, ": ", q.scale.size(),
                             " scales do not match axis ", q.axis));
    } else if (q.scale.size() != 1) {
      throw InvalidArgument(cat(op.op, " ", op.name, ": per-tensor needs one scale"));
    }
    for (float s : q.scale)
      if (!(s > 0.f) || !std::isfinite(s))
        throw InvalidArgument(cat(op.op, " ", op.name, ": scale must be finite and > 0"));
    return q;
  }
  static quantize::Layout qlayout(const std::vector<std::int64_t>& shape, int axis) {
    return quantize::make_layout(shape, axis < 0 ? quantize::Granularity::per_tensor
                                                 : quantize::Granularity::per_channel,
                                 axis < 0 ? 0 : axis, 1);
  }

  // y = saturate(round_half_even(x / scale) + zero_point), ONNX QuantizeLinear.
  void quantize_op(const OpDecl& op, const Attrs& a) {
    const int x = in(op, 0), y = out(op);
    if (tensors[x].dtype != DType::f32)
      throw Unsupported(cat("Quantize ", op.name, ": input must be float32"));
    const DType yt = tensors[y].dtype;
    if (yt != DType::u8 && yt != DType::s8)
      throw Unsupported(cat("Quantize ", op.name, ": output must be uint8 or int8"));
    const QAttrs q = qattrs(op, a, x);
    const quantize::Layout L = qlayout(tensors[x].shape, q.axis);
    quantize::Scheme sch;
    sch.bits = 8;
    sch.is_signed = yt == DType::s8;
    sch.symmetric = false;
    const quantize::IntRange r = quantize::int_range(sch);
    for (auto z : q.zp)
      if (z < r.qmin || z > r.qmax)
        throw InvalidArgument(cat("Quantize ", op.name, ": zero point ", z, " out of range"));
    const int xs = plain(x, op.name);
    const int ys = new_output(y, plain_desc(dims_of(y), to_dnnl(yt)));
    push_kernel(op, yt == DType::u8 ? "quantize_u8" : "quantize_s8", {xs, ys},
                [=](const std::vector<void*>& p) {
                  const float* xp = static_cast<const float*>(p[0]);
                  if (sch.is_signed)
                    quantize::quantize(xp, static_cast<std::int8_t*>(p[1]), L, q.scale.data(),
                                       q.zp.data(), sch);
                  else
                    quantize::quantize(xp, static_cast<std::uint8_t*>(p[1]), L, q.scale.data(),
                                       q.zp.data(), sch);
                });
  }

  // y = (x - zero_point) * scale, ONNX DequantizeLinear.
  void dequantize_op(const OpDecl& op, const Attrs& a) {
    const int x = in(op, 0), y = out(op);
    const DType xt = tensors[x].dtype;
    if (xt != DType::u8 && xt != DType::s8 && xt != DType::s32)
      throw Unsupported(cat("Dequantize ", op.name, ": input must be uint8, int8 or int32"));
    const QAttrs q = qattrs(op, a, x);
    const quantize::Layout L = qlayout(tensors[x].shape, q.axis);
    const int xs = plain(x, op.name);
    const int ys = new_output(y, plain_desc(dims_of(y), dt::f32));
    const char* kind = xt == DType::u8 ? "dequantize_u8" : xt == DType::s8 ? "dequantize_s8"
                                                                           : "dequantize_s32";
    push_kernel(op, kind, {xs, ys}, [=](const std::vector<void*>& p) {
      float* yp = static_cast<float*>(p[1]);
      if (xt == DType::u8) {
        quantize::dequantize(static_cast<const std::uint8_t*>(p[0]), yp, L, q.scale.data(),
                             q.zp.data());
      } else if (xt == DType::s8) {
        quantize::dequantize(static_cast<const std::int8_t*>(p[0]), yp, L, q.scale.data(),
                             q.zp.data());
      } else {  // int32 (zero point 0): float(x) * scale
        const std::int32_t* xp = static_cast<const std::int32_t*>(p[0]);
        const std::int64_t C = L.channels, inner = L.inner, n = L.size();
        for (std::int64_t i = 0; i < n; ++i) {
          const std::int64_t c = q.axis < 0 ? 0 : (i / inner) % C;
          yp[i] = float(std::int64_t(xp[i]) - q.zp[c]) * q.scale[c];
        }
      }
    });
  }

  // ------------------------------------------------------------ int8 ops
  // A constant memory of `n` values (f32 scales or s32 zero points).
  int const_slot_f32(const std::vector<float>& v) {
    memory::desc md({std::int64_t(v.size())}, dt::f32, tag::a);
    memory m(md, cpu_engine());
    std::memcpy(m.get_data_handle(), v.data(), v.size() * sizeof(float));
    slots.push_back(Slot{md, -1, m});
    return int(slots.size()) - 1;
  }
  int const_slot_s32(std::int32_t v) {
    memory::desc md({1}, dt::s32, tag::a);
    memory m(md, cpu_engine());
    *static_cast<std::int32_t*>(m.get_data_handle()) = v;
    slots.push_back(Slot{md, -1, m});
    return int(slots.size()) - 1;
  }
  static const char* dt_name(DType t) {
    switch (t) {
      case DType::u8: return "u8";
      case DType::s8: return "s8";
      case DType::s32: return "s32";
      case DType::f32: return "f32";
      default: return "?";
    }
  }

  // Quantization attributes shared by QConv and QMatMul:
  //   dst = Q(post_ops(src_scale * w_scale[oc] * sum((x - src_zp) * w) + bias))
  // with Q = round half to even, dst_scale/dst_zp, saturation (int dst).
  struct QLinear {
    dnnl::primitive_attr attr;
    std::vector<std::pair<int, int>> args;  // ATTR_SCALES / ATTR_ZERO_POINTS slots
    int residual = -1;
    std::string detail;
  };
  QLinear qlinear_attrs(const OpDecl& op, const Attrs& a, int x, int y, int w_mask,
                        std::size_t n_oc) {
    QLinear q;
    const DType xt = tensors[x].dtype, yt = tensors[y].dtype;
    if (xt != DType::u8 && xt != DType::s8)
      throw Unsupported(cat(op.op, " ", op.name, ": int8 input must be uint8 or int8"));
    const bool int_dst = yt == DType::u8 || yt == DType::s8;
    if (!int_dst && yt != DType::f32)
      throw Unsupported(cat(op.op, " ", op.name, ": output must be uint8, int8 or float32"));
    std::vector<float> ws;
    for (double v : a.fs("w_scales")) ws.push_back(float(v));
    if (ws.size() != 1 && ws.size() != n_oc)
      throw InvalidArgument(cat(op.op, " ", op.name, ": ", ws.size(), " weight scales for ",
                                n_oc, " output channels"));
    const float s_src = float(a.f("src_scale", 1.0));
    const auto zp_src = std::int32_t(a.i("src_zp", 0));
    q.attr.set_scales_mask(DNNL_ARG_SRC, 0);
    q.args.push_back({DNNL_ARG_ATTR_SCALES | DNNL_ARG_SRC, const_slot_f32({s_src})});
    q.attr.set_scales_mask(DNNL_ARG_WEIGHTS, ws.size() == 1 ? 0 : w_mask);
    q.args.push_back({DNNL_ARG_ATTR_SCALES | DNNL_ARG_WEIGHTS, const_slot_f32(ws)});
    if (zp_src != 0) {
      q.attr.set_zero_points_mask(DNNL_ARG_SRC, 0);
      q.args.push_back({DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, const_slot_s32(zp_src)});
    }
    if (int_dst) {
      const float s_dst = float(a.f("dst_scale", 1.0));
      const auto zp_dst = std::int32_t(a.i("dst_zp", 0));
      q.attr.set_scales_mask(DNNL_ARG_DST, 0);
      q.args.push_back({DNNL_ARG_ATTR_SCALES | DNNL_ARG_DST, const_slot_f32({s_dst})});
      if (zp_dst != 0) {
        q.attr.set_zero_points_mask(DNNL_ARG_DST, 0);
        q.args.push_back({DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, const_slot_s32(zp_dst)});
      }
    }
    // Post-ops: eltwise, and a residual sum s * (r - z) read from dst.
    dnnl::post_ops po;
    const auto algs = a.is("post_algs");
    const auto alpha = a.fs("post_alpha");
    const auto beta = a.fs("post_beta");
    if (alpha.size() != algs.size() || beta.size() != algs.size())
      throw InvalidArgument(cat("op ", op.name, ": post-op lists differ in length"));
    for (std::size_t i = 0; i < algs.size(); ++i) {
      if (algs[i] == kPostSum) {
        if (q.residual >= 0 || !int_dst || op.inputs.size() < 4)
          throw InvalidArgument(cat("op ", op.name, ": misplaced sum post-op"));
        q.residual = in(op, 3);
        if (tensors[q.residual].dtype != yt)
          throw Unsupported(cat(op.op, " ", op.name, ": residual and output types differ"));
        po.append_sum(float(alpha[i]), std::int32_t(beta[i]), to_dnnl(yt));
      } else if (algs[i] == kPostAddTensor) {
        if (q.residual >= 0 || op.inputs.size() < 4)
          throw InvalidArgument(cat("op ", op.name, ": misplaced add post-op"));
        const int r = in(op, 3);
        if (tensors[r].dtype != DType::f32 || dims_of(r) != dims_of(y))
          throw Unsupported(cat(op.op, " ", op.name, ": the added tensor must be float32 of "
                                "the output's shape"));
        const int rs = primary(r);
        po.append_binary(dnnl::algorithm::binary_add, slots[rs].md);
        q.args.push_back({DNNL_ARG_ATTR_MULTIPLE_POST_OP(int(i)) | DNNL_ARG_SRC_1, rs});
      } else {
        po.append_eltwise(eltwise_alg(algs[i]), float(alpha[i]), float(beta[i]));
      }
    }
    q.attr.set_post_ops(po);
    q.detail = cat(" (int8 ", dt_name(xt), ":s8:", dt_name(yt), ")");
    return q;
  }

  void qconv(const OpDecl& op, const Attrs& a) {
    const int x = in(op, 0), w = in(op, 1), y = out(op);
    if (!ts[w].is_const || tensors[w].dtype != DType::s8)
      throw Unsupported(cat("QConv ", op.name, ": weights must be a constant int8 tensor"));
    const ConvGeometry g = conv_geometry(op, a, x, w, y);
    const Dims &xd = g.xd, &wd = g.wd, &yd = g.yd, &wdims = g.wdims;
    const std::int64_t group = g.group;
    QLinear q = qlinear_attrs(op, a, x, y, group > 1 ? 3 : 1, std::size_t(wd[0]));
    const bool bias = has_in(op, 2);
    const dt xt = to_dnnl(tensors[x].dtype), yt = to_dnnl(tensors[y].dtype);
    memory::desc b_md = bias ? plain_desc({wd[0]}, dt::f32) : memory::desc();
    dnnl::convolution_forward::primitive_desc pd;
    try {
      pd = dnnl::convolution_forward::primitive_desc(
          cpu_engine(), dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
          memory::desc(xd, xt, tag::any), memory::desc(wdims, dt::s8, tag::any), b_md,
          memory::desc(yd, yt, tag::any), g.strides, g.dd, g.pl, g.pr, q.attr);
    } catch (const dnnl::error& e) {
      throw Unsupported(cat("QConv ", op.name, ": no oneDNN int8 convolution: ", e.what()));
    }
    prefer_exact_int8(pd, cat("QConv ", op.name));
    const int xs = slot_as(x, pd.src_desc(), op.name);
    slots.push_back(Slot{pd.weights_desc(), -1, const_memory(w, pd.weights_desc())});
    const int ws = int(slots.size()) - 1;
    std::vector<std::pair<int, int>> args = {{DNNL_ARG_SRC, xs}, {DNNL_ARG_WEIGHTS, ws}};
    if (bias) {
      if (!ts[in(op, 2)].is_const || tensors[in(op, 2)].dtype != DType::f32)
        throw Unsupported(cat("QConv ", op.name, ": bias must be a float32 constant"));
      args.push_back({DNNL_ARG_BIAS, plain(in(op, 2), op.name)});
    }
    args.insert(args.end(), q.args.begin(), q.args.end());
    const int ys = output_with_residual(op, y, pd.dst_desc(), q.residual);
    args.push_back({DNNL_ARG_DST, ys});
    push_prim(op, "convolution", dnnl::convolution_forward(pd), pd, std::move(args));
    steps.back().info.detail += q.detail;
  }

  // Gemm (transB) / MatMul with constant int8 weights [K, N] (or [N, K]).
  void qmatmul(const OpDecl& op, const Attrs& a) {
    const int A = in(op, 0), B = in(op, 1), y = out(op);
    if (!ts[B].is_const || tensors[B].dtype != DType::s8)
      throw Unsupported(cat("QMatMul ", op.name, ": weights must be a constant int8 tensor"));
    Dims ad = dims_of(A), bd = dims_of(B), yd = dims_of(y);
    const bool tb = a.i("transB", 0);
    if (bd.size() != 2 || ad.size() < 2)
      throw Unsupported(cat("QMatMul ", op.name, ": needs 2-D weights and a matrix input"));
    const std::size_t rank = ad.size();
    const std::int64_t n_out = tb ? bd[0] : bd[1];
    Dims kn = tb ? Dims{bd[1], bd[0]} : bd;
    Dims od = ad;
    od[rank - 1] = n_out;
    QLinear q = qlinear_attrs(op, a, A, y, 1 << (rank - 1), std::size_t(n_out));
    const dt at = to_dnnl(tensors[A].dtype), yt = to_dnnl(tensors[y].dtype);
    memory::desc a_md = plain_desc(ad, at);
    Dims wdims = pad_rank(kn, rank);
    memory::desc user_w = plain_desc(bd, dt::s8);
    if (tb) user_w = user_w.permute_axes({1, 0});
    user_w = user_w.reshape(Dims(wdims));
    memory::desc y_md = plain_desc(od, yt);
    const bool bias = has_in(op, 2);
    memory::desc b_md = bias ? plain_desc(pad_rank({n_out}, rank), dt::f32) : memory::desc();
    dnnl::matmul::primitive_desc pd;
    try {
      pd = dnnl::matmul::primitive_desc(cpu_engine(), a_md, memory::desc(wdims, dt::s8, tag::any),
                                        b_md, y_md, q.attr);
    } catch (const dnnl::error& e) {
      throw Unsupported(cat("QMatMul ", op.name, ": no oneDNN int8 matmul: ", e.what()));
    }
    prefer_exact_int8(pd, cat("QMatMul ", op.name));
    const int as = view_slot(plain(A, op.name), a_md);
    auto it = g->constants.find(B);
    memory uw(user_w, cpu_engine(), const_cast<void*>(it->second.data));
    memory wm(pd.weights_desc(), cpu_engine());
    dnnl::reorder(uw, wm).execute(stream, uw, wm);
    stream.wait();
    slots.push_back(Slot{pd.weights_desc(), -1, wm});
    std::vector<std::pair<int, int>> args = {{DNNL_ARG_SRC, as},
                                             {DNNL_ARG_WEIGHTS, int(slots.size()) - 1}};
    if (bias) {
      const int bt = in(op, 2);
      if (!ts[bt].is_const || tensors[bt].dtype != DType::f32)
        throw Unsupported(cat("QMatMul ", op.name, ": bias must be a float32 constant"));
      slots.push_back(Slot{b_md, -1, const_memory(bt, b_md)});
      args.push_back({DNNL_ARG_BIAS, int(slots.size()) - 1});
    }
    args.insert(args.end(), q.args.begin(), q.args.end());
    const int ys = new_output(y, plain_desc(yd, yt));
    args.push_back({DNNL_ARG_DST, view_slot(ys, y_md)});
    push_prim(op, "matmul", dnnl::matmul(pd), pd, std::move(args));
    steps.back().info.detail += q.detail;
  }

  // Dense (unpadded, no inner blocks) strided layout of `md` for type `t`.
  static std::optional<memory::desc> strided_as(const memory::desc& md, dt t) {
    if (md.get_format_kind() != memory::format_kind::blocked || md.get_inner_nblks() != 0)
      return std::nullopt;
    memory::desc out(md.get_dims(), t, md.get_strides());
    std::int64_t n = 1;
    for (auto d : md.get_dims()) n *= d;
    if (out.get_size() != std::size_t(n) * memory::data_type_size(t)) return std::nullopt;
    return out;
  }

  // y = Q(clamp(DQ(a) + DQ(b), lo, hi)) element by element, exactly the
  // float arithmetic of the simulation (DQ, add, activation, QuantizeLinear).
  void qadd(const OpDecl& op, const Attrs& a) {
    const int x0 = in(op, 0), x1 = in(op, 1), y = out(op);
    const DType t0 = tensors[x0].dtype, t1 = tensors[x1].dtype, ty = tensors[y].dtype;
    for (DType t : {t0, t1, ty})
      if (t != DType::u8 && t != DType::s8)
        throw Unsupported(cat("QAdd ", op.name, ": operands must be uint8 or int8"));
    if (dims_of(x0) != dims_of(y) || dims_of(x1) != dims_of(y))
      throw ShapeError(cat("QAdd ", op.name, ": operands must have the output's shape"));
    // The first operand's layout when it is a dense strided one (e.g. nhwc
    // from an int8 convolution), else plain.
    int s0 = primary(x0);
    auto m0 = strided_as(slots[s0].md, to_dnnl(t0));
    if (!m0) {
      s0 = plain(x0, op.name);
      m0 = slots[s0].md;
    }
    const int s1 = slot_as(x1, *strided_as(*m0, to_dnnl(t1)), op.name);
    const memory::desc my = *strided_as(*m0, to_dnnl(ty));
    const int ys = new_output(y, my);
    const float sa = float(a.f("a_scale", 1.0)), sb = float(a.f("b_scale", 1.0));
    const float za = float(a.i("a_zp", 0)), zb = float(a.i("b_zp", 0));
    const float sy = float(a.f("dst_scale", 1.0)), zy = float(a.i("dst_zp", 0));
    const float lo = float(a.f("lo", -3.4e38)), hi = float(a.f("hi", 3.4e38));
    if (!(sa > 0.f && sb > 0.f && sy > 0.f))
      throw InvalidArgument(cat("QAdd ", op.name, ": scales must be > 0"));
    const float qlo = (ty == DType::u8 ? 0.f : -128.f) - zy;
    const float qhi = (ty == DType::u8 ? 255.f : 127.f) - zy;
    const std::int64_t n = numel(y);
    const QAddParams qp{sa, za, sb, zb, sy, zy, lo, hi, qlo, qhi};
    // table[(a byte) * 256 + (b byte)] = y byte
    auto table = std::make_shared<std::vector<std::uint8_t>>(65536);
    for (int i = 0; i < 256; ++i) {
      const int av = t0 == DType::s8 ? int(std::int8_t(std::uint8_t(i))) : i;
      for (int j = 0; j < 256; ++j) {
        const int bv = t1 == DType::s8 ? int(std::int8_t(std::uint8_t(j))) : j;
        (*table)[i * 256 + j] = qadd_scalar(av, bv, qp);
      }
    }
    push_kernel(op, "add_int8", {s0, s1, ys}, [=](const std::vector<void*>& p) {
      constexpr std::int64_t kChunk = 16384;
      const std::int64_t chunks = (n + kChunk - 1) / kChunk;
      const std::uint8_t* T = table->data();
      const auto* pa = static_cast<const std::uint8_t*>(p[0]);
      const auto* pb = static_cast<const std::uint8_t*>(p[1]);
      auto* py = static_cast<std::uint8_t*>(p[2]);
#pragma omp parallel for schedule(static) if (chunks > 1)
      for (std::int64_t c = 0; c < chunks; ++c) {
        const std::int64_t i1 = std::min(n, (c + 1) * kChunk);
        for (std::int64_t i = c * kChunk; i < i1; ++i)
          py[i] = T[std::size_t(pa[i]) << 8 | pb[i]];
      }
    });
    steps.back().info.detail = cat("lpcv (int8 ", dt_name(t0), "+", dt_name(t1), "->",
                                   dt_name(ty), ")");
  }

  // ------------------------------------------------------------ finalize
  void compile(const GraphDecl& graph) {
    g = &graph;
    tensors = graph.tensors;
    inputs = graph.inputs;
    outputs = graph.outputs;
    const int n = int(tensors.size());
    ts.assign(n, TensorState{});
    auto check_id = [&](int t, const std::string& where) {
      if (t < -1 || t >= n) throw InvalidArgument(cat(where, ": tensor id ", t, " out of range"));
    };
    for (const auto& t : tensors) {
      if (std::int64_t(t.shape.size()) > kMaxRank)
        throw Unsupported(cat("tensor ", t.name, " has rank ", t.shape.size(), " > ", kMaxRank));
      for (auto d : t.shape)
        if (d < 0) throw ShapeError(cat("tensor ", t.name, " has a negative dimension"));
    }
    for (auto& [id, c] : graph.constants) {
      check_id(id, "constant");
      ts[id].is_const = true;
      std::int64_t cn = 1;
      for (auto d : c.shape) cn *= d;
      std::int64_t tn = 1;
      for (auto d : tensors[id].shape) tn *= d;
      if (cn != tn || !c.data)
        throw ShapeError(cat("constant ", tensors[id].name, " does not match its declared shape"));
    }
    for (const auto& op : graph.ops) {
      std::vector<int> seen;
      for (int t : op.inputs) {
        check_id(t, op.name);
        if (t >= 0 && std::find(seen.begin(), seen.end(), t) == seen.end()) {
          ts[t].uses_left++;
          seen.push_back(t);
        }
      }
      for (int t : op.outputs) check_id(t, op.name);
    }
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const int t = inputs[i];
      check_id(t, "input");
      if (t < 0) throw InvalidArgument("graph input id -1");
      const memory::desc imd = plain_desc(dims_of(t), to_dnnl(tensors[t].dtype));
      ts[t].is_input = true;
      buffers.push_back(Buffer{imd.get_size(), 1, int(i), -1});
      new_slot(imd, int(buffers.size()) - 1);
      ts[t].slots.push_back(int(slots.size()) - 1);
    }
    for (int t : outputs) {
      check_id(t, "output");
      if (t < 0) throw InvalidArgument("graph output id -1");
      ts[t].is_output = true;
    }
    for (const auto& op : graph.ops) {
      const bool int_out = op.op == "Quantize" || op.op == "QConv" || op.op == "QMatMul" ||
                           op.op == "QAdd" || op.op == "Pool" || op.op == "View" ||
                           op.op == "Copy";
      for (int t : op.outputs)
        if (t >= 0 && tensors[t].dtype != DType::f32 && !int_out)
          throw Unsupported(cat("op ", op.name, " (", op.op, "): output ", tensors[t].name,
                                " is not float32; the runtime computes in float32"));
      try {
        compile_op(op);
      } catch (const dnnl::error& e) {
        throw BackendError(cat(op.op, " ", op.name, ": oneDNN: ", e.what()));
      }
      std::vector<int> seen;
      for (int t : op.inputs) {
        if (t < 0 || std::find(seen.begin(), seen.end(), t) != seen.end()) continue;
        seen.push_back(t);
        if (--ts[t].uses_left == 0 && !ts[t].is_output)
          for (int s : ts[t].slots) unref(slots[s].buffer);
      }
      // Outputs nobody reads die at once.
      for (int t : op.outputs)
        if (t >= 0 && ts[t].uses_left == 0 && !ts[t].is_output)
          for (int s : ts[t].slots) unref(slots[s].buffer);
    }
    // Edge reorders into the caller's output arrays.
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      const int t = outputs[i];
      const int src = primary(t);
      const memory::desc omd = plain_desc(dims_of(t), to_dnnl(tensors[t].dtype));
      buffers.push_back(Buffer{omd.get_size(), 1, -1, int(i)});
      const int dst = new_slot(omd, int(buffers.size()) - 1);
      add_reorder(src, dst, "");
    }
    finalize();
    g = nullptr;
  }

  void finalize() {
    for (auto& b : buffers) {
      if (b.external >= 0 || b.external_out >= 0) continue;
      const std::size_t bytes = std::max<std::size_t>(64, (b.bytes + 63) / 64 * 64);
      b.ptr = std::aligned_alloc(64, bytes);
      if (!b.ptr) throw BackendError(cat("out of memory allocating ", bytes, " bytes"));
      storage.push_back(b.ptr);
    }
    slot_mem.clear();
    slot_mem.reserve(slots.size());
    for (auto& s : slots) {
      if (s.buffer < 0) slot_mem.push_back(*s.constant);
      else slot_mem.emplace_back(s.md, cpu_engine(), buffers[s.buffer].ptr);
    }
    external_mems.assign(inputs.size(), {});
    external_out_mems.assign(outputs.size(), {});
    for (std::size_t i = 0; i < slots.size(); ++i) {
      const int b = slots[i].buffer;
      if (b < 0) continue;
      if (buffers[b].external >= 0) external_mems[buffers[b].external].push_back({int(i), &slot_mem[i]});
      if (buffers[b].external_out >= 0)
        external_out_mems[buffers[b].external_out].push_back({int(i), &slot_mem[i]});
    }
    for (auto& st : steps) {
      for (auto& [key, s] : st.args) st.bound.emplace(key, slot_mem[s]);
    }
  }

  void bind(const std::vector<const void*>& in_ptrs, const std::vector<void*>& out_ptrs) {
    if (in_ptrs.size() != inputs.size())
      throw InvalidArgument(cat("expected ", inputs.size(), " inputs, got ", in_ptrs.size()));
    if (out_ptrs.size() != outputs.size())
      throw InvalidArgument(cat("expected ", outputs.size(), " outputs, got ", out_ptrs.size()));
    for (std::size_t i = 0; i < inputs.size(); ++i)
      for (auto& [s, m] : external_mems[i]) m->set_data_handle(const_cast<void*>(in_ptrs[i]));
    for (std::size_t i = 0; i < outputs.size(); ++i)
      for (auto& [s, m] : external_out_mems[i]) m->set_data_handle(out_ptrs[i]);
  }

  void run_step(Step& st) {
    if (st.prim) {
      st.prim->execute(stream, st.bound);
    } else {
      std::vector<void*> ptrs;
      ptrs.reserve(st.kernel_slots.size());
      for (int s : st.kernel_slots) ptrs.push_back(slot_mem[s].get_data_handle());
      st.kernel(ptrs);
    }
  }
};

Plan::Plan(const GraphDecl& graph, int threads) : impl_(std::make_unique<Impl>()) {
  if (threads < 0) throw InvalidArgument(cat("threads must be >= 0, got ", threads));
  impl_->threads = threads;
  // oneDNN fixes a primitive's thread count when it is created, so the
  // plan is compiled under the same limit it runs with.
  ThreadLimit scope(threads);
  try {
    impl_->compile(graph);
  } catch (const dnnl::error& e) {
    throw BackendError(cat("oneDNN: ", e.what()));
  }
}
Plan::~Plan() = default;
Plan::Plan(Plan&&) noexcept = default;
Plan& Plan::operator=(Plan&&) noexcept = default;

void Plan::run(const std::vector<const void*>& inputs, const std::vector<void*>& outputs) {
  ThreadLimit scope(impl_->threads);
  impl_->bind(inputs, outputs);
  try {
    for (auto& st : impl_->steps) impl_->run_step(st);
    impl_->stream.wait();
  } catch (const dnnl::error& e) {
    throw BackendError(cat("oneDNN: ", e.what()));
  }
}

std::vector<Plan::StepTiming> Plan::profile(const std::vector<const void*>& inputs,
                                  const std::vector<void*>& outputs, int repeats) {
  if (repeats < 1) throw InvalidArgument(cat("repeats must be >= 1, got ", repeats));
  ThreadLimit scope(impl_->threads);
  impl_->bind(inputs, outputs);
  std::vector<std::vector<double>> samples(impl_->steps.size());
  using clock = std::chrono::steady_clock;
  try {
    for (int r = 0; r < repeats; ++r) {
      for (std::size_t i = 0; i < impl_->steps.size(); ++i) {
        const auto t0 = clock::now();
        impl_->run_step(impl_->steps[i]);
        impl_->stream.wait();
        samples[i].push_back(std::chrono::duration<double>(clock::now() - t0).count());
      }
    }
  } catch (const dnnl::error& e) {
    throw BackendError(cat("oneDNN: ", e.what()));
  }
  // The median resists the occasional descheduled thread better than the
  // mean; the minimum is the time without contention from other tenants.
  std::vector<StepTiming> out(samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i) {
    auto& v = samples[i];
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    out[i].median = v[v.size() / 2];
    out[i].min = *std::min_element(v.begin(), v.end());
  }
  return out;
}

std::vector<StepInfo> Plan::steps() const {
  std::vector<StepInfo> out;
  for (const auto& st : impl_->steps) out.push_back(st.info);
  return out;
}

std::int64_t Plan::activation_bytes() const {
  std::int64_t n = 0;
  for (const auto& b : impl_->buffers)
    if (b.external < 0 && b.external_out < 0) n += std::int64_t(b.bytes);
  return n;
}

}  // namespace lpcv::runtime
