// WaveResNet's conv branch, fused: RMSNorm -> causal dilated depthwise conv -> sine, forward and
// backward for training and prefill, and one decoding step. Loaded by psann_lm.conv_kernels.
// Layouts: x (rows = B*T, n) row-major; the filters wt (k, n), tap i of channel c at wt[i*n + c]
// with lag (k-1-i)*dil; mask (rows) float or null; doc (rows) int64 or null. Only x and the rows'
// inverse rms are kept between forward and backward.
#include "sine_math.h"
namespace {

// rinv[r] = 1/sqrt(mean(x[r]^2) + eps)
template <class T>
void row_rinv(const T* x, float eps, float* rinv, int64_t rows, int64_t n, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    float ss = 0.0f;
#pragma omp simd reduction(+:ss)
    for (int64_t j = 0; j < n; ++j) ss += load(xr[j]) * load(xr[j]);
    rinv[r] = 1.0f / std::sqrt(ss / float(n) + eps);
  }
}

// Row r's source row for the tap at `lag`, or -1 before the sequence or in an earlier document.
inline int64_t tap_src(int64_t r, int64_t t, int64_t lag, const int64_t* doc) {
  if (lag > t) return -1;
  return doc && doc[r - lag] != doc[r] ? -1 : r - lag;
}
inline float row_scale(const float* rinv, const float* mask, int64_t s) {
  return mask ? rinv[s] * mask[s] : rinv[s];
}

// y = gain * sum_i w_i * x[src_i] * rinv[src_i] * mask[src_i]: one row of the conv of the norm.
template <class T>
inline void conv_row(const T* x, const float* rinv, const float* gain, const float* wt,
                     const float* mask, const int64_t* doc, int64_t r, int64_t t, int64_t n,
                     int64_t k, int64_t dil, float* y) {
  std::fill(y, y + n, 0.0f);
  for (int64_t i = 0; i < k; ++i) {
    const int64_t s = tap_src(r, t, (k - 1 - i) * dil, doc);
    if (s < 0) continue;
    const float c = row_scale(rinv, mask, s);
    const T* xs = x + s * n; const float* wi = wt + i * n;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] += wi[j] * (c * load(xs[j]));
  }
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] *= gain[j];
}

// out = sine(conv(norm(x))), row by row: the sine's fast path on the row, the exact path redoes
// the elements out of its range.
template <class T, int M>
void forward(const T* x, const float* rinv, const float* gain, const float* wt, const float* A,
             const float* f, const float* d, const float* mask, const int64_t* doc, T* out,
             int64_t rows, int64_t len, int64_t n, int64_t k, int64_t dil, int nt) {
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> y(n);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      conv_row(x, rinv, gain, wt, mask, doc, r, r % len, n, k, dil, y.data());
      T* o = out + r * n;
      uint32_t top = 0;
#pragma omp simd reduction(max:top)
      for (int64_t j = 0; j < n; ++j) {
        float t = f[j] * y[j], sign;
        top = std::max(top, abs_bits(t));
        float red = reduce_pi(t, sign);
        o[j] = store<T>(sine_at<M>(y[j], A[j], d[j], red, sign));
      }
      for (int64_t j = 0; top >= kFastLimitBits && j < n; ++j) {
        float sign;
        if (fast_arg(f[j] * y[j])) continue;
        float red = reduce_exact(f[j], y[j], sign);
        o[j] = store<T>(sine_at<M>(y[j], A[j], d[j], red, sign));
      }
    }
  }
}

// The sine's backward on one recomputed row y: dy, and the row's terms of the A, f, d sums.
template <class T, int M>
inline void sine_grad_row(const T* gr, const float* y, const float* A, const float* f,
                          const float* d, float* dy, float* pA, float* pf, float* pd, int64_t n) {
  uint32_t top = 0;
#pragma omp simd reduction(max:top)
  for (int64_t j = 0; j < n; ++j) top = std::max(top, abs_bits(f[j] * y[j]));
  const bool mixed = top >= kFastLimitBits;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    float v = y[j], sign;
    if (mixed) v = fast_arg(f[j] * v) ? v : 0.0f;   // out of range: 0 terms here, redone below
    float red = reduce_pi(f[j] * v, sign);
    dy[j] = grad_at<M>(v, load(gr[j]), A[j], f[j], d[j], red, sign, pA[j], pf[j], pd[j]);
  }
  for (int64_t j = 0; mixed && j < n; ++j) {
    float sign;
    if (fast_arg(f[j] * y[j])) continue;
    float red = reduce_exact(f[j], y[j], sign);
    dy[j] = grad_at<M>(y[j], load(gr[j]), A[j], f[j], d[j], red, sign, pA[j], pf[j], pd[j]);
  }
}

const int64_t kBlock = 64;   // rows per partial sum: float within a block, double across blocks

// Pass 1 of the backward: dy for every row (into dyb, float), the sine's sums and the taps' sums
// pw[i, c] = sum_t dy[t, c] * x[src_i, c] * scale[src_i] (times gain[c] later), per thread in acc.
template <class T, int M>
void backward_conv(const T* g, const T* x, const float* rinv, const float* gain, const float* wt,
                   const float* A, const float* f, const float* d, const float* mask,
                   const int64_t* doc, float* dyb, double* acc, int64_t rows, int64_t len,
                   int64_t n, int64_t k, int64_t dil, int nt) {
  const int64_t nblocks = (rows + kBlock - 1) / kBlock, width = (3 + k) * n;
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> y(n), part(width);
    double* mine = acc + int64_t(omp_get_thread_num()) * width;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      std::fill(part.begin(), part.end(), 0.0f);
      float *pA = part.data(), *pf = pA + n, *pd = pf + n, *pw = pd + n;
      for (int64_t r = b * kBlock; r < std::min(rows, (b + 1) * kBlock); ++r) {
        const int64_t t = r % len;
        float* dy = dyb + r * n;
        conv_row(x, rinv, gain, wt, mask, doc, r, t, n, k, dil, y.data());
        sine_grad_row<T, M>(g + r * n, y.data(), A, f, d, dy, pA, pf, pd, n);
        for (int64_t i = 0; i < k; ++i) {
          const int64_t s = tap_src(r, t, (k - 1 - i) * dil, doc);
          if (s < 0) continue;
          const float c = row_scale(rinv, mask, s);
          const T* xs = x + s * n; float* pwi = pw + i * n;
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) pwi[j] += dy[j] * (c * load(xs[j]));
        }
      }
      for (int64_t j = 0; j < width; ++j) mine[j] += part[j];
    }
  }
}

// Pass 2: dr[s] = sum_i w_i * dy[s + lag_i] (the transposed conv), then the norm's backward:
// dxh = dr * gain * mask, dx = rinv * (dxh - xh * mean(dxh * xh)), dgain += dr * xh * mask.
template <class T>
void backward_norm(const T* x, const float* rinv, const float* gain, const float* wt,
                   const float* mask, const int64_t* doc, const float* dyb, T* dx, double* acc,
                   int64_t rows, int64_t len, int64_t n, int64_t k, int64_t dil, int nt) {
  const int64_t nblocks = (rows + kBlock - 1) / kBlock;
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> dr(n), part(n);
    double* mine = acc + int64_t(omp_get_thread_num()) * n;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      std::fill(part.begin(), part.end(), 0.0f);
      for (int64_t s = b * kBlock; s < std::min(rows, (b + 1) * kBlock); ++s) {
        const int64_t t = s % len;
        std::fill(dr.begin(), dr.end(), 0.0f);
        for (int64_t i = 0; i < k; ++i) {
          const int64_t lag = (k - 1 - i) * dil;
          if (t + lag >= len || (doc && doc[s + lag] != doc[s])) continue;
          const float* dy = dyb + (s + lag) * n; const float* wi = wt + i * n;
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) dr[j] += wi[j] * dy[j];
        }
        const T* xs = x + s * n; T* dxs = dx + s * n;
        const float m = mask ? mask[s] : 1.0f, inv = rinv[s];
        float dot = 0.0f;
#pragma omp simd reduction(+:dot)
        for (int64_t j = 0; j < n; ++j) {
          const float xh = load(xs[j]) * inv, dxh = dr[j] * gain[j] * m;
          part[j] += dr[j] * xh * m;
          dr[j] = dxh;
          dot += dxh * xh;
        }
        dot /= float(n);
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          const float xh = load(xs[j]) * inv;
          dxs[j] = store<T>(inv * (dr[j] - xh * dot));
        }
      }
      for (int64_t j = 0; j < n; ++j) mine[j] += part[j];
    }
  }
}

// One decoding step of the branch for `rows` sequences: h = RMSNorm(x)·gain,
// z = Σ_i w_i ⊙ seq[i·dil] over seq = [state; h] (depthwise, k taps, w (n, k)), y = sine(z);
// then state (rows, P, n), oldest row first, shifts by one row to end in h.
template <int M>
void conv_step(const float* x, const float* gain, float eps, float* state, const float* w,
               const float* A, const float* f, const float* d, float* y, int64_t rows, int64_t n,
               int64_t k, int64_t dil) {
  const int64_t P = (k - 1) * dil;
  std::vector<float> h(n);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* S = state + r * P * n;
    float* yr = y + r * n;
    float ss = 0.0f;
#pragma omp simd reduction(+:ss)
    for (int64_t j = 0; j < n; ++j) ss += xr[j] * xr[j];
    const float inv = 1.0f / std::sqrt(ss / float(n) + eps);
    for (int64_t j = 0; j < n; ++j) {
      h[j] = xr[j] * inv * gain[j];
      float z = w[j * k + k - 1] * h[j], sign;
      for (int64_t i = 0; i + 1 < k; ++i) z += w[j * k + i] * S[i * dil * n + j];
      float red = reduce_any(f[j], z, sign);
      yr[j] = A[j] * exp_nonpos(-d[j] * decay_arg<M>(z)) * sign * sin_poly(red);
    }
    if (P > 0) {
      std::memmove(S, S + n, size_t((P - 1) * n) * sizeof(float));
      std::memcpy(S + (P - 1) * n, h.data(), size_t(n) * sizeof(float));
    }
  }
}

#define PSANN_CONV_BY_MODE(fn, ...) \
  (mode == 0 ? fn<T, 0>(__VA_ARGS__) : mode == 1 ? fn<T, 1>(__VA_ARGS__) : fn<T, 2>(__VA_ARGS__))

template <class T>
void branch_fwd(const T* x, const float* gain, const float* wt, const float* A, const float* f,
                const float* d, const float* mask, const int64_t* doc, T* out, float* rinv,
                float eps, int64_t rows, int64_t len, int64_t n, int64_t k, int64_t dil, int mode,
                int nt) {
  row_rinv(x, eps, rinv, rows, n, nt);
  PSANN_CONV_BY_MODE(forward, x, rinv, gain, wt, A, f, d, mask, doc, out, rows, len, n, k, dil,
                     nt);
}

template <class T>
void branch_bwd(const T* g, const T* x, const float* rinv, const float* gain, const float* wt,
                const float* A, const float* f, const float* d, const float* mask,
                const int64_t* doc, T* dx, float* dyb, double* acc, double* gacc, int64_t rows,
                int64_t len, int64_t n, int64_t k, int64_t dil, int mode, int nt) {
  PSANN_CONV_BY_MODE(backward_conv, g, x, rinv, gain, wt, A, f, d, mask, doc, dyb, acc, rows, len,
                     n, k, dil, nt);
  backward_norm(x, rinv, gain, wt, mask, doc, dyb, dx, gacc, rows, len, n, k, dil, nt);
}
}  // namespace

// The C entry points: x, out, g and dx in float32 or bfloat16; everything else as declared.
#define PSANN_CONV_FWD(sfx, T)                                                                   \
  void psann_conv_branch_fwd_##sfx(const T* x, const float* gain, const float* wt,               \
                                   const float* A, const float* f, const float* d,               \
                                   const float* mask, const int64_t* doc, T* out, float* rinv,   \
                                   float eps, int64_t rows, int64_t len, int64_t n, int64_t k,   \
                                   int64_t dil, int mode, int nt) {                              \
    branch_fwd(x, gain, wt, A, f, d, mask, doc, out, rinv, eps, rows, len, n, k, dil, mode, nt); \
  }
#define PSANN_CONV_BWD(sfx, T)                                                                   \
  void psann_conv_branch_bwd_##sfx(const T* g, const T* x, const float* rinv, const float* gain, \
                                   const float* wt, const float* A, const float* f,              \
                                   const float* d, const float* mask, const int64_t* doc, T* dx, \
                                   float* dyb, double* acc, double* gacc, int64_t rows,          \
                                   int64_t len, int64_t n, int64_t k, int64_t dil, int mode,     \
                                   int nt) {                                                     \
    branch_bwd(g, x, rinv, gain, wt, A, f, d, mask, doc, dx, dyb, acc, gacc, rows, len, n, k,    \
               dil, mode, nt);                                                                   \
  }

extern "C" {
PSANN_CONV_FWD(f32, float)
PSANN_CONV_FWD(bf16, bf16)
PSANN_CONV_BWD(f32, float)
PSANN_CONV_BWD(bf16, bf16)
void psann_conv_sine_step_f32(const float* x, const float* gain, float eps, float* state,
                              const float* w, const float* A, const float* f, const float* d,
                              float* y, int64_t rows, int64_t n, int64_t k, int64_t dil,
                              int mode) {
  mode == 0   ? conv_step<0>(x, gain, eps, state, w, A, f, d, y, rows, n, k, dil)
  : mode == 1 ? conv_step<1>(x, gain, eps, state, w, A, f, d, y, rows, n, k, dil)
              : conv_step<2>(x, gain, eps, state, w, A, f, d, y, rows, n, k, dil);
}
}
