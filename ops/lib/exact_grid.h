// The operands of an exact convolution (tfcomp/exact.py): plain C++, no TensorFlow types.
//
// A convolution's input x, kernel and bias are rounded to power-of-two grids on which every
// partial sum of every output is an integer multiple of one grid step below 2^24 of them,
// so float32 computes it exactly in any order:
//
//   f     = clamp(bits - 2 - floor_log2(max |x|), -48, 48)      (the input grid, 2^-f)
//   X     = round_half_even(x 2^f)                              (|X| <= 2^(bits - 1))
//   e_c   = clamp(min(finest_c, room_c - f), -48, 48)           (the kernel grid, 2^-e_c)
//   w'    = round_half_even(w 2^e_c) 2^-(e_c + f)               (W 2^-(e_c + f))
//   b'_c  = clamp(round_half_even(b_c 2^(e_c + f)), +-2^22) 2^-(e_c + f)
//
// so that conv(X, w') + b' = (sum X W + B) 2^-(e_c + f). `finest` and `room` come from the
// weights alone (tfcomp.exact.weight_grids). Every step is a comparison, a multiplication by
// a power of two (exact) or a rounding to an integer, with no fused multiply-adds, so the
// result is the same on every machine; it equals what tfcomp.exact computes with TensorFlow
// ops in training, bit for bit.
#ifndef TFCOMP_OPS_LIB_EXACT_GRID_H_
#define TFCOMP_OPS_LIB_EXACT_GRID_H_

#include <cstdint>
#include <string>

namespace tfcomp {

constexpr int kExactExpMin = -48;
constexpr int kExactExpMax = 48;
constexpr float kExactBiasLimit = 4194304.0f;  // 2^22

struct ExactOperands {
  const float* x = nullptr;  // n values
  int64_t n = 0;
  const float* kernel = nullptr;  // k values, the output channel innermost (k % out == 0)
  int64_t k = 0;
  const float* bias = nullptr;       // out values
  const int32_t* finest = nullptr;   // out values
  const int32_t* room = nullptr;     // out values
  int64_t out = 0;
  int activation_bits = 11;
};

// Writes X (n), w' (k), b' (out) and f; returns an error message, or "" on success. Inputs
// must be finite.
std::string ComputeExactOperands(const ExactOperands& in, float* x_int, float* w_scaled,
                                 float* b_scaled, int32_t* f);

// Its steps, for callers that split the input's loops across threads: the largest |x| as
// float bits over a range (kNonFinite or above: an infinity or a NaN), the input grid from
// the largest over all ranges, X over a range, and w', b' (which check the weights).
uint32_t ExactPeakBits(const float* v, int64_t n);
int32_t ExactInputGrid(uint32_t peak_bits, int activation_bits);
void ExactRoundInput(const float* x, int64_t n, int32_t f, float* x_int);
std::string ExactWeightOperands(const ExactOperands& in, int32_t f, float* w_scaled,
                                float* b_scaled);
constexpr uint32_t kExactNonFinite = 0x7F800000u;

// The helpers, for tests: floor(log2(v)) from v's exponent bits (-127 for 0 and subnormals),
// 2^e for e in [-126, 127] from its exponent bits, and rounding halves to even: for any
// float, and (RoundSmall) for |v| <= 2^22 in the default rounding mode, as
// ComputeExactOperands rounds.
int32_t FloorLog2(float v);
float Pow2(int32_t e);
float RoundHalfEven(float v);
float RoundSmall(float v);

}  // namespace tfcomp

#endif  // TFCOMP_OPS_LIB_EXACT_GRID_H_
