// CPU training kernels for paddle_electra (fp32, dygraph): erf-GELU, LayerNorm, dropout and attention's
// masked softmax, forward and backward, as Paddle custom operators. Built and loaded by
// paddle_electra/cpu_kernels.py, which also says why they exist (Paddle 3.3's own CPU kernels for these
// are 10-30x slower than they need to be) and how each op is called.
//
// Compiled with -O3 -mavx2 -mfma -ffast-math -fno-finite-math-only, for this file only: fast-math
// lets GCC vectorize the loops below, reductions included (8 partial sums per AVX2 register instead
// of one running sum), and call glibc's vector math library (libmvec: _ZGVdN8v_erff /
// _ZGVdN8v_expf, 8 floats per call) for erff and expf; libmvec documents a maximum error of 4 ulp
// for these. -fno-finite-math-only keeps infinities and NaNs meaning what they mean.
//
// Threads: every op takes `threads` (the process's math-library threads, passed from Python) and
// splits its rows or elements statically, so a result does not depend on scheduling: the same
// inputs and thread count give the same bits. Small tensors run on the calling thread.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "paddle/extension.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

constexpr int64_t kMinParallel = 1 << 15;  // elements below which one thread is faster

inline int ThreadsFor(int64_t work, int64_t threads) {
  return (work >= kMinParallel && threads > 1) ? static_cast<int>(threads) : 1;
}

void CheckFloatCpu(const paddle::Tensor& t, const char* name) {
  PD_CHECK(t.is_cpu(), name, " must be a CPU tensor");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, name, " must be float32");
}

// ---- GELU, the erf form: y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) ----------------------------
constexpr float kSqrtHalf = 0.70710678118654752440f;   // 1 / sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;  // 1 / sqrt(2 pi)

std::vector<paddle::Tensor> GeluForward(const paddle::Tensor& x, int64_t threads) {
  CheckFloatCpu(x, "x");
  auto out = paddle::empty(x.shape(), x.dtype(), x.place());
  const float* px = x.data<float>();
  float* py = out.data<float>();
  const int64_t n = x.numel();
#pragma omp parallel for simd num_threads(ThreadsFor(n, threads)) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float v = px[i];
    py[i] = 0.5f * v * (1.0f + erff(v * kSqrtHalf));
  }
  return {out};
}

// dy * d/dx [x Phi(x)] = dy * (Phi(x) + x phi(x)), phi the standard normal density
std::vector<paddle::Tensor> GeluBackward(const paddle::Tensor& x, const paddle::Tensor& dy,
                                         int64_t threads) {
  CheckFloatCpu(x, "x");
  CheckFloatCpu(dy, "grad of out");
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  const float* px = x.data<float>();
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  const int64_t n = x.numel();
#pragma omp parallel for simd num_threads(ThreadsFor(n, threads)) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float v = px[i];
    const float cdf = 0.5f * (1.0f + erff(v * kSqrtHalf));
    const float pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
    pdx[i] = pdy[i] * (cdf + v * pdf);
  }
  return {dx};
}

// ---- LayerNorm over the last axis, with gamma and beta ---------------------------------------------
// Saves mean and rstd = 1 / sqrt(var + eps) per row (biased variance, as Paddle and the original).
std::vector<paddle::Tensor> LayerNormForward(const paddle::Tensor& x, const paddle::Tensor& gamma,
                                             const paddle::Tensor& beta, float epsilon,
                                             int64_t threads) {
  CheckFloatCpu(x, "x");
  CheckFloatCpu(gamma, "weight");
  CheckFloatCpu(beta, "bias");
  const auto shape = x.shape();
  PD_CHECK(!shape.empty(), "x must have at least one axis");
  const int64_t width = shape.back();
  PD_CHECK(gamma.numel() == width && beta.numel() == width, "weight and bias must have ", width,
           " elements (the last axis of x)");
  const int64_t rows = width ? x.numel() / width : 0;
  auto out = paddle::empty(shape, x.dtype(), x.place());
  auto mean = paddle::empty({rows}, x.dtype(), x.place());
  auto rstd = paddle::empty({rows}, x.dtype(), x.place());
  const float* px = x.data<float>();
  const float* pg = gamma.data<float>();
  const float* pb = beta.data<float>();
  float* py = out.data<float>();
  float* pm = mean.data<float>();
  float* pr = rstd.data<float>();
  const float inv_width = width ? 1.0f / static_cast<float>(width) : 0.0f;
#pragma omp parallel for num_threads(ThreadsFor(x.numel(), threads)) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = px + r * width;
    float* yr = py + r * width;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < width; ++j) sum += xr[j];
    const float mu = sum * inv_width;
    float sq = 0.0f;  // two passes: the variance of the centred values, no cancellation
#pragma omp simd reduction(+ : sq)
    for (int64_t j = 0; j < width; ++j) {
      const float d = xr[j] - mu;
      sq += d * d;
    }
    const float rs = 1.0f / std::sqrt(sq * inv_width + epsilon);
    pm[r] = mu;
    pr[r] = rs;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) yr[j] = (xr[j] - mu) * rs * pg[j] + pb[j];
  }
  return {out, mean, rstd};
}

// xhat = (x - mean) rstd, g = dy gamma:
//   dx = rstd (g - mean_j(g) - xhat mean_j(g xhat)),  dgamma = sum_rows dy xhat,  dbeta = sum_rows dy.
// The column sums are accumulated per thread over its block of rows, then added in thread order.
std::vector<paddle::Tensor> LayerNormBackward(const paddle::Tensor& x, const paddle::Tensor& gamma,
                                              const paddle::Tensor& mean, const paddle::Tensor& rstd,
                                              const paddle::Tensor& dy, int64_t threads) {
  CheckFloatCpu(x, "x");
  CheckFloatCpu(dy, "grad of out");
  const int64_t width = x.shape().back();
  const int64_t rows = width ? x.numel() / width : 0;
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  auto dgamma = paddle::empty(gamma.shape(), x.dtype(), x.place());
  auto dbeta = paddle::empty(gamma.shape(), x.dtype(), x.place());
  const float* px = x.data<float>();
  const float* pg = gamma.data<float>();
  const float* pm = mean.data<float>();
  const float* pr = rstd.data<float>();
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  const int nt = ThreadsFor(x.numel(), threads);
  std::vector<float> partial(static_cast<size_t>(nt) * 2 * width, 0.0f);  // [thread][dgamma | dbeta]
  const float inv_width = width ? 1.0f / static_cast<float>(width) : 0.0f;
#pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num();
#else
    const int t = 0;
#endif
    float* dg = partial.data() + static_cast<size_t>(t) * 2 * width;
    float* db = dg + width;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = px + r * width;
      const float* dyr = pdy + r * width;
      float* dxr = pdx + r * width;
      const float mu = pm[r], rs = pr[r];
      float sum_g = 0.0f, sum_gx = 0.0f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
      for (int64_t j = 0; j < width; ++j) {
        const float xhat = (xr[j] - mu) * rs;
        const float g = dyr[j] * pg[j];
        sum_g += g;
        sum_gx += g * xhat;
        dg[j] += dyr[j] * xhat;
        db[j] += dyr[j];
      }
      const float mg = sum_g * inv_width, mgx = sum_gx * inv_width;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) {
        const float xhat = (xr[j] - mu) * rs;
        dxr[j] = rs * (dyr[j] * pg[j] - mg - xhat * mgx);
      }
    }
  }
  float* pdg = dgamma.data<float>();
  float* pdb = dbeta.data<float>();
  for (int64_t j = 0; j < width; ++j) {
    float a = 0.0f, b = 0.0f;
    for (int t = 0; t < nt; ++t) {
      a += partial[static_cast<size_t>(t) * 2 * width + j];
      b += partial[static_cast<size_t>(t) * 2 * width + width + j];
    }
    pdg[j] = a;
    pdb[j] = b;
  }
  return {dx, dgamma, dbeta};
}

// ---- dropout, upscale_in_train: out = x / (1 - p) where kept, 0 elsewhere --------------------------
// A counter-based generator: element i is kept when the top 24 bits of H(H(i + k1) ^ k2) fall below
// (1 - p) 2^24, H being Wellons' "lowbias32" integer hash (a bijection of 32-bit words) and (k1, k2)
// the 64-bit `seed` that Python draws from Paddle's generator for each call. So a mask depends on the
// seed and the element's index only (not on threads or vector width), and paddle.seed(n) repeats it.
// Not a cryptographic generator; its keep rate and independence are what dropout needs (tested).
// The mask is saved as bits, 8 elements per byte (element i: bit i % 8 of byte i / 8).
inline __m256i Lowbias32(__m256i x) {
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(0x846ca68bu)));
  return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}

// the keep bits of elements 8 b ... 8 b + 7
inline int KeepBits(int64_t b, __m256i k1, __m256i k2, __m256i threshold) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i i = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(8 * b))), lanes);
  const __m256i h = Lowbias32(_mm256_xor_si256(Lowbias32(_mm256_add_epi32(i, k1)), k2));
  const __m256i keep = _mm256_cmpgt_epi32(threshold, _mm256_srli_epi32(h, 8));  // both < 2^24: signed is fine
  return _mm256_movemask_ps(_mm256_castsi256_ps(keep));
}

// 8 floats where the bits of `byte` are set, zero elsewhere
inline __m256 BitsToMask(int byte) {
  const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i set = _mm256_and_si256(_mm256_set1_epi32(byte), bits);
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(set, bits));
}

inline float DropoutScale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

std::vector<paddle::Tensor> DropoutForward(const paddle::Tensor& x, float p, int64_t seed, int64_t threads) {
  CheckFloatCpu(x, "x");
  PD_CHECK(p >= 0.0f && p <= 1.0f, "dropout probability must be in [0, 1], got ", p);
  const int64_t n = x.numel();
  const int64_t blocks = (n + 7) / 8;
  auto out = paddle::empty(x.shape(), x.dtype(), x.place());
  auto mask = paddle::empty({blocks}, paddle::DataType::UINT8, x.place());
  const float* px = x.data<float>();
  float* py = out.data<float>();
  uint8_t* pm = mask.data<uint8_t>();
  const uint64_t key = static_cast<uint64_t>(seed);
  const __m256i k1 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(key)));
  const __m256i k2 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(key >> 32)));
  const __m256i threshold = _mm256_set1_epi32(static_cast<int>(std::lround((1.0 - p) * (1 << 24))));
  const __m256 scale = _mm256_set1_ps(DropoutScale(p));
  const int64_t full = n / 8;
#pragma omp parallel for num_threads(ThreadsFor(n, threads)) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int bits = KeepBits(b, k1, k2, threshold);
    pm[b] = static_cast<uint8_t>(bits);
    if (b < full) {
      const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(px + 8 * b), scale);
      _mm256_storeu_ps(py + 8 * b, _mm256_and_ps(v, BitsToMask(bits)));
    } else {  // the last, partial block
      for (int64_t i = 8 * b; i < n; ++i) py[i] = (bits >> (i - 8 * b)) & 1 ? px[i] * DropoutScale(p) : 0.0f;
    }
  }
  return {out, mask};
}

std::vector<paddle::Tensor> DropoutBackward(const paddle::Tensor& mask, const paddle::Tensor& dy, float p,
                                            int64_t threads) {
  CheckFloatCpu(dy, "grad of out");
  const int64_t n = dy.numel();
  const int64_t blocks = (n + 7) / 8;
  PD_CHECK(mask.numel() == blocks, "dropout mask has ", mask.numel(), " bytes for ", n, " elements");
  auto dx = paddle::empty(dy.shape(), dy.dtype(), dy.place());
  const uint8_t* pm = mask.data<uint8_t>();
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  const __m256 scale = _mm256_set1_ps(DropoutScale(p));
  const int64_t full = n / 8;
#pragma omp parallel for num_threads(ThreadsFor(n, threads)) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int bits = pm[b];
    if (b < full) {
      const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(pdy + 8 * b), scale);
      _mm256_storeu_ps(pdx + 8 * b, _mm256_and_ps(v, BitsToMask(bits)));
    } else {
      for (int64_t i = 8 * b; i < n; ++i) pdx[i] = (bits >> (i - 8 * b)) & 1 ? pdy[i] * DropoutScale(p) : 0.0f;
    }
  }
  return {dx};
}

// ---- attention probabilities: softmax(x * scale + mask) over the last axis -------------------------
// x [..., R, C] (batch matrices of R rows), mask [batch, C] added to every row of its matrix (the
// additive attention mask, which has no gradient). Saves the probabilities for the backward:
// dx = scale * p * (dp - sum(dp * p)) per row.
std::vector<paddle::Tensor> MaskedSoftmaxForward(const paddle::Tensor& x, const paddle::Tensor& mask, float scale,
                                                 int64_t threads) {
  CheckFloatCpu(x, "scores");
  CheckFloatCpu(mask, "mask");
  const auto shape = x.shape();
  PD_CHECK(shape.size() >= 2, "scores must have at least two axes");
  const int64_t C = shape.back(), R = shape[shape.size() - 2];
  const int64_t rows = C ? x.numel() / C : 0, batch = R ? rows / R : 0;
  PD_CHECK(mask.numel() == batch * C, "mask must have ", batch * C, " elements ([batch, ", C, "]), not ",
           mask.numel());
  auto out = paddle::empty(shape, x.dtype(), x.place());
  const float* px = x.data<float>();
  const float* pmask = mask.data<float>();
  float* py = out.data<float>();
#pragma omp parallel for num_threads(ThreadsFor(x.numel(), threads)) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = px + r * C;
    const float* mr = pmask + (r / R) * C;
    float* yr = py + r * C;
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < C; ++j) {
      const float v = xr[j] * scale + mr[j];
      yr[j] = v;
      mx = v > mx ? v : mx;
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < C; ++j) {
      const float e = expf(yr[j] - mx);
      yr[j] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) yr[j] *= inv;
  }
  return {out};
}

std::vector<paddle::Tensor> MaskedSoftmaxBackward(const paddle::Tensor& p, const paddle::Tensor& dp, float scale,
                                                  int64_t threads) {
  CheckFloatCpu(dp, "grad of out");
  const int64_t C = p.shape().back();
  const int64_t rows = C ? p.numel() / C : 0;
  auto dx = paddle::empty(p.shape(), p.dtype(), p.place());
  const float* pp = p.data<float>();
  const float* pdp = dp.data<float>();
  float* pdx = dx.data<float>();
#pragma omp parallel for num_threads(ThreadsFor(p.numel(), threads)) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* prow = pp + r * C;
    const float* grow = pdp + r * C;
    float* drow = pdx + r * C;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < C; ++j) dot += prow[j] * grow[j];
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) drow[j] = scale * prow[j] * (grow[j] - dot);
  }
  return {dx};
}

std::vector<std::vector<int64_t>> MaskedSoftmaxShapes(const std::vector<int64_t>& x, const std::vector<int64_t>&) {
  return {x};
}
std::vector<paddle::DataType> MaskedSoftmaxDtypes(const paddle::DataType& x, const paddle::DataType&) { return {x}; }

std::vector<std::vector<int64_t>> DropoutShapes(const std::vector<int64_t>& x) {
  int64_t n = 1;
  for (auto d : x) n *= d;
  return {x, {(n + 7) / 8}};
}
std::vector<paddle::DataType> DropoutDtypes(const paddle::DataType& x) { return {x, paddle::DataType::UINT8}; }

std::vector<std::vector<int64_t>> SameShape(const std::vector<int64_t>& x) { return {x}; }
std::vector<paddle::DataType> SameDtype(const paddle::DataType& x) { return {x}; }

std::vector<std::vector<int64_t>> LayerNormShapes(const std::vector<int64_t>& x, const std::vector<int64_t>&,
                                                  const std::vector<int64_t>&) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < x.size(); ++i) rows *= x[i];
  return {x, {rows}, {rows}};
}
std::vector<paddle::DataType> LayerNormDtypes(const paddle::DataType& x, const paddle::DataType&,
                                              const paddle::DataType&) {
  return {x, x, x};
}

}  // namespace

PD_BUILD_OP(electra_gelu)
    .Inputs({"X"})
    .Outputs({"Out"})
    .Attrs({"threads: int64_t"})
    .SetKernelFn(PD_KERNEL(GeluForward))
    .SetInferShapeFn(PD_INFER_SHAPE(SameShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(SameDtype));

PD_BUILD_GRAD_OP(electra_gelu)
    .Inputs({"X", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .Attrs({"threads: int64_t"})
    .SetKernelFn(PD_KERNEL(GeluBackward));

PD_BUILD_OP(electra_layer_norm)
    .Inputs({"X", "Gamma", "Beta"})
    .Outputs({"Out", "Mean", "Rstd"})
    .Attrs({"epsilon: float", "threads: int64_t"})
    .SetKernelFn(PD_KERNEL(LayerNormForward))
    .SetInferShapeFn(PD_INFER_SHAPE(LayerNormShapes))
    .SetInferDtypeFn(PD_INFER_DTYPE(LayerNormDtypes));

PD_BUILD_GRAD_OP(electra_layer_norm)
    .Inputs({"X", "Gamma", "Mean", "Rstd", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Gamma"), paddle::Grad("Beta")})
    .Attrs({"threads: int64_t"})
    .SetKernelFn(PD_KERNEL(LayerNormBackward));

PD_BUILD_OP(electra_dropout)
    .Inputs({"X"})
    .Outputs({"Out", "Mask"})
    .Attrs({"p: float", "seed: int64_t", "threads: int64_t"})
    .SetKernelFn(PD_KERNEL(DropoutForward))
    .SetInferShapeFn(PD_INFER_SHAPE(DropoutShapes))
    .SetInferDtypeFn(PD_INFER_DTYPE(DropoutDtypes));

PD_BUILD_GRAD_OP(electra_dropout)
    .Inputs({"Mask", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .Attrs({"p: float", "threads: int64_t"})
    .SetKernelFn(PD_KERNEL(DropoutBackward));

PD_BUILD_OP(electra_masked_softmax)
    .Inputs({"X", "Mask"})
    .Outputs({"Out"})
    .Attrs({"scale: float", "threads: int64_t"})
    .SetKernelFn(PD_KERNEL(MaskedSoftmaxForward))
    .SetInferShapeFn(PD_INFER_SHAPE(MaskedSoftmaxShapes))
    .SetInferDtypeFn(PD_INFER_DTYPE(MaskedSoftmaxDtypes));

PD_BUILD_GRAD_OP(electra_masked_softmax)
    .Inputs({"Out", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .Attrs({"scale: float", "threads: int64_t"})
    .SetKernelFn(PD_KERNEL(MaskedSoftmaxBackward));
