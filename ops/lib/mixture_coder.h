// Coding subpixels with discretized logistic mixtures: plain C++, no TensorFlow types.
//
// The model of L3C / PixelCNN++: subpixel c of pixel p is one of L levels, level k standing
// for the value x_min + k * (x_max - x_min) / (L - 1). Its distribution is a mixture of K
// logistics with weights softmax(logit_weights[p, c, :]), means means[p, c, :] and scales
// exp(log_scales[p, c, :]) (values in the same units as x). Channels are autoregressive:
// channel c's means are shifted by sum_{j < c} coeffs[p, c(c-1)/2 + j, :] * x_j, where x_j is
// the (already coded) value of channel j of the same pixel. The lowest and highest levels
// take the tails, as in the discretized logistic likelihood.
//
// CDFs are built inside the coder, per subpixel and only where they are needed, with integer
// arithmetic on parameters snapped to grids (logits 1/16, log-scales 1/32 in [-8, 8], means
// 1/256 of a level, coefficients 1/4096 in [-4, 4]) and constant tables
// (fixed_point_tables.h). Mixture weights are renormalised to sum to exactly 2^16, and
// components under 2^-10 of the mass are dropped (the heaviest takes their share). The
// conversion from float inputs uses IEEE single/double arithmetic in a fixed order without
// fused multiply-adds, so encoder and decoder agree bit for bit on every machine. Every
// level keeps a frequency of at least 1 out of 2^16, so any level is codable.
//
// Online adaptation (MixtureSpec::adaptation, off by default): as pixels are coded in
// raster order (rows of `width` pixels), integer statistics that the encoder and decoder
// update identically correct the network's distributions to the image at hand, as CALIC
// and LOCO-I correct their predictors:
//   * kAdaptBias: the mean error of the mixture's mean in the subpixel's context (the
//     signs of the left and upper neighbours' errors and the predicted scale) shifts every
//     component's mean;
//   * kAdaptScale: the mean ratio of the (bias-corrected) absolute error to the one the
//     mixture predicts, in the context of the neighbours' error activity and the predicted
//     scale, moves every component's log-scale by steps of 1/32;
//   * kAdaptCalibration: the (corrected) CDF F goes through a piecewise-linear map G learnt
//     from where the coded levels fell, F(level) and F(level + 1) averaged, in 32 bins per
//     context (channel, predicted scale): the CDF becomes G(F), which corrects the shape of
//     the distributions (secondary estimation, in the way of context-mixing coders).
// Everything is integer arithmetic on the snapped parameters, so any machine adapts alike.
#ifndef TFCOMP_OPS_LIB_MIXTURE_CODER_H_
#define TFCOMP_OPS_LIB_MIXTURE_CODER_H_

#include <cstdint>
#include <string>
#include <vector>

namespace tfcomp {

constexpr int kMixturePrecision = 16;
constexpr int kMixtureMaxLevels = 4096;
constexpr int kMixtureMaxComponents = 64;
constexpr int kMixtureMaxChannels = 4;

constexpr int kAdaptBias = 1;
constexpr int kAdaptScale = 2;
constexpr int kAdaptCalibration = 4;
constexpr int kAdaptAll = kAdaptBias | kAdaptScale | kAdaptCalibration;

struct MixtureSpec {
  int num_levels = 256;
  double x_min = -1.0;
  double x_max = 1.0;
  int channels = 3;
  int components = 10;
  int adaptation = 0;  // kAdapt* flags
  int64_t width = 0;   // pixels per row for the adaptation's neighbours; 0: one row
};

// What the adaptation decided, for tests: per subpixel in coding order, the mean shift (in
// 1/256 level) and the log-scale step; and a digest of the final statistics.
struct AdaptationTrace {
  std::vector<int32_t> bias;
  std::vector<int32_t> step;
  uint64_t digest = 0;
};

struct MixtureParams {
  const float* logit_weights = nullptr;  // [num_pixels, channels, components]
  const float* means = nullptr;          // [num_pixels, channels, components]
  const float* log_scales = nullptr;     // [num_pixels, channels, components]
  const float* coeffs = nullptr;         // [num_pixels, channels*(channels-1)/2, components]
};

std::string ValidateMixtureSpec(const MixtureSpec& spec);

// The CDF sums and the weight conversion use AVX2 where the CPU has it. Both paths compute
// identical integers; tests switch the vector path off to check that.
void SetMixtureSimd(bool enabled);
bool MixtureSimdEnabled();

// `symbols` is [num_pixels, channels] of levels in [0, num_levels).
std::string MixtureEncode(const MixtureSpec& spec, const MixtureParams& params,
                          const int32_t* symbols, int64_t num_pixels, std::string* out,
                          AdaptationTrace* trace = nullptr);
std::string MixtureDecode(const MixtureSpec& spec, const MixtureParams& params,
                          const char* data, size_t size, int64_t num_pixels,
                          int32_t* symbols, AdaptationTrace* trace = nullptr);

// The quantized CDF the coder uses for one subpixel at levels 0..num_levels (inclusive), for
// tests and for measuring the exact code length, without adaptation. `prev` holds the levels
// of channels < c.
std::string MixtureCdf(const MixtureSpec& spec, const MixtureParams& params, int64_t pixel,
                       int channel, const int32_t* prev, int32_t* cdf);

}  // namespace tfcomp

#endif  // TFCOMP_OPS_LIB_MIXTURE_CODER_H_
