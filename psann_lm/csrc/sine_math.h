// psann_lm's exact float32 math for the sine kernels: bfloat16 loads and stores, e^v for v <= 0,
// range reduction of f*x for every finite float32 (fast and exact paths), the sine and cosine
// polynomials, the decay envelopes, and one element's forward value and backward terms.
// Included by sine.cpp and conv_sine.cpp; reduction_tables.h is generated at build time
// (psann_lm.kernels.reduction_tables) next to the sources being compiled.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#include <omp.h>
namespace {
struct bf16 { uint16_t bits; };
inline float load(float v) { return v; }
inline float load(bf16 v) { uint32_t u = uint32_t(v.bits) << 16; float f; std::memcpy(&f, &u, 4); return f; }
template <class T> inline T store(float v);
template <> inline float store<float>(float v) { return v; }
template <> inline bf16 store<bf16>(float v) {           // round to nearest even
  uint32_t u; std::memcpy(&u, &v, 4); u += 0x7FFFu + ((u >> 16) & 1u); return bf16{uint16_t(u >> 16)};
}
const float kRound = 12582912.0f;                          // (x + 1.5*2^23) - 1.5*2^23 rounds x to an integer
inline uint32_t bits_of(float v) { uint32_t u; std::memcpy(&u, &v, 4); return u; }
// e^v for v <= 0: 2^k * p(r), |r| <= ln2/2. p comes out times 2^-64 (exactly: the 2^-64 is in
// its coefficients), so 2^(k+64) is a normal float down to k = -150 and a subnormal e^v is
// rounded once.
inline float exp_nonpos(float v) {
  v = v < -104.0f ? -104.0f : v;                           // e^-104 < 2^-150: rounds to 0
  float kr = v * 1.44269504088896341f + kRound, k = kr - kRound;   // kr = k + 1.5*2^23
  float r = (v - k * 0.693359375f) + k * 2.12194440e-4f;
  const float s = 0x1p-64f;
  float p = 1.3950476e-3f * s;
  p = p * r + 8.3688823e-3f * s; p = p * r + 4.1666206e-2f * s;
  p = p * r + 1.6666518e-1f * s; p = p * r + 0.5f * s;
  p = p * r * r + r * s + s;
  uint32_t bits = (bits_of(kr) - bits_of(kRound) + 127u + 64u) << 23;
  float scale; std::memcpy(&scale, &bits, 4);
  return p * scale;
}
// Range reduction, t = k*pi + r with |r| <= pi/2 and sign = (-1)^k, in two paths. The fast one, in
// float32 and vectorised, is exact enough while |t| < 2^14 (then k < 2^13, so k*3.140625 and
// k*9.675e-4 are exact). The exact one takes any finite f and x: t = f*x rounded to 24 significant
// bits, as a float32 product rounds it but with an unbounded exponent (so it never overflows), is
// M*2^E with M an integer; 2^E mod 2pi from a table turns it into a double below 2^27, which
// Cody-Waite by pi (three 27-bit parts) reduces in double.
const float kFastLimit = 16384.0f;
inline bool fast_arg(float t) { return std::fabs(t) < kFastLimit; }   // false for NaN and inf too
inline float reduce_pi(float t, float& sign) {             // the fast path, for fast_arg(t)
  float kr = t * 0.318309886183790672f + kRound, k = kr - kRound;
  sign = (bits_of(kr) & 1u) ? -1.0f : 1.0f;                // kr = k + 1.5*2^23: its last bit is k's
  return ((t - k * 3.140625f) - k * 9.67502593994140625e-4f) - k * 1.509957990978376432e-7f;
}                                                          // parity (a huge t: garbage, never UB)
inline uint32_t abs_bits(float t) { return bits_of(t) & 0x7FFFFFFFu; }
const uint32_t kFastLimitBits = 0x46800000u;               // abs_bits(kFastLimit); NaN's are above
#include "reduction_tables.h"
inline float reduce_exact(float f, float x, float& sign) {  // the exact path: any finite f, x
  const double p = double(f) * double(x);                  // exact (24 + 24 bits)
  sign = 1.0f;
  if (!std::isfinite(p)) return NAN;
  const float t = f * x;
  double a = t, c = 0.0;                                   // t = a + c (mod 2pi)
  if (!(std::fabs(t) < 16777216.0f)) {                     // |t| >= 2^24: t = M*2^E, E >= 1
    const bool over = std::isinf(t);
    const float m = over ? float(p * 0x1p-128) : t;        // the same 24 bits, exponent - 128
    const uint32_t u = bits_of(m);
    const int E = int((u >> 23) & 0xFF) - 150 + (over ? 128 : 0);
    const double M = double((u & 0x7FFFFF) | 0x800000) * ((u >> 31) ? -1.0 : 1.0);
    a = M * kTwoPowMod2Pi[E][0];                           // exact: 24 + 29 bits
    c = M * kTwoPowMod2Pi[E][1];
  }
  const double k = std::nearbyint((a + c) * 0.318309886183790672);
  sign = (int64_t(k) & 1) ? -1.0f : 1.0f;
  return float(((a - k * kPi[0]) - k * kPi[1] + c) - k * kPi[2]);
}
inline float reduce_any(float f, float x, float& sign) {
  const float t = f * x;
  return fast_arg(t) ? reduce_pi(t, sign) : reduce_exact(f, x, sign);
}
inline float sin_poly(float r) {
  float r2 = r * r;
  return r + r * r2 * (-1.6666667e-1f + r2 * (8.3333319e-3f + r2 * (-1.9840925e-4f + r2 * (2.7528140e-6f + r2 * -2.3935486e-8f))));
}
inline float cos_poly(float r) {
  float r2 = r * r;
  return 1.0f + r2 * (-0.5f + r2 * (4.1666668e-2f + r2 * (-1.3888885e-3f + r2 * (2.4801100e-5f + r2 * (-2.7526815e-7f + r2 * 1.9936242e-9f)))));
}
// decay modes: 0 "abs", 1 "relu", 2 "none"; a template argument, so each loop is compiled for one mode
template <int M> inline float decay_arg(float x) { return M == 0 ? (x < 0 ? -x : x) : M == 1 ? (x > 0 ? x : 0.0f) : 0.0f; }
template <int M> inline float decay_slope(float x) { return M == 0 ? (x > 0 ? 1.0f : (x < 0 ? -1.0f : 0.0f)) : (M == 1 && x > 0 ? 1.0f : 0.0f); }

template <int M> inline float sine_at(float x, float A, float d, float red, float sign) {
  return A * exp_nonpos(-d * decay_arg<M>(x)) * sign * sin_poly(red);
}
// One element's backward: adds its terms to the three sums and returns its dz.
template <int M> inline float grad_at(float x, float g, float A, float f, float d, float red,
                                      float sign, float& sA, float& sf, float& sd) {
  float u = decay_arg<M>(x);
  float ge = g * exp_nonpos(-d * u) * sign;
  float P = ge * sin_poly(red), Q = ge * cos_poly(red);
  sA += P; sf += Q * x; sd += P * u;
  return A * (f * Q - d * decay_slope<M>(x) * P);
}
}  // namespace
