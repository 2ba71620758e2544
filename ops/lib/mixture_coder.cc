#include "mixture_coder.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <iterator>
#include <vector>

#include "fixed_point_tables.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include "rans.h"

// The coding loops are compiled twice, for baseline x86-64 and for AVX2 (chosen at run
// time), from one source: everything they call is forced inline so that it is vectorized
// for the target at hand. Both compute the same integers.
#define TFCOMP_INLINE inline __attribute__((always_inline))

namespace tfcomp {
namespace {

using tables::kSigmoid;

constexpr int kMeanFracBits = 8;        // means in 1/256 of a level
constexpr int kArgFracBits = 12;        // sigmoid arguments in 1/4096
constexpr int kInvScaleBits = 16;       // inverse scales (levels^-1) in 1/65536
constexpr double kMaxInvScale = 256.0;  // scales below 1/256 level are all "certain"
constexpr int kCoeffFracBits = 12;      // coefficients in 1/4096, within [-4, 4]
constexpr float kMaxCoeff = 4.0f;
constexpr float kMaxLogit = 64.0f;
constexpr int32_t kMinWeight = 64;      // components under 2^-10 of the mass are dropped

// Rounds to the nearest integer (ties to even), exactly and without a libm call: adding
// 1.5 * 2^m (m = mantissa bits) leaves round(x) in the low bits of the mantissa. Valid for
// |x| < 2^(m - 1): 2^51 for double, 2^22 for float; every argument is clamped far below.
// The bulk conversions use float, which the compiler vectorizes; IEEE single precision
// is just as deterministic.
template <typename Float>
struct RoundTraits;
template <>
struct RoundTraits<double> {
  using Int = int64_t;
  static constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
};
template <>
struct RoundTraits<float> {
  using Int = int32_t;
  static constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
};

template <typename Float>
TFCOMP_INLINE typename RoundTraits<Float>::Int RoundToInt(Float x) {
  using Int = typename RoundTraits<Float>::Int;
  const Float y = x + RoundTraits<Float>::kMagic;
  Int bits, magic_bits;
  std::memcpy(&bits, &y, sizeof(bits));
  std::memcpy(&magic_bits, &RoundTraits<Float>::kMagic, sizeof(magic_bits));
  return bits - magic_bits;
}

// By value and with plain comparisons, so that loops of it vectorize (min/max instructions).
template <typename Float>
TFCOMP_INLINE Float Clamp(Float x, Float lo, Float hi) {
  x = x < lo ? lo : x;
  return x > hi ? hi : x;
}

// sigmoid(t / 4096) * 2^24, by linear interpolation in the table.
TFCOMP_INLINE int64_t Sigmoid(int64_t t) {
  constexpr int64_t kLow = int64_t{tables::kSigmoidRange} << kArgFracBits;
  constexpr int kShift = kArgFracBits - tables::kSigmoidStepsLog2;
  const int64_t idx = std::clamp<int64_t>(t + kLow, 0, 2 * kLow);
  const int64_t i = idx >> kShift, f = idx & ((1 << kShift) - 1);
  return kSigmoid[i] + (((kSigmoid[i + 1] - kSigmoid[i]) * f) >> kShift);
}


// 1 if x is NaN or infinite (exponent bits all ones), else 0; branch-free.
TFCOMP_INLINE uint32_t NonFinite(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
}

constexpr int kArgShift = kMeanFracBits + kInvScaleBits - kArgFracBits;
constexpr int64_t kSigmoidLow = int64_t{tables::kSigmoidRange} << kArgFracBits;

// sum_i weight[i] * sigmoid((edge - m[i]) * inv[i]) over n (a multiple of 4) components,
// edge and m in 1/256 level: the mixture CDF at one level edge, in 1/2^40. `limit` is for
// the vector code only (see WeightedSigmoid4).
TFCOMP_INLINE uint64_t SumSigmoidsScalar(int32_t edge, const int32_t* m, const int32_t* inv,
                                         const int32_t* /*limit*/, const int32_t* weight,
                                         int n) {
  uint64_t g = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t t = (static_cast<int64_t>(edge - m[i]) * inv[i]) >> kArgShift;
    g += static_cast<uint64_t>(weight[i]) * Sigmoid(t);
  }
  return g;
}

// The sums at edges `edge` and `edge + 256` (levels k and k + 1), for the encoder.
TFCOMP_INLINE void SumSigmoidPairScalar(int32_t edge, const int32_t* m, const int32_t* inv,
                                        const int32_t* limit, const int32_t* weight, int n,
                                        uint64_t* lo, uint64_t* hi) {
  *lo = SumSigmoidsScalar(edge, m, inv, limit, weight, n);
  *hi = SumSigmoidsScalar(edge + (1 << kMeanFracBits), m, inv, limit, weight, n);
}

// floor(2^48 / sum) for sum in [2^16, 2^22], through a double division (much faster than a
// 64-bit integer one): the correctly rounded quotient is at most one above the floor, and
// only when the exact quotient lies just below an integer; the check catches that.
constexpr int64_t kWeightNumerator = int64_t{1} << (tables::kWeightBits + 32);
TFCOMP_INLINE int64_t WeightReciprocal(int64_t sum) {
  int64_t r = static_cast<int64_t>(static_cast<double>(kWeightNumerator) /
                                   static_cast<double>(sum));
  r -= r * sum > kWeightNumerator;
  return r;
}

// The mixture weights of one subpixel from its K quantized logits: exp(logit - max) from
// the table, renormalised to sum to exactly 2^16 (one division per subpixel, a shift per
// CDF value). Components under 2^-10 are dropped and the heaviest (the first with the
// largest logit) takes the remainder; returns its index. Entries past K are left alone.
TFCOMP_INLINE int WeightRow(int K, const int32_t* __restrict logit, int32_t* __restrict weight) {
  constexpr int32_t kLastWeight = sizeof(tables::kExpNegLogit) / sizeof(int32_t) - 1;
  int32_t max_logit = logit[0];
  for (int i = 1; i < K; ++i) max_logit = std::max(max_logit, logit[i]);
  int heaviest = 0;
  for (int i = K - 1; i >= 0; --i) heaviest = logit[i] == max_logit ? i : heaviest;
  int64_t sum = 0;
  for (int i = 0; i < K; ++i) {
    weight[i] = tables::kExpNegLogit[std::min(max_logit - logit[i], kLastWeight)];
    sum += weight[i];
  }
  const int64_t reciprocal = WeightReciprocal(sum);
  int64_t total = 0;
  for (int i = 0; i < K; ++i) {
    const int32_t w = static_cast<int32_t>((weight[i] * reciprocal) >> 32);
    weight[i] = w & -static_cast<int32_t>(w >= kMinWeight);  // no branch: it would be random
    total += weight[i];
  }
  weight[heaviest] += static_cast<int32_t>((int64_t{1} << tables::kWeightBits) - total);
  return heaviest;
}

// WeightRow over `rows` rows: logits K apart, weights KP apart. The baseline;
// ConvertWeightsAvx2 computes the same integers.
void ConvertWeights(int K, int KP, int64_t rows, const int32_t* logit, int32_t* weight,
                    int* heaviest) {
  for (int64_t s = 0; s < rows; ++s) heaviest[s] = WeightRow(K, logit + s * K, weight + s * KP);
}

#if defined(__x86_64__)
// The table cells packed for the vector code: kSigmoid[i] in the low half and
// kSigmoid[i + 1] - kSigmoid[i] in the high half, so that one 64-bit gather fetches both
// ends of a cell. AMD and Intel cores gather element by element, so this halves the work
// that dominates the CDF sums.
struct SigmoidCells {
  alignas(64) uint64_t cell[std::size(kSigmoid) - 1];
};
constexpr SigmoidCells MakeSigmoidCells() {
  SigmoidCells t{};
  for (size_t i = 0; i + 1 < std::size(kSigmoid); ++i) {
    t.cell[i] = static_cast<uint64_t>(kSigmoid[i]) |
                (static_cast<uint64_t>(kSigmoid[i + 1] - kSigmoid[i]) << 32);
  }
  return t;
}
constexpr SigmoidCells kSigmoidCells = MakeSigmoidCells();

// Four components at a time: 32-bit arithmetic up to the table index, then 64-bit lanes.
// The sigmoid saturates once |(edge - m) * inv| >= 2^28, so clamping edge - m to +-limit,
// with limit * inv in [2^28, 2^31), leaves every table index as the scalar code computes
// it while the product fits in 32 bits. Identical integers to SumSigmoidsScalar.
__attribute__((target("avx2"), always_inline)) inline __m256i WeightedSigmoid4(
    __m128i d, __m128i limit, __m128i inv, __m256i weight) {
  d = _mm_max_epi32(_mm_min_epi32(d, limit), _mm_sub_epi32(_mm_setzero_si128(), limit));
  const __m128i t = _mm_srai_epi32(_mm_mullo_epi32(d, inv), kArgShift);
  const __m128i idx = _mm_min_epi32(
      _mm_max_epi32(_mm_add_epi32(t, _mm_set1_epi32(kSigmoidLow)), _mm_setzero_si128()),
      _mm_set1_epi32(2 * kSigmoidLow));
  constexpr int kStepShift = kArgFracBits - tables::kSigmoidStepsLog2;
  const __m256i cell = _mm256_i32gather_epi64(
      reinterpret_cast<const long long*>(kSigmoidCells.cell), _mm_srli_epi32(idx, kStepShift), 8);
  const __m256i frac =
      _mm256_cvtepu32_epi64(_mm_and_si128(idx, _mm_set1_epi32((1 << kStepShift) - 1)));
  // Low halves: kSigmoid[i] + ((delta * frac) >> kStepShift) < 2^25; the high halves carry
  // the delta, which _mm256_mul_epu32 ignores. weight * sigmoid < 2^41.
  const __m256i sigmoid = _mm256_add_epi64(
      cell, _mm256_srli_epi64(_mm256_mul_epu32(_mm256_srli_epi64(cell, 32), frac), kStepShift));
  return _mm256_mul_epu32(weight, sigmoid);
}

__attribute__((target("avx2"), always_inline)) inline __m128i Load4(const int32_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

__attribute__((target("avx2"), always_inline)) inline uint64_t HorizontalSum(__m256i v) {
  const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return static_cast<uint64_t>(_mm_cvtsi128_si64(s)) +
         static_cast<uint64_t>(_mm_extract_epi64(s, 1));
}

__attribute__((target("avx2"))) uint64_t SumSigmoidsAvx2(
    int32_t edge, const int32_t* m, const int32_t* inv, const int32_t* limit,
    const int32_t* weight, int n) {
  const __m128i edge4 = _mm_set1_epi32(edge);
  __m256i acc = _mm256_setzero_si256();
  for (int i = 0; i < n; i += 4) {
    acc = _mm256_add_epi64(acc, WeightedSigmoid4(_mm_sub_epi32(edge4, Load4(m + i)),
                                                 Load4(limit + i), Load4(inv + i),
                                                 _mm256_cvtepu32_epi64(Load4(weight + i))));
  }
  return HorizontalSum(acc);
}

__attribute__((target("avx2"))) void SumSigmoidPairAvx2(
    int32_t edge, const int32_t* m, const int32_t* inv, const int32_t* limit,
    const int32_t* weight, int n, uint64_t* lo, uint64_t* hi) {
  const __m128i edge4 = _mm_set1_epi32(edge);
  const __m128i level = _mm_set1_epi32(1 << kMeanFracBits);
  __m256i acc_lo = _mm256_setzero_si256(), acc_hi = acc_lo;
  for (int i = 0; i < n; i += 4) {
    const __m128i d = _mm_sub_epi32(edge4, Load4(m + i));
    const __m128i lim = Load4(limit + i), iv = Load4(inv + i);
    const __m256i w = _mm256_cvtepu32_epi64(Load4(weight + i));
    acc_lo = _mm256_add_epi64(acc_lo, WeightedSigmoid4(d, lim, iv, w));
    acc_hi = _mm256_add_epi64(acc_hi, WeightedSigmoid4(_mm_add_epi32(d, level), lim, iv, w));
  }
  *lo = HorizontalSum(acc_lo);
  *hi = HorizontalSum(acc_hi);
}

// ConvertWeights for eight rows at a time, one row per 32-bit lane, looping over components:
// every step is a plain vector operation, and the rows' dependency chains (maximum, sum,
// reciprocal, normalisation) run side by side instead of one after another. The rows left
// over go through WeightRow. Same integers as WeightRow:
// - the reciprocal: floor(2^48 / sum) in doubles, as WeightReciprocal computes it;
// - (w * reciprocal) >> 32: w * reciprocal < 2^49 is exact in a double, and so is the
//   scaling by 2^-32 before truncation.
__attribute__((target("avx2"))) void ConvertWeightsAvx2(int K, int KP, int64_t rows,
                                                        const int32_t* logit, int32_t* weight,
                                                        int* heaviest) {
  constexpr int32_t kLastWeight = sizeof(tables::kExpNegLogit) / sizeof(int32_t) - 1;
  constexpr double kNumerator = static_cast<double>(kWeightNumerator);
  // Component k of the block's rows: one vector per component.
  alignas(32) int32_t column[kMixtureMaxComponents][8];
  alignas(32) int32_t first[8], remainder[8];
  const __m256i row_offset = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                                _mm256_set1_epi32(K));
  int64_t s0 = 0;
  for (; s0 + 8 <= rows; s0 += 8) {
    const int32_t* block = logit + s0 * K;
    __m256i max_logit = _mm256_set1_epi32(INT32_MIN);
    for (int k = 0; k < K; ++k) {
      const __m256i l = _mm256_i32gather_epi32(block + k, row_offset, 4);
      _mm256_store_si256(reinterpret_cast<__m256i*>(column[k]), l);
      max_logit = _mm256_max_epi32(max_logit, l);
    }
    __m256i heaviest_k = _mm256_setzero_si256(), sum = _mm256_setzero_si256();
    for (int k = K - 1; k >= 0; --k) {
      const __m256i l = _mm256_load_si256(reinterpret_cast<const __m256i*>(column[k]));
      heaviest_k = _mm256_blendv_epi8(heaviest_k, _mm256_set1_epi32(k),
                                      _mm256_cmpeq_epi32(l, max_logit));
      const __m256i w = _mm256_i32gather_epi32(
          tables::kExpNegLogit,
          _mm256_min_epi32(_mm256_sub_epi32(max_logit, l), _mm256_set1_epi32(kLastWeight)), 4);
      _mm256_store_si256(reinterpret_cast<__m256i*>(column[k]), w);
      sum = _mm256_add_epi32(sum, w);
    }
    __m256d reciprocal[2];
    for (int h = 0; h < 2; ++h) {
      const __m256d total = _mm256_cvtepi32_pd(h ? _mm256_extracti128_si256(sum, 1)
                                                 : _mm256_castsi256_si128(sum));
      __m256d r = _mm256_round_pd(_mm256_div_pd(_mm256_set1_pd(kNumerator), total),
                                  _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      r = _mm256_sub_pd(r, _mm256_and_pd(_mm256_cmp_pd(_mm256_mul_pd(r, total),
                                                       _mm256_set1_pd(kNumerator), _CMP_GT_OQ),
                                         _mm256_set1_pd(1.0)));
      reciprocal[h] = _mm256_mul_pd(r, _mm256_set1_pd(1.0 / 4294967296.0));
    }
    __m256i total = _mm256_setzero_si256();
    for (int k = 0; k < K; ++k) {
      const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(column[k]));
      __m128i half[2];
      for (int h = 0; h < 2; ++h) {
        const __m256d wd = _mm256_cvtepi32_pd(h ? _mm256_extracti128_si256(w, 1)
                                                : _mm256_castsi256_si128(w));
        half[h] = _mm256_cvttpd_epi32(_mm256_mul_pd(wd, reciprocal[h]));
      }
      __m256i q = _mm256_set_m128i(half[1], half[0]);
      q = _mm256_and_si256(q, _mm256_cmpgt_epi32(q, _mm256_set1_epi32(kMinWeight - 1)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(column[k]), q);
      total = _mm256_add_epi32(total, q);
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(first), heaviest_k);
    _mm256_store_si256(reinterpret_cast<__m256i*>(remainder),
                       _mm256_sub_epi32(_mm256_set1_epi32(1 << tables::kWeightBits), total));
    for (int r = 0; r < 8; ++r) {
      int32_t* w = weight + (s0 + r) * KP;
      for (int k = 0; k < K; ++k) w[k] = column[k][r];
      w[first[r]] += remainder[r];
      heaviest[s0 + r] = first[r];
    }
  }
  for (; s0 < rows; ++s0) heaviest[s0] = WeightRow(K, logit + s0 * K, weight + s0 * KP);
}

bool CpuHasAvx2() { return __builtin_cpu_supports("avx2"); }
#define TFCOMP_AVX2 __attribute__((target("avx2")))
#else
inline uint64_t SumSigmoidsAvx2(int32_t edge, const int32_t* m, const int32_t* inv,
                                const int32_t* limit, const int32_t* weight, int n) {
  return SumSigmoidsScalar(edge, m, inv, limit, weight, n);
}
inline void SumSigmoidPairAvx2(int32_t edge, const int32_t* m, const int32_t* inv,
                               const int32_t* limit, const int32_t* weight, int n,
                               uint64_t* lo, uint64_t* hi) {
  SumSigmoidPairScalar(edge, m, inv, limit, weight, n, lo, hi);
}
inline void ConvertWeightsAvx2(int K, int KP, int64_t rows, const int32_t* logit,
                               int32_t* weight, int* heaviest) {
  ConvertWeights(K, KP, rows, logit, weight, heaviest);
}
bool CpuHasAvx2() { return false; }
#define TFCOMP_AVX2
#endif

std::atomic<bool> use_simd{CpuHasAvx2()};

// Integer parameters of a chunk of pixels: everything about their distributions that does
// not depend on the symbols, converted once per chunk. The vector code works on whole
// groups of 4 components, so a subpixel's row is read as `padded()` (K rounded up to a
// multiple of 4) entries. Only the weights are stored padded, with zeros; the other arrays
// keep rows K apart, so the entries past K belong to the next row (or to a zeroed tail).
// Their weight is 0, so they add nothing to any CDF.
class ChunkParams {
 public:
  static constexpr int64_t kPixels = 256;
  static constexpr int kTail = 3;  // entries after the last row, read past K

  explicit ChunkParams(const MixtureSpec& spec)
      : spec_(spec),
        pairs_(spec.channels * (spec.channels - 1) / 2),
        padded_((spec.components + 3) & ~3),
        inv_bin_(static_cast<float>((spec.num_levels - 1) / (spec.x_max - spec.x_min))),
        x_min_(static_cast<float>(spec.x_min)),
        x_min_levels_(x_min_ * inv_bin_),
        logit_q_(kPixels * spec.channels * spec.components),
        scale_index_(logit_q_.size()),
        level_(logit_q_.size()),
        mean_(logit_q_.size() + kTail),
        inv_scale_(mean_.size()),
        limit_(mean_.size()),
        coeff_(kPixels * pairs_ * spec.components + kTail),
        weight_(kPixels * spec.channels * padded_),
        heaviest_(kPixels * spec.channels) {
    // Inverse scales in levels^-1 for every snapped log-scale, for this level grid.
    const double bin = (spec.x_max - spec.x_min) / (spec.num_levels - 1);
    for (size_t i = 0; i < std::size(inv_scale_table_); ++i) {
      inv_scale_table_[i] = static_cast<int32_t>(RoundToInt(
          std::min(tables::kInvScale[i] * bin, kMaxInvScale) * (1 << kInvScaleBits)));
      // |edge - mean| beyond the limit saturates the sigmoid (see WeightedSigmoid4); any
      // limit with limit * inv in [2^28, 2^31) gives the same result, so float is fine.
      limit_table_[i] =
          inv_scale_table_[i] > 0
              ? static_cast<int32_t>(268435456.0f / static_cast<float>(inv_scale_table_[i])) + 2
              : (1 << 30);
      // The scale in 1/256 level, for the adaptation's statistics: an integer division.
      scale_table_[i] = inv_scale_table_[i] > 0
                            ? std::min(kMaxScale, (int32_t{1} << 24) / inv_scale_table_[i])
                            : kMaxScale;
    }
  }

  // Converts pixels [first, first + count); false if a parameter is not finite. kAvx2
  // picks the weight conversion; both give the same integers.
  template <bool kAvx2>
  TFCOMP_INLINE bool Load(const MixtureParams& params, int64_t first, int64_t count) {
    const int K = spec_.components, C = spec_.channels;
    const int64_t n = count * C * K, nc = count * pairs_ * K;
    const float* logits = params.logit_weights + first * C * K;
    const float* means = params.means + first * C * K;
    const float* log_scales = params.log_scales + first * C * K;
    const float* coeffs = params.coeffs + first * pairs_ * K;
    constexpr float kLogitSteps = tables::kWeightLogitSteps;
    constexpr float kLsMin = tables::kLogScaleMin, kLsMax = tables::kLogScaleMax;
    constexpr float kLsSteps = tables::kLogScaleSteps;
    int32_t* __restrict logit_q = logit_q_.data();
    int32_t* __restrict scale_index = scale_index_.data();
    float* __restrict level = level_.data();
    int32_t* __restrict coeff = coeff_.data();
    // Each pass also looks at the exponent bits of what it reads (all ones: NaN or inf);
    // no converted value is used before the check below.
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      bad |= NonFinite(logits[i]);
      logit_q[i] = RoundToInt(Clamp(logits[i], -kMaxLogit, kMaxLogit) * kLogitSteps);
    }
    for (int64_t i = 0; i < n; ++i) {
      bad |= NonFinite(log_scales[i]);
      scale_index[i] = RoundToInt((Clamp(log_scales[i], kLsMin, kLsMax) - kLsMin) * kLsSteps);
    }
    for (int64_t i = 0; i < n; ++i) {
      bad |= NonFinite(means[i]);
      level[i] = (means[i] - x_min_) * inv_bin_;
    }
    for (int64_t i = 0; i < nc; ++i) {
      bad |= NonFinite(coeffs[i]);
      coeff[i] = RoundToInt(Clamp(coeffs[i], -kMaxCoeff, kMaxCoeff) * (1 << kCoeffFracBits));
    }
    if (bad) return false;
    // c_j * x_j = c_j * (x_min + k_j * bin): the x_min part joins the mean now, the k_j
    // part when the levels are known (SubpixelModel::Prepare).
    for (int64_t p = 0; p < count; ++p) {
      for (int c = 1; c < C; ++c) {
        for (int j = 0; j < c; ++j) {
          const int32_t* coeff_row = coeff + (p * pairs_ + c * (c - 1) / 2 + j) * K;
          float* m = level + (p * C + c) * K;
          for (int i = 0; i < K; ++i) {
            m[i] += coeff_row[i] * (1.0f / (1 << kCoeffFracBits)) * x_min_levels_;
          }
        }
      }
    }
    const float lo = -spec_.num_levels - 64.0f, hi = 2.0f * spec_.num_levels + 64.0f;
    int32_t* __restrict mean = mean_.data();
    for (int64_t i = 0; i < n; ++i) {
      mean[i] = RoundToInt(Clamp(level[i], lo, hi) * (1 << kMeanFracBits));
    }
    int32_t* __restrict inv_scale = inv_scale_.data();
    int32_t* __restrict limit = limit_.data();
    for (int64_t i = 0; i < n; ++i) {
      inv_scale[i] = inv_scale_table_[scale_index[i]];
      limit[i] = limit_table_[scale_index[i]];
    }
    (kAvx2 ? ConvertWeightsAvx2 : ConvertWeights)(K, padded_, count * C, logit_q,
                                                  weight_.data(), heaviest_.data());
    return true;
  }

  // Starts bringing pixel p of the chunk at `first` into the cache. The encoder calls it
  // pixel by pixel while it codes the current chunk, so that the next Load reads the
  // parameters from the cache instead of waiting on memory (the decoder computes so much
  // more per pixel that it gains nothing from it).
  TFCOMP_INLINE void Prefetch(const MixtureParams& params, int64_t first, int64_t p) const {
    constexpr int kFloatsPerLine = 16;
    const int64_t row = spec_.channels * spec_.components, pair_row = pairs_ * spec_.components;
    for (int64_t b = 0; b < row; b += kFloatsPerLine) {
      __builtin_prefetch(params.logit_weights + (first + p) * row + b);
      __builtin_prefetch(params.means + (first + p) * row + b);
      __builtin_prefetch(params.log_scales + (first + p) * row + b);
    }
    for (int64_t b = 0; b < pair_row; b += kFloatsPerLine) {
      __builtin_prefetch(params.coeffs + (first + p) * pair_row + b);
    }
  }

  int padded() const { return padded_; }
  const int32_t* weight(int64_t p, int c) const {
    return &weight_[(p * spec_.channels + c) * padded_];
  }
  const int32_t* mean(int64_t p, int c) const { return &mean_[Row(p, c)]; }
  const int32_t* inv_scale(int64_t p, int c) const { return &inv_scale_[Row(p, c)]; }
  const int32_t* limit(int64_t p, int c) const { return &limit_[Row(p, c)]; }
  // Coefficients of channel c on earlier channel j of pixel p.
  const int32_t* coeff(int64_t p, int c, int j) const {
    return &coeff_[(p * pairs_ + c * (c - 1) / 2 + j) * spec_.components];
  }
  int heaviest(int64_t p, int c) const { return heaviest_[p * spec_.channels + c]; }
  // Snapped log-scale indexes of subpixel (p, c): K entries (no tail).
  const int32_t* scale_index(int64_t p, int c) const { return &scale_index_[Row(p, c)]; }
  int32_t inv_scale_at(int index) const { return inv_scale_table_[index]; }
  int32_t limit_at(int index) const { return limit_table_[index]; }
  int32_t scale_at(int index) const { return scale_table_[index]; }

  static constexpr int kLastScaleIndex = std::size(tables::kInvScale) - 1;
  static constexpr int32_t kMaxScale = int32_t{1} << 24;

 private:
  int64_t Row(int64_t p, int c) const { return (p * spec_.channels + c) * spec_.components; }

  const MixtureSpec& spec_;
  const int pairs_, padded_;
  const float inv_bin_, x_min_, x_min_levels_;
  int32_t inv_scale_table_[std::size(tables::kInvScale)];
  int32_t limit_table_[std::size(tables::kInvScale)];
  int32_t scale_table_[std::size(tables::kInvScale)];
  std::vector<int32_t> logit_q_, scale_index_;
  std::vector<float> level_;
  // Rows K apart, kTail zeros after the last.
  std::vector<int32_t> mean_, inv_scale_, limit_, coeff_;
  std::vector<int32_t> weight_;  // rows padded() apart, zeros past K
  std::vector<int> heaviest_;
};

// The online adaptation (see mixture_coder.h): per-context statistics, updated subpixel by
// subpixel in coding order with integer arithmetic only. Predict() gives the corrections
// of the next subpixel, Update() learns from its level; the encoder and the decoder call
// both in the same order, so their states never differ.
class Adapter {
 public:
  // Statistics are halved when a context has seen this many subpixels, so that they follow
  // the image as it changes (LOCO-I's reset).
  static constexpr int32_t kMaxCount = 1024;
  static constexpr int32_t kBiasPrior = 8;    // pseudo-counts of zero error
  static constexpr int32_t kScalePrior = 16;  // pseudo-counts of ratio 1
  static constexpr int kScaleBuckets = 16;    // predicted scale, by half octaves
  static constexpr int kSignContexts = 9;     // left and upper errors: -, 0, +
  static constexpr int kActivityContexts = 6;
  static constexpr int32_t kRatioOne = int32_t{1} << tables::kScaleRatioBits;
  // Calibration: kCalibrationBins bins of F in [0, 1), each starting at kCalibrationPrior
  // counts; counts are halved (rounding up) once a context's total reaches the maximum.
  static constexpr int kCalibrationBins = 32;
  static constexpr int kCalibrationBinShift = 24 - 5;  // F in 1/2^24, 2^5 bins
  static constexpr int32_t kCalibrationPrior = 2;
  static constexpr int32_t kCalibrationMaxTotal = 8192;

  Adapter(const MixtureSpec& spec, int64_t num_pixels, AdaptationTrace* trace)
      : flags_(spec.adaptation),
        channels_(spec.channels),
        // One row holds at most every pixel (a larger width changes nothing but memory).
        width_(std::max<int64_t>(1, spec.width > 0 ? std::min(spec.width, num_pixels)
                                                   : num_pixels)),
        errors_(static_cast<size_t>(2 * width_ * spec.channels), 0),
        bias_(static_cast<size_t>(spec.channels * kSignContexts * kScaleBuckets)),
        ratio_(static_cast<size_t>(spec.channels * kActivityContexts * kScaleBuckets)),
        counts_(static_cast<size_t>(spec.channels * kScaleBuckets * kCalibrationBins),
                kCalibrationPrior),
        cumulative_(static_cast<size_t>(spec.channels * kScaleBuckets * (kCalibrationBins + 1))),
        trace_(trace) {
    for (int ctx = 0; ctx < spec.channels * kScaleBuckets; ++ctx) Accumulate(ctx);
  }

  bool calibrates() const { return flags_ & kAdaptCalibration; }

  // `mean` and `scale`: the mixture's mean and mean scale, and `deviation`, its predicted
  // mean absolute deviation from that mean, all in 1/256 level. Returns the shift of the
  // means (1/256 level) and the step of the log-scales (1/32).
  // With calibration, *calibration is its cumulative counts (kCalibrationBins + 1 entries,
  // from 0 to the total), else nullptr.
  TFCOMP_INLINE void Predict(int64_t pixel, int c, int64_t mean, int64_t scale,
                             int64_t deviation, int32_t* bias, int* step,
                             const int32_t** calibration) {
    const int64_t y = pixel / width_, x = pixel - y * width_;
    const int32_t* row = &errors_[((y & 1) * channels_ + c) * width_];
    const int32_t* above = &errors_[((~y & 1) * channels_ + c) * width_];
    const int64_t left = x > 0 ? row[x - 1] : 0;
    const int64_t up = y > 0 ? above[x] : 0;
    const int64_t up_left = y > 0 && x > 0 ? above[x - 1] : 0;
    const int64_t up_right = y > 0 && x + 1 < width_ ? above[x + 1] : 0;
    // Half octaves of the scale: 2 log2(scale in levels), offset so bucket 0 is < 1/8 level.
    const int msb = 63 - __builtin_clzll(static_cast<uint64_t>(scale));
    const int half = msb > 0 ? static_cast<int>((scale >> (msb - 1)) & 1) : 0;
    const int scale_bucket = std::clamp(2 * msb + half - 10, 0, kScaleBuckets - 1);
    const auto sign = [](int64_t e) { return e > 128 ? 2 : e < -128 ? 0 : 1; };
    bias_index_ = (c * kSignContexts + 3 * sign(left) + sign(up)) * kScaleBuckets + scale_bucket;
    // The neighbours' mean absolute error against the predicted scale, thresholds
    // 0.5, 0.8, 1.2, 1.8, 2.7: 10 * (2|L| + 2|U| + |UL| + |UR|) against 6 * scale * t.
    const int64_t activity = 10 * (2 * std::abs(left) + 2 * std::abs(up) + std::abs(up_left) +
                                   std::abs(up_right));
    int bucket = 0;
    for (int64_t t : {30, 48, 72, 108, 162}) bucket += activity > t * scale;
    ratio_index_ = (c * kActivityContexts + bucket) * kScaleBuckets + scale_bucket;
    calibration_index_ = c * kScaleBuckets + scale_bucket;
    *calibration = calibrates() ? &cumulative_[calibration_index_ * (kCalibrationBins + 1)]
                                : nullptr;
    const Stat& b = bias_[bias_index_];
    *bias = (flags_ & kAdaptBias) ? static_cast<int32_t>(b.sum / (b.count + kBiasPrior)) : 0;
    *step = 0;
    if (flags_ & kAdaptScale) {
      const Stat& r = ratio_[ratio_index_];
      const int64_t ratio = (r.sum + int64_t{kScalePrior} * kRatioOne) / (r.count + kScalePrior);
      *step = -tables::kScaleStepsMax +
              static_cast<int>(std::upper_bound(std::begin(tables::kScaleStepBounds),
                                                std::end(tables::kScaleStepBounds), ratio) -
                               std::begin(tables::kScaleStepBounds));
    }
    pixel_x_ = x;
    row_ = y & 1;
    channel_ = c;
    mean_ = mean;
    deviation_ = std::max<int64_t>(1, deviation);
    bias_value_ = *bias;
    if (trace_) {
      trace_->bias.push_back(*bias);
      trace_->step.push_back(*step);
    }
  }

  // Learns from the level of the subpixel Predict() was last called for.
  TFCOMP_INLINE void Update(int32_t level) {
    const int64_t error = int64_t{level} * 256 - mean_;
    errors_[(row_ * channels_ + channel_) * width_ + pixel_x_] =
        static_cast<int32_t>(std::clamp<int64_t>(error, -(1 << 24), 1 << 24));
    Add(&bias_[bias_index_], error);
    // The ratio of the absolute (bias-corrected) error to the predicted one.
    const int64_t deviation = std::abs(error - bias_value_);
    Add(&ratio_[ratio_index_], std::min<int64_t>(deviation * kRatioOne / deviation_,
                                                 16 * kRatioOne));
  }

  // Learns where the level fell in the distribution: `pit`, the mean of the corrected but
  // uncalibrated CDF at the level's two edges, in 1/2^24.
  TFCOMP_INLINE void Calibrate(int64_t pit) {
    const int bin = static_cast<int>(
        std::clamp<int64_t>(pit >> kCalibrationBinShift, 0, kCalibrationBins - 1));
    int32_t* counts = &counts_[calibration_index_ * kCalibrationBins];
    ++counts[bin];
    int32_t* cumulative = &cumulative_[calibration_index_ * (kCalibrationBins + 1)];
    if (cumulative[kCalibrationBins] + 1 >= kCalibrationMaxTotal) {
      for (int b = 0; b < kCalibrationBins; ++b) counts[b] = (counts[b] + 1) / 2;
      Accumulate(calibration_index_);
    } else {
      for (int b = bin + 1; b <= kCalibrationBins; ++b) ++cumulative[b];
    }
  }

  // FNV-1a over every statistic: equal states give equal digests.
  uint64_t Digest() const {
    uint64_t h = 1469598103934665603ull;
    const auto mix = [&h](int64_t v) {
      for (int i = 0; i < 8; ++i) h = (h ^ ((static_cast<uint64_t>(v) >> (8 * i)) & 255)) *
                                      1099511628211ull;
    };
    for (const Stat& s : bias_) mix(s.sum), mix(s.count);
    for (const Stat& s : ratio_) mix(s.sum), mix(s.count);
    for (int32_t n : counts_) mix(n);
    for (int32_t e : errors_) mix(e);
    return h;
  }

 private:
  struct Stat {
    int64_t sum = 0;
    int32_t count = 0;
  };
  void Accumulate(int ctx) {
    const int32_t* counts = &counts_[ctx * kCalibrationBins];
    int32_t* cumulative = &cumulative_[ctx * (kCalibrationBins + 1)];
    cumulative[0] = 0;
    for (int b = 0; b < kCalibrationBins; ++b) cumulative[b + 1] = cumulative[b] + counts[b];
  }

  static TFCOMP_INLINE void Add(Stat* s, int64_t value) {
    s->sum += value;
    if (++s->count >= kMaxCount) {  // halves toward zero, as C++ division does
      s->sum /= 2;
      s->count /= 2;
    }
  }

  const int flags_, channels_;
  const int64_t width_;
  std::vector<int32_t> errors_;  // [2 rows][channel][width]: errors in 1/256 level
  std::vector<Stat> bias_, ratio_;
  std::vector<int32_t> counts_;      // [channel][scale bucket][bin]
  std::vector<int32_t> cumulative_;  // [channel][scale bucket][bin + 1], from 0
  AdaptationTrace* trace_;
  int64_t pixel_x_ = 0, mean_ = 0, deviation_ = 1;
  int row_ = 0, channel_ = 0, bias_index_ = 0, ratio_index_ = 0, calibration_index_ = 0;
  int32_t bias_value_ = 0;
};

// The distribution of one subpixel, prepared from its chunk's integer parameters and the
// levels of the pixel's earlier channels, then queried level by level. The encoder and the
// decoder both go through this class, so they cannot disagree.
template <bool kAvx2>
class SubpixelModel {
 public:
  explicit SubpixelModel(const MixtureSpec& spec)
      : spec_(spec), spare_((uint64_t{1} << kMixturePrecision) - spec.num_levels) {}

  // `adapter` (or nullptr): corrects the distribution of subpixel (pixel, c), `pixel` being
  // its index in the whole image (p within the chunk).
  TFCOMP_INLINE void Prepare(const ChunkParams& chunk, int64_t p, int c, const int32_t* prev,
                             Adapter* adapter = nullptr, int64_t pixel = 0) {
    n_ = chunk.padded();
    calibration_ = nullptr;
    weight_ = chunk.weight(p, c);
    inv_ = chunk.inv_scale(p, c);
    limit_ = chunk.limit(p, c);
    const int32_t* mean = chunk.mean(p, c);
    const int32_t lo = (-spec_.num_levels - 64) * (1 << kMeanFracBits);
    const int32_t hi = (2 * spec_.num_levels + 64) * (1 << kMeanFracBits);
    // Whole groups of 4 (n_ is a multiple of 4), which the compiler turns into one vector
    // operation each, without the remainder handling of a loop of unknown length.
    for (int g = 0; g < n_; g += 4) {
      int32_t shift[4] = {0, 0, 0, 0};  // sum_j c_j * k_j, in 1/4096 level
      for (int j = 0; j < c; ++j) {
        const int32_t* coeff = chunk.coeff(p, c, j) + g;
        for (int l = 0; l < 4; ++l) shift[l] += coeff[l] * prev[j];
      }
      // m = mean + 1/2 level, so that the argument at level edge k (k - 1/2) is k * 256 - m.
      for (int l = 0; l < 4; ++l) {
        m_[g + l] = std::clamp(mean[g + l] + (shift[l] >> (kCoeffFracBits - kMeanFracBits)),
                               lo, hi) +
                    (1 << (kMeanFracBits - 1));
      }
    }
    if (adapter != nullptr) Adapt(chunk, p, c, adapter, pixel, lo, hi);
    mode_ = std::clamp<int64_t>(m_[chunk.heaviest(p, c)] >> kMeanFracBits, 0,
                                spec_.num_levels - 1);
  }

  // Shifts the means and steps the log-scales by the adapter's corrections.
  TFCOMP_INLINE void Adapt(const ChunkParams& chunk, int64_t p, int c, Adapter* adapter,
                           int64_t pixel, int32_t lo, int32_t hi) {
    const int K = spec_.components;
    const int32_t* index = chunk.scale_index(p, c);
    // The weights sum to exactly 2^16; m_ carries the half level added above.
    int64_t mean = 0, scale = 0;
    for (int i = 0; i < K; ++i) {
      mean += int64_t{weight_[i]} * m_[i];
      scale += int64_t{weight_[i]} * chunk.scale_at(index[i]);
    }
    mean = (mean >> tables::kWeightBits) - (1 << (kMeanFracBits - 1));
    scale = std::max<int64_t>(1, scale >> tables::kWeightBits);
    // The error a logistic of the mean scale would make on average: 2 ln 2 scale
    // (5678 / 4096 = 1.3862). It ignores how far the components lie apart, so mixtures of
    // distant components get wider. Against counting that spread in (srec-small-v5), this
    // saved 0.9 and 1.0% on two lossless_eval photos and cost 0.1 to 0.9% on three Kodak
    // ones: kept as the simpler.
    const int64_t deviation = (scale * 5678) >> 12;
    int32_t bias;
    int step;
    adapter->Predict(pixel, c, mean, scale, deviation, &bias, &step, &calibration_);
    const int32_t half = 1 << (kMeanFracBits - 1);
    for (int i = 0; i < n_; ++i) m_[i] = std::clamp(m_[i] + bias, lo + half, hi + half);
    if (step == 0) return;
    for (int i = 0; i < K; ++i) {
      const int j = std::clamp(index[i] + step, 0, ChunkParams::kLastScaleIndex);
      inv_local_[i] = chunk.inv_scale_at(j);
      limit_local_[i] = chunk.limit_at(j);
    }
    for (int i = K; i < n_; ++i) {  // weight 0: any finite values
      inv_local_[i] = 0;
      limit_local_[i] = 1 << 30;
    }
    inv_ = inv_local_;
    limit_ = limit_local_;
  }

  // Quantized CDF at level k: 2^16 * P(level < k), strictly increasing in k.
  TFCOMP_INLINE uint32_t Cdf(int64_t k) const {
    if (k <= 0) return 0;
    if (k >= spec_.num_levels) return 1u << kMixturePrecision;
    const int32_t edge = static_cast<int32_t>(k << kMeanFracBits);
    return Scale(kAvx2 ? SumSigmoidsAvx2(edge, m_, inv_, limit_, weight_, n_)
                       : SumSigmoidsScalar(edge, m_, inv_, limit_, weight_, n_),
                 k);
  }

  // The mixture's sums at the two edges of level k (Cdf's before scaling), in one pass.
  struct Edges {
    uint64_t lo, hi;
  };
  TFCOMP_INLINE Edges Sums(int64_t k) const {
    Edges g;
    const int32_t edge = static_cast<int32_t>(k << kMeanFracBits);
    if (kAvx2) {
      SumSigmoidPairAvx2(edge, m_, inv_, limit_, weight_, n_, &g.lo, &g.hi);
    } else {
      SumSigmoidPairScalar(edge, m_, inv_, limit_, weight_, n_, &g.lo, &g.hi);
    }
    return g;
  }

  // Cdf(k) and Cdf(k + 1) from Sums(k).
  TFCOMP_INLINE void Interval(int64_t k, const Edges& g, uint32_t* lo, uint32_t* hi) const {
    *lo = k <= 0 ? 0 : Scale(g.lo, k);
    *hi = k + 1 >= spec_.num_levels ? 1u << kMixturePrecision : Scale(g.hi, k + 1);
  }
  TFCOMP_INLINE void Interval(int64_t k, uint32_t* lo, uint32_t* hi) const {
    Interval(k, Sums(k), lo, hi);
  }

  // Where level k fell in the corrected, uncalibrated distribution, for the calibration's
  // statistics: the mean of its CDF at the level's two edges (Sums(k)), in 1/2^24.
  TFCOMP_INLINE int64_t Pit(int64_t k, const Edges& g) const {
    const int64_t lo = k <= 0 ? 0 : static_cast<int64_t>(g.lo >> kSumTo24);
    const int64_t hi = k + 1 >= spec_.num_levels ? int64_t{1} << 24
                                                 : static_cast<int64_t>(g.hi >> kSumTo24);
    return (lo + hi) / 2;
  }

  // The level k with Cdf(k) <= slot < Cdf(k + 1), and those two values. The search starts
  // at the mean of the heaviest component and gallops outwards: most symbols lie near it.
  TFCOMP_INLINE int64_t Find(uint32_t slot, uint32_t* lo_cdf, uint32_t* hi_cdf) const {
    // The first probe brackets the mode's level with both its CDF values at once.
    int64_t lo = mode_, hi = mode_ + 1;
    uint32_t c_lo, c_hi;
    Interval(mode_, &c_lo, &c_hi);
    if (c_hi <= slot) {
      lo = hi;
      c_lo = c_hi;
      hi = spec_.num_levels;
      c_hi = 1u << kMixturePrecision;
    } else if (c_lo > slot) {
      hi = lo;
      c_hi = c_lo;
      lo = 0;
      c_lo = 0;
    }
    // Then interpolation between the bracket's CDF values (the CDF is close to linear over
    // a short range), alternating with bisection so that the steps stay logarithmic.
    for (bool interpolate = true; hi - lo > 1; interpolate = !interpolate) {
      int64_t mid = (lo + hi) / 2;
      if (interpolate) {
        mid = lo + static_cast<int64_t>(slot - c_lo) * (hi - lo) / (c_hi - c_lo);
        mid = std::clamp<int64_t>(mid, lo + 1, hi - 1);
      }
      const uint32_t c_mid = Cdf(mid);
      if (c_mid <= slot) {
        lo = mid;
        c_lo = c_mid;
      } else {
        hi = mid;
        c_hi = c_mid;
      }
    }
    *lo_cdf = c_lo;
    *hi_cdf = c_hi;
    return lo;
  }

 private:
  // Every level keeps frequency >= 1: floor(F * (2^16 - L)) + k, with F = G(F) under
  // calibration (G piecewise linear through the cumulative counts, in 1/2^24: G(0) = 0,
  // G(1) = 1, non-decreasing, so the CDF stays strictly increasing).
  inline uint32_t Scale(uint64_t g, int64_t k) const {
    if (calibration_ == nullptr) {
      return static_cast<uint32_t>(
          ((g * spare_) >> (tables::kWeightBits + tables::kSigmoidBits)) + k);
    }
    constexpr int kShift = Adapter::kCalibrationBinShift;
    const int64_t f = static_cast<int64_t>(g >> kSumTo24);
    const int64_t bin = std::min<int64_t>(f >> kShift, Adapter::kCalibrationBins - 1);
    const int64_t below = calibration_[bin], in_bin = calibration_[bin + 1] - below;
    const int64_t total = calibration_[Adapter::kCalibrationBins];
    // (below + in_bin * fraction of the bin) / total, in 1/2^24: < 2^39 before the division.
    const int64_t mapped =
        (((below << kShift) + in_bin * (f - (bin << kShift))) << (24 - kShift)) / total;
    return static_cast<uint32_t>(((static_cast<uint64_t>(mapped) * spare_) >> 24) + k);
  }

  // The mixture's sums are in 1/2^40 (weights 2^16 times sigmoids 2^24); F in 1/2^24.
  static constexpr int kSumTo24 = tables::kWeightBits + tables::kSigmoidBits - 24;

  const MixtureSpec& spec_;
  const uint64_t spare_;
  const int32_t* weight_ = nullptr;
  const int32_t* inv_ = nullptr;
  const int32_t* limit_ = nullptr;
  const int32_t* calibration_ = nullptr;  // the adapter's cumulative counts, or nullptr
  alignas(32) int32_t m_[kMixtureMaxComponents];
  alignas(32) int32_t inv_local_[kMixtureMaxComponents];
  alignas(32) int32_t limit_local_[kMixtureMaxComponents];
  int n_ = 0;
  int64_t mode_ = 0;
};

std::string Str(int64_t v) { return std::to_string(v); }

const char kBadParams[] = "mixture parameters must be finite";

}  // namespace

void SetMixtureSimd(bool enabled) { use_simd = enabled && CpuHasAvx2(); }
bool MixtureSimdEnabled() { return use_simd; }

std::string ValidateMixtureSpec(const MixtureSpec& s) {
  if (s.num_levels < 2 || s.num_levels > kMixtureMaxLevels) {
    return "num_levels must be in [2, 4096], got " + Str(s.num_levels);
  }
  if (!(std::fabs(s.x_min) <= 1e6) || !(std::fabs(s.x_max) <= 1e6) || !(s.x_max > s.x_min)) {
    return "need x_min < x_max, both within [-1e6, 1e6]";
  }
  if (s.channels < 1 || s.channels > kMixtureMaxChannels) {
    return "channels must be in [1, 4], got " + Str(s.channels);
  }
  if (s.components < 1 || s.components > kMixtureMaxComponents) {
    return "components must be in [1, 64], got " + Str(s.components);
  }
  if (s.adaptation < 0 || s.adaptation > kAdaptAll) {
    return "adaptation must be a combination of the flags 1 (bias), 2 (scale) and 4 "
           "(calibration), got " + Str(s.adaptation);
  }
  if (s.width < 0) return "width must be >= 0, got " + Str(s.width);
  return "";
}

namespace {

template <bool kAvx2>
TFCOMP_INLINE bool EncodeLoop(const MixtureSpec& spec, const MixtureParams& params,
                              const int32_t* symbols, int64_t num_pixels, std::string* out) {
  const int C = spec.channels;
  ChunkParams chunk(spec);
  SubpixelModel<kAvx2> model(spec);
  RansEncoder enc;
  // rANS codes backwards: chunks, pixels and channels in reverse.
  for (int64_t first = (num_pixels - 1) / ChunkParams::kPixels * ChunkParams::kPixels;
       first >= 0; first -= ChunkParams::kPixels) {
    const int64_t count = std::min(ChunkParams::kPixels, num_pixels - first);
    if (!chunk.template Load<kAvx2>(params, first, count)) return false;
    const int64_t next = first - ChunkParams::kPixels;
    for (int64_t p = count - 1; p >= 0; --p) {
      if (next >= 0) chunk.Prefetch(params, next, p);
      const int32_t* pixel = symbols + (first + p) * C;
      for (int c = C - 1; c >= 0; --c) {
        model.Prepare(chunk, p, c, pixel);
        uint32_t lo, hi;
        model.Interval(pixel[c], &lo, &hi);
        enc.Put(static_cast<int>(((first + p) * C + c) & 1), lo, hi - lo, kMixturePrecision);
      }
    }
  }
  enc.Finish(out);
  return true;
}

// With adaptation, each subpixel's distribution depends on every subpixel before it, but
// rANS codes backwards: a forward pass adapts and records each interval, then the
// intervals are coded in reverse.
template <bool kAvx2>
TFCOMP_INLINE bool EncodeAdaptiveLoop(const MixtureSpec& spec, const MixtureParams& params,
                                      const int32_t* symbols, int64_t num_pixels,
                                      std::string* out, AdaptationTrace* trace) {
  const int C = spec.channels;
  ChunkParams chunk(spec);
  SubpixelModel<kAvx2> model(spec);
  Adapter adapter(spec, num_pixels, trace);
  std::vector<uint32_t> intervals(static_cast<size_t>(2 * num_pixels * C));
  for (int64_t first = 0; first < num_pixels; first += ChunkParams::kPixels) {
    const int64_t count = std::min(ChunkParams::kPixels, num_pixels - first);
    if (!chunk.template Load<kAvx2>(params, first, count)) return false;
    for (int64_t p = 0; p < count; ++p) {
      const int32_t* pixel = symbols + (first + p) * C;
      for (int c = 0; c < C; ++c) {
        model.Prepare(chunk, p, c, pixel, &adapter, first + p);
        uint32_t* interval = &intervals[2 * ((first + p) * C + c)];
        const auto sums = model.Sums(pixel[c]);  // for the interval and the calibration
        model.Interval(pixel[c], sums, &interval[0], &interval[1]);
        adapter.Update(pixel[c]);
        if (adapter.calibrates()) adapter.Calibrate(model.Pit(pixel[c], sums));
      }
    }
  }
  if (trace) trace->digest = adapter.Digest();
  RansEncoder enc;
  for (int64_t i = num_pixels * C - 1; i >= 0; --i) {
    enc.Put(static_cast<int>(i & 1), intervals[2 * i], intervals[2 * i + 1] - intervals[2 * i],
            kMixturePrecision);
  }
  enc.Finish(out);
  return true;
}

// Returns "" or the error; `dec` is positioned after the header.
template <bool kAvx2>
TFCOMP_INLINE std::string DecodeLoop(const MixtureSpec& spec, const MixtureParams& params,
                                     RansDecoder& dec, int64_t num_pixels, int32_t* symbols,
                                     AdaptationTrace* trace) {
  const int C = spec.channels;
  ChunkParams chunk(spec);
  SubpixelModel<kAvx2> model(spec);
  std::vector<Adapter> adapter;  // one, or none without adaptation
  if (spec.adaptation) adapter.emplace_back(spec, num_pixels, trace);
  Adapter* adapt = adapter.empty() ? nullptr : &adapter[0];
  for (int64_t first = 0; first < num_pixels; first += ChunkParams::kPixels) {
    const int64_t count = std::min(ChunkParams::kPixels, num_pixels - first);
    if (!chunk.template Load<kAvx2>(params, first, count)) return kBadParams;
    for (int64_t p = 0; p < count; ++p) {
      int32_t* pixel = symbols + (first + p) * C;
      for (int c = 0; c < C; ++c) {
        model.Prepare(chunk, p, c, pixel, adapt, first + p);
        const int64_t i = (first + p) * C + c;
        const int lane = static_cast<int>(i & 1);
        uint32_t lo, hi;
        pixel[c] = static_cast<int32_t>(model.Find(dec.Peek(lane, kMixturePrecision), &lo, &hi));
        if (!dec.Advance(lane, lo, hi - lo, kMixturePrecision)) {
          return "corrupted or truncated stream: it ended after " + Str(i) + " of " +
                 Str(num_pixels * C) + " subpixels";
        }
        if (adapt) {
          adapt->Update(pixel[c]);
          if (adapt->calibrates()) {
            adapt->Calibrate(model.Pit(pixel[c], model.Sums(pixel[c])));
          }
        }
      }
    }
  }
  if (trace && adapt) trace->digest = adapt->Digest();
  return "";
}

TFCOMP_AVX2 bool EncodeAvx2(const MixtureSpec& spec, const MixtureParams& params,
                            const int32_t* symbols, int64_t num_pixels, std::string* out,
                            AdaptationTrace* trace) {
  return spec.adaptation
             ? EncodeAdaptiveLoop<true>(spec, params, symbols, num_pixels, out, trace)
             : EncodeLoop<true>(spec, params, symbols, num_pixels, out);
}
bool EncodeBaseline(const MixtureSpec& spec, const MixtureParams& params,
                    const int32_t* symbols, int64_t num_pixels, std::string* out,
                    AdaptationTrace* trace) {
  return spec.adaptation
             ? EncodeAdaptiveLoop<false>(spec, params, symbols, num_pixels, out, trace)
             : EncodeLoop<false>(spec, params, symbols, num_pixels, out);
}
TFCOMP_AVX2 std::string DecodeAvx2(const MixtureSpec& spec, const MixtureParams& params,
                                   RansDecoder& dec, int64_t num_pixels, int32_t* symbols,
                                   AdaptationTrace* trace) {
  return DecodeLoop<true>(spec, params, dec, num_pixels, symbols, trace);
}
std::string DecodeBaseline(const MixtureSpec& spec, const MixtureParams& params,
                           RansDecoder& dec, int64_t num_pixels, int32_t* symbols,
                           AdaptationTrace* trace) {
  return DecodeLoop<false>(spec, params, dec, num_pixels, symbols, trace);
}

}  // namespace

std::string MixtureEncode(const MixtureSpec& spec, const MixtureParams& params,
                          const int32_t* symbols, int64_t num_pixels, std::string* out,
                          AdaptationTrace* trace) {
  std::string error = ValidateMixtureSpec(spec);
  if (!error.empty()) return error;
  for (int64_t i = 0; i < num_pixels * spec.channels; ++i) {
    if (symbols[i] < 0 || symbols[i] >= spec.num_levels) {
      return "symbol " + Str(symbols[i]) + " at position " + Str(i) + " is outside [0, " +
             Str(spec.num_levels) + ")";
    }
  }
  const bool ok = use_simd ? EncodeAvx2(spec, params, symbols, num_pixels, out, trace)
                           : EncodeBaseline(spec, params, symbols, num_pixels, out, trace);
  return ok ? "" : kBadParams;
}

std::string MixtureDecode(const MixtureSpec& spec, const MixtureParams& params,
                          const char* data, size_t size, int64_t num_pixels,
                          int32_t* symbols, AdaptationTrace* trace) {
  std::string error = ValidateMixtureSpec(spec);
  if (!error.empty()) return error;
  RansDecoder dec(data, size);
  if (!dec.ok()) return "corrupted or truncated stream: bad header";
  error = use_simd ? DecodeAvx2(spec, params, dec, num_pixels, symbols, trace)
                   : DecodeBaseline(spec, params, dec, num_pixels, symbols, trace);
  if (!error.empty()) return error;
  if (!dec.Finish()) return "corrupted stream: it does not end where the subpixels end";
  return "";
}


std::string MixtureCdf(const MixtureSpec& spec, const MixtureParams& params, int64_t pixel,
                       int channel, const int32_t* prev, int32_t* cdf) {
  std::string error = ValidateMixtureSpec(spec);
  if (!error.empty()) return error;
  ChunkParams chunk(spec);
  if (!chunk.Load<false>(params, pixel, 1)) return kBadParams;
  SubpixelModel<false> model(spec);
  model.Prepare(chunk, 0, channel, prev);
  for (int k = 0; k <= spec.num_levels; ++k) cdf[k] = static_cast<int32_t>(model.Cdf(k));
  return "";
}

}  // namespace tfcomp
