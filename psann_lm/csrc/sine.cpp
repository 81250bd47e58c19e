// The parametric sine A*exp(-d*g(z))*sin(f*z), forward and backward, for float32 and bfloat16 rows
// with features on the last dim; OpenMP over rows, SIMD over features. Loaded by psann_lm.kernels.
#include "sine_math.h"
namespace {
template <class T> inline uint32_t row_top(const T* zr, const float* f, int64_t n) {
  uint32_t top = 0;                                        // the row's largest |f*x|, as bits
#pragma omp simd reduction(max:top)
  for (int64_t j = 0; j < n; ++j) top = std::max(top, abs_bits(f[j] * load(zr[j])));
  return top;
}

// The forward runs the fast path on a whole row, noting its largest |t|; if that is out of the fast
// path's range, the elements that are get redone by the exact path.
template <class T, int M>
void forward(const T* z, const float* A, const float* f, const float* d, T* y, int64_t rows,
             int64_t n, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* zr = z + r * n; T* yr = y + r * n;
    uint32_t top = 0;
#pragma omp simd reduction(max:top)
    for (int64_t j = 0; j < n; ++j) {
      float x = load(zr[j]), t = f[j] * x, sign;
      top = std::max(top, abs_bits(t));
      float red = reduce_pi(t, sign);
      yr[j] = store<T>(sine_at<M>(x, A[j], d[j], red, sign));
    }
    for (int64_t j = 0; top >= kFastLimitBits && j < n; ++j) {
      float x = load(zr[j]), sign;
      if (fast_arg(f[j] * x)) continue;
      float red = reduce_exact(f[j], x, sign);
      yr[j] = store<T>(sine_at<M>(x, A[j], d[j], red, sign));
    }
  }
}

// The backward must know before a row whether it holds elements out of the fast path's range
// (their terms would spoil the sums), so each row's loop also finds the next row's largest |t|.
// A row within range runs the fast path alone. Any other row is "mixed": the fast path runs with
// x = 0 standing in for the elements out of range (their terms in the sums are then exactly 0),
// and those alone are redone by the exact path.
template <bool Mixed, class T, int M>
inline uint32_t backward_row(const T* gr, const T* zr, const T* znext, const float* A,
                             const float* f, const float* d, T* gzr, float* pA, float* pf,
                             float* pd, int64_t n) {
  uint32_t top = 0;
#pragma omp simd reduction(max:top)
  for (int64_t j = 0; j < n; ++j) {
    top = std::max(top, abs_bits(f[j] * load(znext[j])));
    float x = load(zr[j]), sign;
    if (Mixed) x = fast_arg(f[j] * x) ? x : 0.0f;
    float red = reduce_pi(f[j] * x, sign);
    gzr[j] = store<T>(grad_at<M>(x, load(gr[j]), A[j], f[j], d[j], red, sign, pA[j], pf[j], pd[j]));
  }
  for (int64_t j = 0; Mixed && j < n; ++j) {
    float x = load(zr[j]), sign;
    if (fast_arg(f[j] * x)) continue;
    float red = reduce_exact(f[j], x, sign);
    gzr[j] = store<T>(grad_at<M>(x, load(gr[j]), A[j], f[j], d[j], red, sign, pA[j], pf[j], pd[j]));
  }
  return top;
}

template <class T, int M>
void backward(const T* g, const T* z, const float* A, const float* f, const float* d, T* gz,
              double* acc, int64_t rows, int64_t n, int nt) {
  const int64_t block = 64, nblocks = (rows + block - 1) / block;
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> part(3 * n);
    double* mine = acc + int64_t(omp_get_thread_num()) * 3 * n;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      std::fill(part.begin(), part.end(), 0.0f);
      float *pA = part.data(), *pf = pA + n, *pd = pf + n;
      const int64_t end = (b + 1) * block < rows ? (b + 1) * block : rows;
      uint32_t top = row_top(z + b * block * n, f, n);
      for (int64_t r = b * block; r < end; ++r) {
        const T* zr = z + r * n; const T* gr = g + r * n; T* gzr = gz + r * n;
        const T* next = r + 1 < end ? zr + n : zr;
        top = top < kFastLimitBits
            ? backward_row<false, T, M>(gr, zr, next, A, f, d, gzr, pA, pf, pd, n)
            : backward_row<true, T, M>(gr, zr, next, A, f, d, gzr, pA, pf, pd, n);
      }
      for (int64_t j = 0; j < 3 * n; ++j) mine[j] += part[j];
    }
  }
}

#define PSANN_BY_MODE(fn, ...) (mode == 0 ? fn<T, 0>(__VA_ARGS__) : mode == 1 ? fn<T, 1>(__VA_ARGS__) : fn<T, 2>(__VA_ARGS__))
template <class T> void forward_any(const T* z, const float* A, const float* f, const float* d, T* y, int64_t rows, int64_t n, int mode, int nt) {
  PSANN_BY_MODE(forward, z, A, f, d, y, rows, n, nt);
}
template <class T> void backward_any(const T* g, const T* z, const float* A, const float* f, const float* d, T* gz, double* acc, int64_t rows, int64_t n, int mode, int nt) {
  PSANN_BY_MODE(backward, g, z, A, f, d, gz, acc, rows, n, nt);
}
}  // namespace

extern "C" {
void psann_sine_fwd_f32(const float* z, const float* A, const float* f, const float* d, float* y, int64_t rows, int64_t n, int mode, int nt) { forward_any(z, A, f, d, y, rows, n, mode, nt); }
void psann_sine_fwd_bf16(const bf16* z, const float* A, const float* f, const float* d, bf16* y, int64_t rows, int64_t n, int mode, int nt) { forward_any(z, A, f, d, y, rows, n, mode, nt); }
void psann_sine_bwd_f32(const float* g, const float* z, const float* A, const float* f, const float* d, float* gz, double* acc, int64_t rows, int64_t n, int mode, int nt) { backward_any(g, z, A, f, d, gz, acc, rows, n, mode, nt); }
void psann_sine_bwd_bf16(const bf16* g, const bf16* z, const float* A, const float* f, const float* d, bf16* gz, double* acc, int64_t rows, int64_t n, int mode, int nt) { backward_any(g, z, A, f, d, gz, acc, rows, n, mode, nt); }
}
