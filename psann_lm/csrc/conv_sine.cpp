// WaveResNet's conv branch, fused: RMSNorm -> causal dilated depthwise conv -> sine. Loaded by
// psann_lm.conv_kernels.
#include "sine_math.h"
namespace {
// One decoding step of WaveResNet's conv branch for `rows` sequences: h = RMSNorm(x)·gain, z = Σ_i w_i ⊙ seq[i·dil] over
// seq = [state; h] (depthwise, k taps), y = sine(z); then state (rows, P, n), oldest row first, shifts by one row to end in h.
template <int M>
void conv_step(const float* x, const float* gain, float eps, float* state, const float* w, const float* A, const float* f,
               const float* d, float* y, int64_t rows, int64_t n, int64_t k, int64_t dil) {
  const int64_t P = (k - 1) * dil;
  std::vector<float> h(n);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n; float* S = state + r * P * n; float* yr = y + r * n;
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
    if (P > 0) { std::memmove(S, S + n, size_t((P - 1) * n) * sizeof(float)); std::memcpy(S + (P - 1) * n, h.data(), size_t(n) * sizeof(float)); }
  }
}
}  // namespace

extern "C" {
void psann_conv_sine_step_f32(const float* x, const float* gain, float eps, float* state, const float* w, const float* A, const float* f, const float* d, float* y, int64_t rows, int64_t n, int64_t k, int64_t dil, int mode) {
  mode == 0 ? conv_step<0>(x, gain, eps, state, w, A, f, d, y, rows, n, k, dil) : mode == 1 ? conv_step<1>(x, gain, eps, state, w, A, f, d, y, rows, n, k, dil) : conv_step<2>(x, gain, eps, state, w, A, f, d, y, rows, n, k, dil);
}
}
