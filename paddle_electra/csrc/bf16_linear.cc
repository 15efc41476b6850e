// bf16 GEMMs for dygraph training on CPUs with native bf16 (avx512_bf16, AMX-bf16), two Paddle custom
// operators:
// - `electra_bf16_linear`: y = x W + b with x and W rounded to bf16, products accumulated in fp32, fp32
//   output; its gradient dX = dY W^T and dW = X^T dY the same way (dY rounded to bf16), and db = sum of
//   dY over rows in fp32;
// - `electra_bf16_matmul`: z = x y (or x y^T), batched over the leading axes (or y 2-D, shared by every
//   row of x), the same rounding, with its gradients: the attention products and the tied LM head.
// Built and loaded by paddle_electra/bf16_linear.py, which says why and when they run.
//
// The GEMMs are oneDNN's matmul primitive from the libdnnl.so.3 that ships in the Paddle wheel (v3.x,
// OpenMP runtime). The wheel ships oneDNN's wrapper headers without the oneapi/dnnl/ ones they
// include, so the few C API calls used here are declared below, as oneDNN 3.x's dnnl.h declares them
// (the C API and these enum values are stable across 3.x; bf16_linear.py checks the library's major
// version before building). Transposes are strides of the memory descriptors, never copies.
// Primitives are created once per (shape, strides) and kept, per thread, up to kMaxCached of them (then
// the cache starts again: sequence lengths that vary from batch to batch cannot grow it without bound).
//
// Threads: one OpenMP pool for everything. libdnnl.so.3 names libgomp, but in a Paddle process its
// GOMP_* calls bind to Paddle's libiomp5 (loaded first, by libpaddle), the pool of MKL's GEMMs; this
// library links libiomp5 too (bf16_linear.py), so its conversions run on that pool, never on a second
// one whose spinning threads would take the cores from the first. Every call sets the pool's thread
// count to `threads` (the process's math-library threads, passed from Python) for the calling thread.
#ifdef _OPENMP
#include <omp.h>
#endif

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>

#include "paddle/extension.h"

extern "C" {
typedef int dnnl_status_t;  // dnnl_success = 0
typedef struct dnnl_engine* dnnl_engine_t;
typedef struct dnnl_stream* dnnl_stream_t;
typedef struct dnnl_memory_desc* dnnl_memory_desc_t;
typedef const struct dnnl_memory_desc* const_dnnl_memory_desc_t;
typedef struct dnnl_memory* dnnl_memory_t;
typedef struct dnnl_primitive_desc* dnnl_primitive_desc_t;
typedef const struct dnnl_primitive_desc* const_dnnl_primitive_desc_t;
typedef struct dnnl_primitive* dnnl_primitive_t;
typedef const struct dnnl_primitive* const_dnnl_primitive_t;
typedef struct dnnl_primitive_attr* dnnl_primitive_attr_t;
typedef const struct dnnl_primitive_attr* const_dnnl_primitive_attr_t;
typedef int64_t dnnl_dims_t[12];  // DNNL_MAX_NDIMS
typedef struct {
  int arg;
  dnnl_memory_t memory;
} dnnl_exec_arg_t;

dnnl_status_t dnnl_engine_create(dnnl_engine_t* engine, int kind, size_t index);
dnnl_status_t dnnl_stream_create(dnnl_stream_t* stream, dnnl_engine_t engine, unsigned flags);
dnnl_status_t dnnl_memory_desc_create_with_strides(dnnl_memory_desc_t* md, int ndims, const dnnl_dims_t dims,
                                                   int data_type, const dnnl_dims_t strides);
dnnl_status_t dnnl_memory_desc_destroy(dnnl_memory_desc_t md);
dnnl_status_t dnnl_memory_create(dnnl_memory_t* memory, const_dnnl_memory_desc_t md, dnnl_engine_t engine,
                                 void* handle);
dnnl_status_t dnnl_memory_set_data_handle(dnnl_memory_t memory, void* handle);
dnnl_status_t dnnl_matmul_primitive_desc_create(dnnl_primitive_desc_t* pd, dnnl_engine_t engine,
                                                const_dnnl_memory_desc_t src, const_dnnl_memory_desc_t weights,
                                                const_dnnl_memory_desc_t bias, const_dnnl_memory_desc_t dst,
                                                const_dnnl_primitive_attr_t attr);
dnnl_status_t dnnl_primitive_desc_destroy(dnnl_primitive_desc_t pd);
dnnl_status_t dnnl_primitive_create(dnnl_primitive_t* primitive, const_dnnl_primitive_desc_t pd);
dnnl_status_t dnnl_primitive_execute(const_dnnl_primitive_t primitive, dnnl_stream_t stream, int nargs,
                                     const dnnl_exec_arg_t* args);
dnnl_status_t dnnl_stream_wait(dnnl_stream_t stream);
dnnl_status_t dnnl_primitive_destroy(dnnl_primitive_t primitive);
dnnl_status_t dnnl_memory_destroy(dnnl_memory_t memory);
}

namespace {

constexpr int kCpu = 1;              // dnnl_cpu
constexpr int kBf16 = 2;             // dnnl_bf16
constexpr int kF32 = 3;              // dnnl_f32
constexpr unsigned kInOrder = 0x1U;  // dnnl_stream_in_order
constexpr int kArgSrc = 1, kArgDst = 17, kArgWeights = 33, kArgBias = 41;
constexpr int64_t kMinParallel = 1 << 15;
constexpr size_t kMaxCached = 256;

#define DNNL_CHECK(call)                                                                   \
  do {                                                                                     \
    dnnl_status_t s_ = (call);                                                             \
    PD_CHECK(s_ == 0, "oneDNN call failed (status ", s_, "): ", #call);                    \
  } while (0)

void SetThreads(int64_t threads) {
#ifdef _OPENMP
  omp_set_num_threads(static_cast<int>(threads));  // for this (the calling) thread's parallel regions
#endif
}

struct Runtime {
  dnnl_engine_t engine = nullptr;
  dnnl_stream_t stream = nullptr;
  Runtime() {
    DNNL_CHECK(dnnl_engine_create(&engine, kCpu, 0));
    DNNL_CHECK(dnnl_stream_create(&stream, engine, kInOrder));
  }
};

Runtime& Rt() {
  static Runtime rt;
  return rt;
}

// A 3-D memory descriptor: dims {b, r, c}, strides {sb, sr, sc} (b = 1: one matrix)
dnnl_memory_desc_t Md(int64_t b, int64_t r, int64_t c, int64_t sb, int64_t sr, int64_t sc, int dt) {
  dnnl_dims_t dims = {b, r, c}, strides = {sb, sr, sc};
  dnnl_memory_desc_t md;
  DNNL_CHECK(dnnl_memory_desc_create_with_strides(&md, 3, dims, dt, strides));
  return md;
}

// A matrix operand of a GEMM: `batch` matrices, `rows` x `cols`, element (i, r, c) at i * sb + r * sr + c * sc
struct View {
  int64_t batch, rows, cols, sb, sr, sc;
};
View Dense(int64_t batch, int64_t rows, int64_t cols) { return {batch, rows, cols, rows * cols, cols, 1}; }
View Transposed(const View& v) { return {v.batch, v.cols, v.rows, v.sb, v.sc, v.sr}; }

// One matmul primitive: dst[i] (f32, dense) = src[i] (bf16) x wei[i] (bf16) (+ bias[1, N] f32) for each of
// src's batch matrices, with its memory objects whose data handles are set per call.
struct Gemm {
  dnnl_primitive_t prim = nullptr;
  dnnl_memory_t src = nullptr, wei = nullptr, bias = nullptr, dst = nullptr;
  void Destroy() {
    for (auto m : {src, wei, bias, dst})
      if (m) dnnl_memory_destroy(m);
    if (prim) dnnl_primitive_destroy(prim);
  }
};

using GemmKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, bool>;

struct GemmCache {
  std::map<GemmKey, Gemm> gemms;
  ~GemmCache() { Clear(); }
  void Clear() {
    for (auto& kv : gemms) kv.second.Destroy();
    gemms.clear();
  }
};

Gemm& GetGemm(const View& a, const View& b, bool with_bias) {
  PD_CHECK(a.cols == b.rows, "GEMM shapes do not chain");
  thread_local GemmCache cache;
  GemmKey key{a.batch, a.rows, a.cols, b.cols, a.sb, a.sr, a.sc, b.batch, b.sb, b.sr, b.sc, with_bias};
  auto it = cache.gemms.find(key);
  if (it != cache.gemms.end()) return it->second;
  if (cache.gemms.size() >= kMaxCached) cache.Clear();
  Runtime& rt = Rt();
  const int64_t M = a.rows, N = b.cols;
  dnnl_memory_desc_t s = Md(a.batch, M, a.cols, a.sb, a.sr, a.sc, kBf16),
                     w = Md(b.batch, b.rows, N, b.sb, b.sr, b.sc, kBf16),
                     d = Md(a.batch, M, N, M * N, N, 1, kF32),
                     bi = with_bias ? Md(1, 1, N, N, N, 1, kF32) : nullptr;
  dnnl_primitive_desc_t pd;
  DNNL_CHECK(dnnl_matmul_primitive_desc_create(&pd, rt.engine, s, w, bi, d, nullptr));
  Gemm g;
  DNNL_CHECK(dnnl_primitive_create(&g.prim, pd));
  DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
  DNNL_CHECK(dnnl_memory_create(&g.src, s, rt.engine, nullptr));
  DNNL_CHECK(dnnl_memory_create(&g.wei, w, rt.engine, nullptr));
  DNNL_CHECK(dnnl_memory_create(&g.dst, d, rt.engine, nullptr));
  if (with_bias) DNNL_CHECK(dnnl_memory_create(&g.bias, bi, rt.engine, nullptr));
  for (auto md : {s, w, d, bi})
    if (md) dnnl_memory_desc_destroy(md);
  return cache.gemms.emplace(key, g).first->second;
}

void RunGemm(Gemm& g, const void* src, const void* wei, const float* bias, float* dst) {
  Runtime& rt = Rt();
  DNNL_CHECK(dnnl_memory_set_data_handle(g.src, const_cast<void*>(src)));
  DNNL_CHECK(dnnl_memory_set_data_handle(g.wei, const_cast<void*>(wei)));
  DNNL_CHECK(dnnl_memory_set_data_handle(g.dst, dst));
  dnnl_exec_arg_t args[4] = {{kArgSrc, g.src}, {kArgWeights, g.wei}, {kArgDst, g.dst}, {kArgBias, g.bias}};
  if (g.bias) DNNL_CHECK(dnnl_memory_set_data_handle(g.bias, const_cast<float*>(bias)));
  DNNL_CHECK(dnnl_primitive_execute(g.prim, rt.stream, g.bias ? 4 : 3, args));
  DNNL_CHECK(dnnl_stream_wait(rt.stream));
}

// fp32 -> bf16, round to nearest even (NaN stays NaN)
inline uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffU) > 0x7f800000U) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffU + ((u >> 16) & 1U);
  return static_cast<uint16_t>(u >> 16);
}

paddle::Tensor Bf16Copy(const paddle::Tensor& x, int64_t threads) {
  auto out = paddle::empty(x.shape(), paddle::DataType::BFLOAT16, x.place());
  const float* px = x.data<float>();
  uint16_t* po = reinterpret_cast<uint16_t*>(out.data<paddle::bfloat16>());
  const int64_t n = x.numel();
#pragma omp parallel for simd num_threads((n >= kMinParallel && threads > 1) ? threads : 1) schedule(static)
  for (int64_t i = 0; i < n; ++i) po[i] = ToBf16(px[i]);
  return out;
}

void CheckFloatCpu(const paddle::Tensor& t, const char* name) {
  PD_CHECK(t.is_cpu(), name, " must be a CPU tensor");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, name, " must be float32");
}

// x [..., K], w [K, N], b [N] -> out [..., N] (f32), and the bf16 copies of x and w kept for the backward
std::vector<paddle::Tensor> Bf16LinearForward(const paddle::Tensor& x, const paddle::Tensor& w,
                                              const paddle::Tensor& b, int64_t threads) {
  CheckFloatCpu(x, "x");
  CheckFloatCpu(w, "weight");
  CheckFloatCpu(b, "bias");
  PD_CHECK(w.shape().size() == 2, "weight must be 2-D [in, out]");
  const int64_t K = w.shape()[0], N = w.shape()[1];
  PD_CHECK(!x.shape().empty() && x.shape().back() == K, "x's last axis must be the weight's first");
  PD_CHECK(b.numel() == N, "bias must have the weight's second axis");
  const int64_t M = x.numel() / K;
  SetThreads(threads);
  auto xb = Bf16Copy(x, threads);
  auto wb = Bf16Copy(w, threads);
  std::vector<int64_t> out_shape = x.shape();
  out_shape.back() = N;
  auto out = paddle::empty(out_shape, paddle::DataType::FLOAT32, x.place());
  if (M > 0) {
    Gemm& g = GetGemm(Dense(1, M, K), Dense(1, K, N), true);
    RunGemm(g, xb.data<paddle::bfloat16>(), wb.data<paddle::bfloat16>(), b.data<float>(), out.data<float>());
  }
  return {out, xb, wb};
}

std::vector<paddle::Tensor> Bf16LinearBackward(const paddle::Tensor& xb, const paddle::Tensor& wb,
                                               const paddle::Tensor& dy, int64_t threads) {
  CheckFloatCpu(dy, "grad of out");
  const int64_t K = wb.shape()[0], N = wb.shape()[1];
  const int64_t M = xb.numel() / K;
  SetThreads(threads);
  auto dyb = Bf16Copy(dy, threads);
  auto dx = paddle::empty(xb.shape(), paddle::DataType::FLOAT32, dy.place());
  auto dw = paddle::empty({K, N}, paddle::DataType::FLOAT32, dy.place());
  auto db = paddle::empty({N}, paddle::DataType::FLOAT32, dy.place());
  float* pdb = db.data<float>();
  if (M == 0) {
    std::memset(dw.data<float>(), 0, sizeof(float) * K * N);
    std::memset(pdb, 0, sizeof(float) * N);
    return {dx, dw, db};
  }
  // dX[M, K] = dY[M, N] x W^T[N, K]: W^T is W [K, N] read with strides {1, N}
  Gemm& gx = GetGemm(Dense(1, M, N), Transposed(Dense(1, K, N)), false);
  RunGemm(gx, dyb.data<paddle::bfloat16>(), wb.data<paddle::bfloat16>(), nullptr, dx.data<float>());
  // dW[K, N] = X^T[K, M] x dY[M, N]: X^T is X [M, K] read with strides {1, K}
  Gemm& gw = GetGemm(Transposed(Dense(1, M, K)), Dense(1, M, N), false);
  RunGemm(gw, xb.data<paddle::bfloat16>(), dyb.data<paddle::bfloat16>(), nullptr, dw.data<float>());
  // db = column sums of dY (fp32): each thread sums a band of columns over all rows, in row order
  const float* pdy = dy.data<float>();
  const int64_t nt = (M * N >= kMinParallel && threads > 1 && N >= 64) ? threads : 1;
#pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
#else
    const int64_t t = 0, T = 1;
#endif
    const int64_t c0 = N * t / T, c1 = N * (t + 1) / T;
    for (int64_t c = c0; c < c1; ++c) pdb[c] = 0.f;
    for (int64_t r = 0; r < M; ++r) {
      const float* row = pdy + r * N;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) pdb[c] += row[c];
    }
  }
  return {dx, dw, db};
}

std::vector<std::vector<int64_t>> Bf16LinearShapes(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                                   const std::vector<int64_t>&) {
  std::vector<int64_t> out = x;
  out.back() = w[1];
  return {out, x, w};
}
std::vector<paddle::DataType> Bf16LinearDtypes(const paddle::DataType& x, const paddle::DataType&,
                                               const paddle::DataType&) {
  return {x, paddle::DataType::BFLOAT16, paddle::DataType::BFLOAT16};
}

// The operands of z = x y (or x y^T) as GEMM views: x [..., M, K] -> batch matrices (all of x's rows as
// one matrix when y is 2-D), y [..., K, N] or [..., N, K] with transpose_y (batch axes equal to x's).
struct MatmulViews {
  View x, y;  // y as the K x N factor (a strided view when transposed)
  std::vector<int64_t> out_shape;
};

MatmulViews Views(const std::vector<int64_t>& xs, const std::vector<int64_t>& ys, bool transpose_y) {
  PD_CHECK(xs.size() >= 2 && ys.size() >= 2, "matmul needs x and y of at least 2 axes");
  const int64_t K = xs.back(), yr = ys[ys.size() - 2], yc = ys.back();
  const int64_t N = transpose_y ? yr : yc;
  PD_CHECK((transpose_y ? yc : yr) == K, "matmul: x's last axis must be y's contracted axis");
  MatmulViews v;
  if (ys.size() == 2) {
    int64_t rows = 1;
    for (size_t i = 0; i + 1 < xs.size(); ++i) rows *= xs[i];
    v.x = Dense(1, rows, K);  // every row of x against the one y
    v.y = transpose_y ? Transposed(Dense(1, N, K)) : Dense(1, K, N);
  } else {
    PD_CHECK(xs.size() == ys.size() && std::equal(xs.begin(), xs.end() - 2, ys.begin()),
             "matmul: x and y must have the same batch axes (or y 2-D)");
    int64_t batch = 1;
    for (size_t i = 0; i + 2 < xs.size(); ++i) batch *= xs[i];
    v.x = Dense(batch, xs[xs.size() - 2], K);
    v.y = transpose_y ? Transposed(Dense(batch, N, K)) : Dense(batch, K, N);
  }
  v.out_shape = xs;
  v.out_shape.back() = N;
  return v;
}

// x [..., M, K], y [..., K, N] (or [..., N, K] with transpose_y; or 2-D) -> out [..., M, N] (f32), and the
// bf16 copies of x and y kept for the backward
std::vector<paddle::Tensor> Bf16MatmulForward(const paddle::Tensor& x, const paddle::Tensor& y, bool transpose_y,
                                              int64_t threads) {
  CheckFloatCpu(x, "x");
  CheckFloatCpu(y, "y");
  const MatmulViews v = Views(x.shape(), y.shape(), transpose_y);
  SetThreads(threads);
  auto xb = Bf16Copy(x, threads);
  auto yb = Bf16Copy(y, threads);
  auto out = paddle::empty(v.out_shape, paddle::DataType::FLOAT32, x.place());
  if (out.numel() > 0 && v.x.cols > 0) {
    Gemm& g = GetGemm(v.x, v.y, false);
    RunGemm(g, xb.data<paddle::bfloat16>(), yb.data<paddle::bfloat16>(), nullptr, out.data<float>());
  } else if (out.numel() > 0) {
    std::memset(out.data<float>(), 0, sizeof(float) * out.numel());
  }
  return {out, xb, yb};
}

std::vector<paddle::Tensor> Bf16MatmulBackward(const paddle::Tensor& xb, const paddle::Tensor& yb,
                                               const paddle::Tensor& dz, bool transpose_y, int64_t threads) {
  CheckFloatCpu(dz, "grad of out");
  const MatmulViews v = Views(xb.shape(), yb.shape(), transpose_y);
  SetThreads(threads);
  auto dzb = Bf16Copy(dz, threads);
  auto dx = paddle::empty(xb.shape(), paddle::DataType::FLOAT32, dz.place());
  auto dy = paddle::empty(yb.shape(), paddle::DataType::FLOAT32, dz.place());
  if (dz.numel() == 0 || v.x.cols == 0) {
    std::memset(dx.data<float>(), 0, sizeof(float) * dx.numel());
    std::memset(dy.data<float>(), 0, sizeof(float) * dy.numel());
    return {dx, dy};
  }
  const View dzv = Dense(v.x.batch, v.x.rows, v.y.cols);  // [batch, M, N]
  // dX = dZ x Y^T (Y^T: the K x N view of y, transposed)
  Gemm& gx = GetGemm(dzv, Transposed(v.y), false);
  RunGemm(gx, dzb.data<paddle::bfloat16>(), yb.data<paddle::bfloat16>(), nullptr, dx.data<float>());
  // dY = X^T dZ ([K, N]) or, with transpose_y, dZ^T X ([N, K]), in y's own layout
  Gemm& gy = transpose_y ? GetGemm(Transposed(dzv), v.x, false) : GetGemm(Transposed(v.x), dzv, false);
  if (transpose_y)
    RunGemm(gy, dzb.data<paddle::bfloat16>(), xb.data<paddle::bfloat16>(), nullptr, dy.data<float>());
  else
    RunGemm(gy, xb.data<paddle::bfloat16>(), dzb.data<paddle::bfloat16>(), nullptr, dy.data<float>());
  return {dx, dy};
}

std::vector<std::vector<int64_t>> Bf16MatmulShapes(const std::vector<int64_t>& x, const std::vector<int64_t>& y,
                                                   bool transpose_y) {
  return {Views(x, y, transpose_y).out_shape, x, y};
}
std::vector<paddle::DataType> Bf16MatmulDtypes(const paddle::DataType& x, const paddle::DataType&) {
  return {x, paddle::DataType::BFLOAT16, paddle::DataType::BFLOAT16};
}

}  // namespace

PD_BUILD_OP(electra_bf16_matmul)
    .Inputs({"X", "Y"})
    .Outputs({"Out", "Xb", "Yb"})
    .Attrs({"transpose_y: bool", "threads: int64_t"})
    .SetKernelFn(PD_KERNEL(Bf16MatmulForward))
    .SetInferShapeFn(PD_INFER_SHAPE(Bf16MatmulShapes))
    .SetInferDtypeFn(PD_INFER_DTYPE(Bf16MatmulDtypes));

PD_BUILD_GRAD_OP(electra_bf16_matmul)
    .Inputs({"Xb", "Yb", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Y")})
    .Attrs({"transpose_y: bool", "threads: int64_t"})
    .SetKernelFn(PD_KERNEL(Bf16MatmulBackward));

PD_BUILD_OP(electra_bf16_linear)
    .Inputs({"X", "W", "B"})
    .Outputs({"Out", "Xb", "Wb"})
    .Attrs({"threads: int64_t"})
    .SetKernelFn(PD_KERNEL(Bf16LinearForward))
    .SetInferShapeFn(PD_INFER_SHAPE(Bf16LinearShapes))
    .SetInferDtypeFn(PD_INFER_DTYPE(Bf16LinearDtypes));

PD_BUILD_GRAD_OP(electra_bf16_linear)
    .Inputs({"Xb", "Wb", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("W"), paddle::Grad("B")})
    .Attrs({"threads: int64_t"})
    .SetKernelFn(PD_KERNEL(Bf16LinearBackward));
