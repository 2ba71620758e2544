#include "mixture_coder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <vector>

#include "fixed_point_tables.h"
#include "rans.h"

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

// Rounds to the nearest integer (ties to even) for |x| < 2^51, exactly and without a libm
// call: adding 1.5 * 2^52 leaves round(x) in the low bits of the double's mantissa. Every
// argument is clamped to a far smaller range first.
inline int64_t RoundToInt(double x) {
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  const double y = x + kMagic;
  int64_t bits, magic_bits;
  std::memcpy(&bits, &y, sizeof(bits));
  std::memcpy(&magic_bits, &kMagic, sizeof(magic_bits));
  return bits - magic_bits;
}

inline double Clamp(double x, double lo, double hi) { return std::min(std::max(x, lo), hi); }

// sigmoid(t / 4096) * 2^24, by linear interpolation in the table.
inline int64_t Sigmoid(int64_t t) {
  constexpr int64_t kLow = int64_t{tables::kSigmoidRange} << kArgFracBits;
  constexpr int kShift = kArgFracBits - tables::kSigmoidStepsLog2;
  const int64_t idx = std::clamp<int64_t>(t + kLow, 0, 2 * kLow);
  const int64_t i = idx >> kShift, f = idx & ((1 << kShift) - 1);
  return kSigmoid[i] + (((kSigmoid[i + 1] - kSigmoid[i]) * f) >> kShift);
}

// One mixture component of one subpixel, in integers, before the channel-autoregressive
// shift (which needs the levels of the pixel's earlier channels).
struct Component {
  int64_t weight;     // normalised: the weights of a subpixel sum to exactly 2^16
  int64_t mean;       // level of the mean in 1/256, plus the shift's constant part
  int64_t inv_scale;  // 1 / scale in levels^-1, in 1/65536
  int32_t coeff[kMixtureMaxChannels - 1];  // in 1/4096, for the earlier channels
};

// float32 counterparts, for the bulk conversions that the compiler vectorizes: exact
// IEEE single-precision arithmetic, so just as deterministic. Valid for |x| < 2^22.
inline int32_t RoundToInt(float x) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  const float y = x + kMagic;
  int32_t bits, magic_bits;
  std::memcpy(&bits, &y, sizeof(bits));
  std::memcpy(&magic_bits, &kMagic, sizeof(magic_bits));
  return bits - magic_bits;
}

inline float Clamp(float x, float lo, float hi) { return std::min(std::max(x, lo), hi); }

// True if no value is NaN or infinite (exponent bits all ones), in a vectorizable loop.
inline bool AllFinite(const float* __restrict x, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &x[i], sizeof(bits));
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

// Integer parameters of a chunk of pixels: everything about their distributions that does
// not depend on the symbols, converted once per chunk in vectorizable passes.
class ChunkParams {
 public:
  static constexpr int64_t kPixels = 256;

  explicit ChunkParams(const MixtureSpec& spec)
      : spec_(spec),
        pairs_(spec.channels * (spec.channels - 1) / 2),
        inv_bin_(static_cast<float>((spec.num_levels - 1) / (spec.x_max - spec.x_min))),
        x_min_(static_cast<float>(spec.x_min)),
        x_min_levels_(x_min_ * inv_bin_),
        logit_q_(kPixels * spec.channels * spec.components),
        scale_index_(logit_q_.size()),
        level_(logit_q_.size()),
        coeff_q_(kPixels * pairs_ * spec.components),
        comps_(logit_q_.size()),
        counts_(kPixels * spec.channels) {
    // Inverse scales in levels^-1 for every snapped log-scale, for this level grid.
    const double bin = (spec.x_max - spec.x_min) / (spec.num_levels - 1);
    for (size_t i = 0; i < std::size(inv_scale_); ++i) {
      inv_scale_[i] = RoundToInt(std::min(tables::kInvScale[i] * bin, kMaxInvScale) *
                                 (1 << kInvScaleBits));
    }
  }

  // Converts pixels [first, first + count); false if a parameter is not finite.
  bool Load(const MixtureParams& params, int64_t first, int64_t count) {
    const int K = spec_.components, C = spec_.channels;
    const int64_t n = count * C * K, nc = count * pairs_ * K;
    const float* logits = params.logit_weights + first * C * K;
    const float* means = params.means + first * C * K;
    const float* log_scales = params.log_scales + first * C * K;
    const float* coeffs = params.coeffs + first * pairs_ * K;
    if (!AllFinite(logits, n) || !AllFinite(means, n) || !AllFinite(log_scales, n) ||
        !AllFinite(coeffs, nc)) {
      return false;
    }
    constexpr float kLogitSteps = tables::kWeightLogitSteps;
    constexpr float kLsMin = tables::kLogScaleMin, kLsMax = tables::kLogScaleMax;
    constexpr float kLsSteps = tables::kLogScaleSteps;
    int32_t* __restrict logit_q = logit_q_.data();
    int32_t* __restrict scale_index = scale_index_.data();
    float* __restrict level = level_.data();
    int32_t* __restrict coeff_q = coeff_q_.data();
    for (int64_t i = 0; i < n; ++i) {
      logit_q[i] = RoundToInt(Clamp(logits[i], -kMaxLogit, kMaxLogit) * kLogitSteps);
    }
    for (int64_t i = 0; i < n; ++i) {
      scale_index[i] = RoundToInt((Clamp(log_scales[i], kLsMin, kLsMax) - kLsMin) * kLsSteps);
    }
    for (int64_t i = 0; i < n; ++i) level[i] = (means[i] - x_min_) * inv_bin_;
    for (int64_t i = 0; i < nc; ++i) {
      coeff_q[i] = RoundToInt(Clamp(coeffs[i], -kMaxCoeff, kMaxCoeff) * (1 << kCoeffFracBits));
    }
    const float lo = -spec_.num_levels - 64.0f, hi = 2.0f * spec_.num_levels + 64.0f;
    constexpr int32_t kLastWeight = sizeof(tables::kExpNegLogit) / sizeof(int32_t) - 1;
    for (int64_t s = 0; s < count * C; ++s) {
      const int c = static_cast<int>(s % C);
      const int64_t base = s * K;
      const int32_t* coeff = coeff_q + ((s / C) * pairs_ + c * (c - 1) / 2) * K;
      int32_t max_logit = INT32_MIN;
      for (int i = 0; i < K; ++i) max_logit = std::max(max_logit, logit_q[base + i]);
      int64_t weights[kMixtureMaxComponents], sum = 0;
      for (int i = 0; i < K; ++i) {
        weights[i] = tables::kExpNegLogit[std::min(max_logit - logit_q[base + i], kLastWeight)];
        sum += weights[i];
      }
      // Renormalise to exactly 2^16 (one division per subpixel, a shift per CDF value),
      // keep components of at least 2^-10 and give the remainder to the heaviest.
      const int64_t reciprocal = (int64_t{1} << (tables::kWeightBits + 32)) / sum;
      Component* out = &comps_[base];
      int active = 0, heaviest = 0;
      int64_t total = 0;
      int64_t heaviest_weight = -1;
      for (int i = 0; i < K; ++i) {
        // Branch-free compaction: always write, keep only if heavy enough.
        const int64_t w = (weights[i] * reciprocal) >> 32;
        const bool keep = w >= kMinWeight;
        Component& comp = out[active];
        comp.weight = w;
        // c_j * x_j = c_j * (x_min + k_j * bin): the x_min part is known now.
        float mean = level[base + i];
        for (int j = 0; j < c; ++j) {
          comp.coeff[j] = coeff[j * K + i];
          mean += comp.coeff[j] * (1.0f / (1 << kCoeffFracBits)) * x_min_levels_;
        }
        comp.mean = RoundToInt(Clamp(mean, lo, hi) * (1 << kMeanFracBits));
        comp.inv_scale = inv_scale_[scale_index[base + i]];
        const bool heavier = keep & (w > heaviest_weight);
        heaviest = heavier ? active : heaviest;
        heaviest_weight = heavier ? w : heaviest_weight;
        total += keep ? w : 0;
        active += keep;
      }
      out[heaviest].weight += (int64_t{1} << tables::kWeightBits) - total;
      counts_[s] = active;
    }
    return true;
  }

  const Component* comps(int64_t p, int c) const {
    return &comps_[(p * spec_.channels + c) * spec_.components];
  }
  int count(int64_t p, int c) const { return counts_[p * spec_.channels + c]; }

 private:
  const MixtureSpec& spec_;
  const int pairs_;
  const float inv_bin_, x_min_, x_min_levels_;
  int64_t inv_scale_[std::size(tables::kInvScale)];
  std::vector<int32_t> logit_q_, scale_index_;
  std::vector<float> level_;
  std::vector<int32_t> coeff_q_;
  std::vector<Component> comps_;
  std::vector<int> counts_;
};

// The distribution of one subpixel, prepared from its chunk's integer parameters and the
// levels of the pixel's earlier channels, then queried level by level. The encoder and the
// decoder both go through this class, so they cannot disagree.
class SubpixelModel {
 public:
  explicit SubpixelModel(const MixtureSpec& spec)
      : spec_(spec), spare_((uint64_t{1} << kMixturePrecision) - spec.num_levels) {}

  void Prepare(const ChunkParams& chunk, int64_t p, int c, const int32_t* prev) {
    const Component* comps = chunk.comps(p, c);
    active_ = chunk.count(p, c);
    const int64_t lo = int64_t{-spec_.num_levels - 64} * (1 << kMeanFracBits);
    const int64_t hi = int64_t{2 * spec_.num_levels + 64} * (1 << kMeanFracBits);
    int64_t best = -1;
    for (int i = 0; i < active_; ++i) {
      const Component& comp = comps[i];
      int64_t shift = 0;  // sum_j c_j * k_j, in 1/4096 level
      for (int j = 0; j < c; ++j) shift += static_cast<int64_t>(comp.coeff[j]) * prev[j];
      const int64_t mean = std::clamp<int64_t>(
          comp.mean + (shift >> (kCoeffFracBits - kMeanFracBits)), lo, hi);
      // Argument at level edge k: (k - 1/2 - mean) * inv_scale in 1/4096 = k * slope - base.
      weight_[i] = comp.weight;
      slope_[i] = comp.inv_scale << kMeanFracBits;
      base_[i] = (mean + (1 << (kMeanFracBits - 1))) * comp.inv_scale;
      if (comp.weight > best) {
        best = comp.weight;
        mode_ = std::clamp<int64_t>((mean + (1 << (kMeanFracBits - 1))) >> kMeanFracBits, 0,
                                    spec_.num_levels - 1);
      }
    }
  }

  // Quantized CDF at level k: 2^16 * P(level < k), strictly increasing in k.
  inline uint32_t Cdf(int64_t k) const {
    if (k <= 0) return 0;
    if (k >= spec_.num_levels) return 1u << kMixturePrecision;
    uint64_t g = 0;  // sum of weight (2^16 in all) * sigmoid (2^24)
    for (int i = 0; i < active_; ++i) {
      g += static_cast<uint64_t>(weight_[i]) * Sigmoid((k * slope_[i] - base_[i]) >> kArgShift);
    }
    return Scale(g, k);
  }

  // Cdf(k) and Cdf(k + 1) in one pass, for the encoder.
  inline void Interval(int64_t k, uint32_t* lo, uint32_t* hi) const {
    uint64_t g0 = 0, g1 = 0;
    for (int i = 0; i < active_; ++i) {
      const int64_t t = k * slope_[i] - base_[i];
      g0 += static_cast<uint64_t>(weight_[i]) * Sigmoid(t >> kArgShift);
      g1 += static_cast<uint64_t>(weight_[i]) * Sigmoid((t + slope_[i]) >> kArgShift);
    }
    *lo = k <= 0 ? 0 : Scale(g0, k);
    *hi = k + 1 >= spec_.num_levels ? 1u << kMixturePrecision : Scale(g1, k + 1);
  }

  // The level k with Cdf(k) <= slot < Cdf(k + 1), and those two values. The search starts
  // at the mean of the heaviest component and gallops outwards: most symbols lie near it.
  inline int64_t Find(uint32_t slot, uint32_t* lo_cdf, uint32_t* hi_cdf) const {
    int64_t lo = mode_, hi = mode_;
    uint32_t c_lo = Cdf(lo), c_hi = c_lo;
    if (c_lo <= slot) {  // the answer is in [mode, L): gallop up past the slot
      for (int64_t step = 1;; step *= 2) {
        hi = std::min<int64_t>(lo + step, spec_.num_levels);
        c_hi = Cdf(hi);
        if (c_hi > slot) break;
        lo = hi;
        c_lo = c_hi;
      }
    } else {  // the answer is in [0, mode): gallop down
      for (int64_t step = 1;; step *= 2) {
        lo = std::max<int64_t>(hi - step, 0);
        c_lo = Cdf(lo);
        if (c_lo <= slot) break;
        hi = lo;
        c_hi = c_lo;
      }
    }
    while (hi - lo > 1) {
      const int64_t mid = (lo + hi) / 2;
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
  static constexpr int kArgShift = kMeanFracBits + kInvScaleBits - kArgFracBits;

  // Every level keeps frequency >= 1: floor(F * (2^16 - L)) + k.
  inline uint32_t Scale(uint64_t g, int64_t k) const {
    return static_cast<uint32_t>(((g * spare_) >> (tables::kWeightBits + tables::kSigmoidBits)) +
                                 k);
  }

  const MixtureSpec& spec_;
  const uint64_t spare_;
  int64_t weight_[kMixtureMaxComponents], slope_[kMixtureMaxComponents],
      base_[kMixtureMaxComponents];
  int active_ = 0;
  int64_t mode_ = 0;
};

std::string Str(int64_t v) { return std::to_string(v); }

const char kBadParams[] = "mixture parameters must be finite";

}  // namespace

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
  return "";
}

std::string MixtureEncode(const MixtureSpec& spec, const MixtureParams& params,
                          const int32_t* symbols, int64_t num_pixels, std::string* out) {
  std::string error = ValidateMixtureSpec(spec);
  if (!error.empty()) return error;
  const int C = spec.channels;
  for (int64_t i = 0; i < num_pixels * C; ++i) {
    if (symbols[i] < 0 || symbols[i] >= spec.num_levels) {
      return "symbol " + Str(symbols[i]) + " at position " + Str(i) + " is outside [0, " +
             Str(spec.num_levels) + ")";
    }
  }
  ChunkParams chunk(spec);
  SubpixelModel model(spec);
  RansEncoder enc;
  // rANS codes backwards: chunks, pixels and channels in reverse.
  for (int64_t first = (num_pixels - 1) / ChunkParams::kPixels * ChunkParams::kPixels;
       first >= 0; first -= ChunkParams::kPixels) {
    const int64_t count = std::min(ChunkParams::kPixels, num_pixels - first);
    if (!chunk.Load(params, first, count)) return kBadParams;
    for (int64_t p = count - 1; p >= 0; --p) {
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
  return "";
}

std::string MixtureDecode(const MixtureSpec& spec, const MixtureParams& params,
                          const char* data, size_t size, int64_t num_pixels,
                          int32_t* symbols) {
  std::string error = ValidateMixtureSpec(spec);
  if (!error.empty()) return error;
  RansDecoder dec(data, size);
  if (!dec.ok()) return "corrupted or truncated stream: bad header";
  const int C = spec.channels;
  ChunkParams chunk(spec);
  SubpixelModel model(spec);
  for (int64_t first = 0; first < num_pixels; first += ChunkParams::kPixels) {
    const int64_t count = std::min(ChunkParams::kPixels, num_pixels - first);
    if (!chunk.Load(params, first, count)) return kBadParams;
    for (int64_t p = 0; p < count; ++p) {
      int32_t* pixel = symbols + (first + p) * C;
      for (int c = 0; c < C; ++c) {
        model.Prepare(chunk, p, c, pixel);
        const int64_t i = (first + p) * C + c;
        const int lane = static_cast<int>(i & 1);
        uint32_t lo, hi;
        pixel[c] = static_cast<int32_t>(model.Find(dec.Peek(lane, kMixturePrecision), &lo, &hi));
        if (!dec.Advance(lane, lo, hi - lo, kMixturePrecision)) {
          return "corrupted or truncated stream: it ended after " + Str(i) + " of " +
                 Str(num_pixels * C) + " subpixels";
        }
      }
    }
  }
  if (!dec.Finish()) return "corrupted stream: it does not end where the subpixels end";
  return "";
}

std::string MixtureCdf(const MixtureSpec& spec, const MixtureParams& params, int64_t pixel,
                       int channel, const int32_t* prev, int32_t* cdf) {
  std::string error = ValidateMixtureSpec(spec);
  if (!error.empty()) return error;
  ChunkParams chunk(spec);
  if (!chunk.Load(params, pixel, 1)) return kBadParams;
  SubpixelModel model(spec);
  model.Prepare(chunk, 0, channel, prev);
  for (int k = 0; k <= spec.num_levels; ++k) cdf[k] = static_cast<int32_t>(model.Cdf(k));
  return "";
}

}  // namespace tfcomp
