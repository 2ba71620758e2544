#include "exact_grid.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstring>

namespace tfcomp {

int32_t FloorLog2(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return static_cast<int32_t>((bits >> 23) & 0xFF) - 127;
}

float Pow2(int32_t e) {
  const uint32_t bits = static_cast<uint32_t>(e + 127) << 23;
  float v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

float RoundHalfEven(float v) {
  // v - floor(v) is exact for every float; at or above 2^23 every float is an integer.
  const float r = std::floor(v);
  const float d = v - r;
  if (d > 0.5f) return r + 1.0f;
  if (d < 0.5f) return r;
  return std::fmod(r, 2.0f) == 0.0f ? r : r + 1.0f;
}

float RoundSmall(float v) {
  // Adding and subtracting 1.5 * 2^23 leaves v rounded to an integer, halves to even, in
  // the default rounding mode (the functions below make sure of it); |v| <= 2^22 keeps the
  // sum in [2^23, 2^24), where floats are the integers. Loops of it vectorize.
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}

namespace {

// Sets the default rounding mode for the scope (TensorFlow never changes it, but nothing
// here may depend on the caller's).
class NearestRounding {
 public:
  NearestRounding() : saved_(std::fegetround()) {
    if (saved_ != FE_TONEAREST) std::fesetround(FE_TONEAREST);
  }
  ~NearestRounding() {
    if (saved_ != FE_TONEAREST) std::fesetround(saved_);
  }

 private:
  int saved_;
};

}  // namespace

// The two loops over the input, compiled for AVX2 and for any x86-64 (or the target at
// hand); both compute the same numbers: integer maxima, IEEE products and sums.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TFCOMP_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TFCOMP_CLONES
#endif

TFCOMP_CLONES uint32_t ExactPeakBits(const float* v, int64_t n) {
  // For non-negative floats the integer order of the bits is the float order, and
  // infinities and NaNs come above every finite value.
  int32_t peak = 0;
  for (int64_t i = 0; i < n; ++i) {
    int32_t bits;
    std::memcpy(&bits, &v[i], sizeof(bits));
    bits &= 0x7FFFFFFF;
    peak = bits > peak ? bits : peak;
  }
  return static_cast<uint32_t>(peak);
}

int32_t ExactInputGrid(uint32_t peak_bits, int activation_bits) {
  const int32_t floor_log2 = static_cast<int32_t>(peak_bits >> 23) - 127;
  return std::clamp(activation_bits - 2 - floor_log2, kExactExpMin, kExactExpMax);
}

TFCOMP_CLONES void ExactRoundInput(const float* x, int64_t n, int32_t f, float* x_int) {
  // |x| 2^f < 2^(activation_bits - 1) <= 2^22: within RoundSmall's range.
  NearestRounding nearest;
  const float up_f = Pow2(f);
  constexpr float kMagic = 12582912.0f;  // RoundSmall, inlined so that the loop vectorizes
  for (int64_t i = 0; i < n; ++i) x_int[i] = (x[i] * up_f + kMagic) - kMagic;
}

std::string ExactWeightOperands(const ExactOperands& in, int32_t f, float* w_scaled,
                                float* b_scaled) {
  if (in.out <= 0 || in.k % in.out != 0) return "kernel size is not a multiple of its outputs";
  if (ExactPeakBits(in.kernel, in.k) >= kExactNonFinite) return "kernel has a non-finite value";
  if (ExactPeakBits(in.bias, in.out) >= kExactNonFinite) return "bias has a non-finite value";
  NearestRounding nearest;
  for (int64_t c = 0; c < in.out; ++c) {
    const int32_t e = std::clamp(std::min(in.finest[c], in.room[c] - f), kExactExpMin,
                                 kExactExpMax);
    const float up_acc = Pow2(e + f), down_acc = Pow2(-(e + f));
    const float b = std::clamp(in.bias[c] * up_acc, -kExactBiasLimit, kExactBiasLimit);
    b_scaled[c] = RoundSmall(b) * down_acc;
    // The kernel's grid keeps |w| 2^e below 2^14 (tfcomp.exact.kernel_grids); the clamp
    // only guards RoundSmall's range against inconsistent arguments.
    const float up_e = Pow2(e);
    for (int64_t i = c; i < in.k; i += in.out) {
      const float w = std::clamp(in.kernel[i] * up_e, -kExactBiasLimit, kExactBiasLimit);
      w_scaled[i] = RoundSmall(w) * down_acc;
    }
  }
  return "";
}

std::string ComputeExactOperands(const ExactOperands& in, float* x_int, float* w_scaled,
                                 float* b_scaled, int32_t* f_out) {
  if (in.activation_bits < 2 || in.activation_bits > 23) return "activation_bits out of range";
  const uint32_t peak = ExactPeakBits(in.x, in.n);
  if (peak >= kExactNonFinite) return "input has a non-finite value";
  const int32_t f = ExactInputGrid(peak, in.activation_bits);
  std::string error = ExactWeightOperands(in, f, w_scaled, b_scaled);
  if (!error.empty()) return error;
  ExactRoundInput(in.x, in.n, f, x_int);
  *f_out = f;
  return "";
}

}  // namespace tfcomp
