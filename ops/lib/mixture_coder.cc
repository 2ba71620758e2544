#include "mixture_coder.h"

#include <algorithm>
#include <cmath>

#include "fixed_point_tables.h"
#include "rans.h"

namespace tfcomp {
namespace {

using tables::kSigmoid;

constexpr int kMeanFracBits = 8;    // means in 1/256 of a level
constexpr int kArgFracBits = 12;    // sigmoid arguments in 1/4096
constexpr int kInvScaleBits = 16;   // inverse scales (levels^-1) in 1/65536
constexpr double kMaxInvScale = 256.0;  // scales below 1/256 level are all "certain"
constexpr double kCoeffSteps = 4096.0;
constexpr double kMaxCoeff = 4.0;
constexpr double kMaxLogit = 64.0;

// floor(x + 0.5) without a libm call; x is always clamped to a modest range first.
inline int64_t RoundToInt(double x) {
  const double y = x + 0.5;
  const int64_t r = static_cast<int64_t>(y);
  return r - (static_cast<double>(r) > y);
}

inline int64_t Sigmoid(int64_t t) {  // t in 1/4096; result in 1/2^24
  constexpr int64_t kLow = int64_t{tables::kSigmoidRange} << kArgFracBits;
  constexpr int kShift = kArgFracBits - tables::kSigmoidStepsLog2;
  const int64_t idx = std::clamp<int64_t>(t + kLow, 0, 2 * kLow);
  const int64_t i = idx >> kShift, f = idx & ((1 << kShift) - 1);
  return kSigmoid[i] + (((kSigmoid[i + 1] - kSigmoid[i]) * f) >> kShift);
}

// The distribution of one subpixel, prepared once and then queried level by level. The
// encoder and the decoder both go through this class, so they cannot disagree.
class SubpixelModel {
 public:
  explicit SubpixelModel(const MixtureSpec& spec)
      : spec_(spec),
        bin_((spec.x_max - spec.x_min) / (spec.num_levels - 1)),
        inv_bin_(1.0 / bin_),
        spare_((uint64_t{1} << kMixturePrecision) - spec.num_levels) {}

  // Returns false if a parameter is not finite.
  bool Prepare(const MixtureParams& params, int64_t pixel, int channel, const int32_t* prev) {
    const int K = spec_.components, C = spec_.channels;
    const int64_t base = (pixel * C + channel) * K;
    const int64_t pairs = static_cast<int64_t>(C) * (C - 1) / 2;
    const int64_t coeff_base = (pixel * pairs + channel * (channel - 1) / 2) * K;
    int64_t logit_q[kMixtureMaxComponents];
    int64_t max_logit = INT64_MIN;
    for (int i = 0; i < K; ++i) {
      const double l = params.logit_weights[base + i];
      if (!std::isfinite(l)) return false;
      logit_q[i] = RoundToInt(std::clamp(l, -kMaxLogit, kMaxLogit) * tables::kWeightLogitSteps);
      max_logit = std::max(max_logit, logit_q[i]);
    }
    constexpr int64_t kLastWeight = sizeof(tables::kExpNegLogit) / sizeof(int32_t) - 1;
    active_ = 0;
    int64_t weight_sum = 0;
    for (int i = 0; i < K; ++i) {
      const double mean = params.means[base + i], log_scale = params.log_scales[base + i];
      if (!std::isfinite(mean) || !std::isfinite(log_scale)) return false;
      const int64_t d = max_logit - logit_q[i];
      if (d > kLastWeight || tables::kExpNegLogit[d] == 0) continue;
      double mu = mean;
      for (int j = 0; j < channel; ++j) {
        const double c = params.coeffs[coeff_base + j * K + i];
        if (!std::isfinite(c)) return false;
        const double c_snapped = RoundToInt(std::clamp(c, -kMaxCoeff, kMaxCoeff) * kCoeffSteps) /
                                 kCoeffSteps;
        mu += c_snapped * (spec_.x_min + prev[j] * bin_);
      }
      const double level = std::clamp((mu - spec_.x_min) * inv_bin_, -spec_.num_levels - 64.0,
                                      2.0 * spec_.num_levels + 64.0);
      const int64_t ls = RoundToInt(
          (std::clamp(log_scale, double{tables::kLogScaleMin}, double{tables::kLogScaleMax}) -
           tables::kLogScaleMin) * tables::kLogScaleSteps);
      const double inv_scale = std::min(tables::kInvScale[ls] * bin_, kMaxInvScale);
      Component& comp = comps_[active_++];
      comp.weight = tables::kExpNegLogit[d];
      comp.weight_is_max = d == 0;
      const int64_t mean_q = RoundToInt(level * (1 << kMeanFracBits));
      const int64_t inv_q = RoundToInt(inv_scale * (1 << kInvScaleBits));
      // Argument at level edge k: ((k - 1/2 - mean) * inv) in 1/4096 = (k * slope - base).
      comp.slope = inv_q << kMeanFracBits;
      comp.base = (mean_q + (1 << (kMeanFracBits - 1))) * inv_q;
      weight_sum += comp.weight;
    }
    // Renormalise the weights to sum to exactly 2^16 so a shift replaces a division per
    // CDF value; the largest weight (always 2^16 before) absorbs the rounding.
    const int64_t reciprocal = (int64_t{1} << (tables::kWeightBits + 32)) / weight_sum;
    int64_t total = 0;
    for (int i = 0; i < active_; ++i) {
      comps_[i].weight = (comps_[i].weight * reciprocal) >> 32;
      total += comps_[i].weight;
    }
    for (int i = 0; i < active_; ++i) {
      if (comps_[i].weight_is_max) {
        comps_[i].weight += (int64_t{1} << tables::kWeightBits) - total;
        break;
      }
    }
    return true;
  }

  // Quantized CDF at level k: 2^16 * P(level < k), strictly increasing in k.
  inline uint32_t Cdf(int64_t k) const {
    if (k <= 0) return 0;
    if (k >= spec_.num_levels) return 1u << kMixturePrecision;
    constexpr int kShift = kMeanFracBits + kInvScaleBits - kArgFracBits;
    uint64_t g = 0;  // sum of weight (2^16 total) * sigmoid (2^24)
    for (int i = 0; i < active_; ++i) {
      const Component& c = comps_[i];
      g += static_cast<uint64_t>(c.weight) * Sigmoid((k * c.slope - c.base) >> kShift);
    }
    return static_cast<uint32_t>(((g * spare_) >> (tables::kWeightBits + tables::kSigmoidBits)) +
                                 k);
  }

 private:
  struct Component {
    int64_t weight, slope, base;
    bool weight_is_max;
  };
  const MixtureSpec& spec_;
  const double bin_, inv_bin_;
  const uint64_t spare_;
  Component comps_[kMixtureMaxComponents];
  int active_ = 0;
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
  SubpixelModel model(spec);
  RansEncoder enc;
  for (int64_t p = num_pixels - 1; p >= 0; --p) {
    const int32_t* pixel = symbols + p * C;
    for (int c = C - 1; c >= 0; --c) {
      if (!model.Prepare(params, p, c, pixel)) return kBadParams;
      const uint32_t lo = model.Cdf(pixel[c]), hi = model.Cdf(pixel[c] + 1);
      enc.Put(static_cast<int>((p * C + c) & 1), lo, hi - lo, kMixturePrecision);
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
  SubpixelModel model(spec);
  for (int64_t p = 0; p < num_pixels; ++p) {
    int32_t* pixel = symbols + p * C;
    for (int c = 0; c < C; ++c) {
      if (!model.Prepare(params, p, c, pixel)) return kBadParams;
      const int lane = static_cast<int>((p * C + c) & 1);
      const uint32_t slot = dec.Peek(lane, kMixturePrecision);
      // Largest level whose CDF is <= slot; cdf(0) = 0 <= slot < 2^16 = cdf(L).
      int64_t lo = 0, hi = spec.num_levels;
      uint32_t cdf_lo = 0, cdf_hi = 1u << kMixturePrecision;
      while (hi - lo > 1) {
        const int64_t mid = (lo + hi) / 2;
        const uint32_t cdf_mid = model.Cdf(mid);
        if (cdf_mid <= slot) {
          lo = mid;
          cdf_lo = cdf_mid;
        } else {
          hi = mid;
          cdf_hi = cdf_mid;
        }
      }
      if (!dec.Advance(lane, cdf_lo, cdf_hi - cdf_lo, kMixturePrecision)) {
        return "corrupted or truncated stream: it ended after " + Str(p * C + c) + " of " +
               Str(num_pixels * C) + " subpixels";
      }
      pixel[c] = static_cast<int32_t>(lo);
    }
  }
  if (!dec.Finish()) return "corrupted stream: it does not end where the subpixels end";
  return "";
}

std::string MixtureCdf(const MixtureSpec& spec, const MixtureParams& params, int64_t pixel,
                       int channel, const int32_t* prev, int32_t* cdf) {
  std::string error = ValidateMixtureSpec(spec);
  if (!error.empty()) return error;
  SubpixelModel model(spec);
  if (!model.Prepare(params, pixel, channel, prev)) return kBadParams;
  for (int k = 0; k <= spec.num_levels; ++k) cdf[k] = static_cast<int32_t>(model.Cdf(k));
  return "";
}

}  // namespace tfcomp
