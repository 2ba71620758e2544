// Unit tests of the plain C++ coders, built and run by tests/test_ops_lib.py:
//   g++ -O2 -std=c++17 coder_test.cc table_coder.cc mixture_coder.cc && ./a.out
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "expect.h"
#include "mixture_coder.h"
#include "table_coder.h"

namespace {

void TestTableRoundTrip() {
  std::mt19937 rng(1);
  const int kTables = 5, kMax = 40, kPrecision = 14;
  std::vector<float> pmf(kTables * (kMax - 1));
  for (auto& v : pmf) v = std::uniform_real_distribution<float>(0, 1)(rng);
  std::vector<int32_t> packed(kTables * kMax, 0), sizes(kTables), offsets(kTables);
  for (int t = 0; t < kTables; ++t) {
    sizes[t] = 2 + t * 9;
    offsets[t] = -t * 3;
    EXPECT(tfcomp::PmfToCdf(&pmf[t * (kMax - 1)], 1, sizes[t] - 1, kPrecision,
                            &packed[t * kMax]).empty());
  }
  tfcomp::CdfTables tables{packed.data(), sizes.data(), offsets.data(), kTables, kMax,
                           kPrecision};
  for (int n : {0, 1, 2, 3, 1000, 100000}) {
    std::vector<int32_t> values(n), indexes(n), decoded(n);
    for (int i = 0; i < n; ++i) {
      indexes[i] = rng() % kTables;
      // Mostly in range, with escapes of every size including the int32 extremes.
      const int r = rng() % 100;
      values[i] = r < 90   ? offsets[indexes[i]] + static_cast<int>(rng() % (sizes[indexes[i]]))
                  : r < 95 ? static_cast<int32_t>(rng())
                  : r < 97 ? INT32_MIN
                  : r < 99 ? INT32_MAX
                           : -static_cast<int32_t>(rng() % 1000);
    }
    std::string out;
    EXPECT(tfcomp::TableEncode(tables, values.data(), indexes.data(), n, &out).empty());
    EXPECT(tfcomp::TableDecode(tables, out.data(), out.size(), indexes.data(), n,
                               decoded.data()).empty());
    EXPECT(values == decoded);
    if (n > 0) {  // truncated and extended streams must be rejected, not misread
      std::string cut = out.substr(0, out.size() - 2);
      EXPECT(!tfcomp::TableDecode(tables, cut.data(), cut.size(), indexes.data(), n,
                                  decoded.data()).empty());
      std::string longer = out + "xy";
      EXPECT(!tfcomp::TableDecode(tables, longer.data(), longer.size(), indexes.data(), n,
                                  decoded.data()).empty());
    }
  }
}

void TestRandomBytesNeverCrash() {
  std::mt19937 rng(2);
  std::vector<int32_t> cdf = {0, 100, 30000, 65536}, sizes = {4}, offsets = {0};
  tfcomp::CdfTables tables{cdf.data(), sizes.data(), offsets.data(), 1, 4, 16};
  std::vector<int32_t> indexes(500, 0), out(500);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string data(rng() % 64, '\0');
    for (auto& ch : data) ch = static_cast<char>(rng());
    tfcomp::TableDecode(tables, data.data(), data.size(), indexes.data(), 500, out.data());
  }
}

// One stream decoded in chunks of every size gives the values; a forged state is refused.
void TestCdfDecodeInChunks() {
  std::mt19937 rng(4);
  const int kM = 7, kN = 1001, kPrecision = 15;
  std::vector<float> pmf(kN * (kM - 1));
  for (auto& v : pmf) v = std::uniform_real_distribution<float>(0.01f, 1)(rng);
  std::vector<int32_t> cdf(kN * kM), values(kN), decoded(kN);
  EXPECT(tfcomp::PmfToCdf(pmf.data(), kN, kM - 1, kPrecision, cdf.data()).empty());
  for (auto& v : values) v = std::uniform_int_distribution<int>(0, kM - 2)(rng);
  std::string data;
  EXPECT(tfcomp::CdfEncode(cdf.data(), kM, kPrecision, values.data(), kN, &data).empty());
  for (int chunk : {1, 2, 3, 64, kN}) {
    int64_t state[tfcomp::kCdfDecodeStateSize] = {};
    for (int start = 0; start < kN; start += chunk) {
      const int n = std::min(chunk, kN - start);
      EXPECT(tfcomp::CdfDecodeChunk(&cdf[start * kM], kM, kPrecision, data.data(), data.size(),
                                    n, start + n == kN, state, &decoded[start]).empty());
    }
    EXPECT(decoded == values);
  }
  int64_t forged[tfcomp::kCdfDecodeStateSize] = {1, 2, 3, 0};
  EXPECT(!tfcomp::CdfDecodeChunk(cdf.data(), kM, kPrecision, data.data(), data.size(), 1, false,
                                 forged, decoded.data()).empty());
  int64_t past_end[tfcomp::kCdfDecodeStateSize] = {int64_t{1} << 40, int64_t{1} << 40,
                                                   static_cast<int64_t>(data.size()) + 4, 0};
  EXPECT(!tfcomp::CdfDecodeChunk(cdf.data(), kM, kPrecision, data.data(), data.size(), 1, false,
                                 past_end, decoded.data()).empty());
}

// Component counts on both sides of the vector code's groups of 4 and blocks of 8 rows;
// `ties` rounds the logits so that several components share the largest one, and its
// spread drops some components under the weight floor.
void TestMixture() {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  struct Case {
    int channels, components;
    int64_t pixels;
    bool ties;
  };
  for (const Case& t : {Case{1, 4, 3000, false}, Case{3, 4, 3000, false}, Case{3, 10, 1001, false},
                        Case{1, 1, 77, false}, Case{3, 5, 263, true}, Case{2, 13, 9, true}}) {
    const int channels = t.channels, K = t.components;
    tfcomp::MixtureSpec spec;
    spec.channels = channels;
    spec.components = K;
    const int64_t n = t.pixels;
    const int pairs = channels * (channels - 1) / 2;
    std::vector<float> w(n * channels * K), m(w.size()), s(w.size()), c(n * pairs * K + 1);
    for (size_t i = 0; i < w.size(); ++i) {
      w[i] = t.ties ? std::round(3.0f * normal(rng)) : normal(rng);
      m[i] = 0.5f * normal(rng);
      s[i] = -3.0f + normal(rng);
    }
    for (auto& v : c) v = 0.5f * normal(rng);
    tfcomp::MixtureParams params{w.data(), m.data(), s.data(), c.data()};
    std::vector<int32_t> x(n * channels), y(x.size());
    for (auto& v : x) v = rng() % 256;
    std::string out;
    EXPECT(tfcomp::MixtureEncode(spec, params, x.data(), n, &out).empty());
    EXPECT(tfcomp::MixtureDecode(spec, params, out.data(), out.size(), n, y.data()).empty());
    EXPECT(x == y);
    // The vector (AVX2) and baseline code paths produce identical streams and decode each
    // other's output.
    const bool simd = tfcomp::MixtureSimdEnabled();
    tfcomp::SetMixtureSimd(!simd);
    std::string other;
    EXPECT(tfcomp::MixtureEncode(spec, params, x.data(), n, &other).empty());
    EXPECT(other == out);
    std::fill(y.begin(), y.end(), -1);
    EXPECT(tfcomp::MixtureDecode(spec, params, out.data(), out.size(), n, y.data()).empty());
    EXPECT(x == y);
    tfcomp::SetMixtureSimd(simd);
    // The code length matches the information content under the quantized CDFs.
    double bits = 0;
    std::vector<int32_t> cdf(257);
    for (int64_t p = 0; p < n; ++p) {
      for (int ch = 0; ch < channels; ++ch) {
        EXPECT(tfcomp::MixtureCdf(spec, params, p, ch, &x[p * channels], cdf.data()).empty());
        for (int k = 0; k < 256; ++k) EXPECT(cdf[k + 1] > cdf[k]);
        const int v = x[p * channels + ch];
        bits -= std::log2((cdf[v + 1] - cdf[v]) / 65536.0);
      }
    }
    // Fixed overhead: each of the two lanes starts at 2^31 (31 bits that carry nothing)
    // and ends with up to 32 unused high bits.
    EXPECT(std::fabs(out.size() * 8 - bits) < 0.005 * bits + 2 * (31 + 32));
  }
}

// A test image for the online adaptation: mixture parameters, and levels drawn from the
// mixture they describe, then made to disagree with it in known ways. Rows of `width`
// pixels (0: one row). With `split`, in the upper half of the rows every level is `offset`
// levels higher than drawn; in the lower half, the left half of each row is `offset`
// levels lower and the right half is drawn with `scale_factor` times the scales. Without,
// every level is `offset` higher and drawn with `scale_factor` times the scales. The
// components' means are `spread` levels apart around the pixel's mean (standard
// deviation), and the channel coefficients `coeff` (standard deviation). With offset 0 and
// scale_factor 1 the levels follow the parameters exactly.
struct AdaptiveImage {
  tfcomp::MixtureSpec spec;
  int64_t n = 0;
  std::vector<float> w, m, s, c;
  std::vector<int32_t> x;
  // Per subpixel in coding order: 0 where the levels are offset upwards (everywhere
  // without `split`), 1 offset downwards, 2 where the scales are changed.
  std::vector<int> region;
  tfcomp::MixtureParams params() const { return {w.data(), m.data(), s.data(), c.data()}; }
};

AdaptiveImage MakeAdaptiveImage(std::mt19937& rng, int channels, int K, int64_t n,
                                int64_t width, int offset, float scale_factor, bool split = true,
                                float spread = 3.0f, float coeff = 0.2f) {
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  AdaptiveImage im;
  im.spec.channels = channels;
  im.spec.components = K;
  im.spec.width = width;
  im.n = n;
  const int pairs = channels * (channels - 1) / 2;
  const float bin = 2.0f / 255.0f;
  im.w.resize(n * channels * K);
  im.m.resize(im.w.size());
  im.s.resize(im.w.size());
  im.c.resize(n * pairs * K + 1);  // +1: never empty, so .data() is never null
  im.x.resize(n * channels);
  im.region.resize(im.x.size());
  for (auto& v : im.c) v = coeff * normal(rng);
  const int64_t row = width > 0 ? width : std::max<int64_t>(n, 1);
  const int64_t rows = (n + row - 1) / row;
  for (int64_t p = 0; p < n; ++p) {
    const int64_t y = p / row, px = p % row;
    const int region = !split || 2 * y < rows ? 0 : 2 * px < row ? 1 : 2;
    const float mu = std::clamp(0.4f * normal(rng), -0.9f, 0.9f);
    for (int ch = 0; ch < channels; ++ch) {
      const int64_t base = (p * channels + ch) * K;
      double total = 0;
      for (int i = 0; i < K; ++i) {
        im.w[base + i] = normal(rng);
        im.m[base + i] = mu + spread * bin * normal(rng);
        // Scales between 1 and 3.3 levels.
        im.s[base + i] = std::log(bin) + 1.2f * uniform(rng);
        total += std::exp(static_cast<double>(im.w[base + i]));
      }
      // A component by the weights, then a logistic sample around its mean.
      double pick = uniform(rng) * total;
      int i = 0;
      while (i + 1 < K && (pick -= std::exp(static_cast<double>(im.w[base + i]))) > 0) ++i;
      double mean = im.m[base + i];
      for (int j = 0; j < ch; ++j) {
        mean += im.c[(p * pairs + ch * (ch - 1) / 2 + j) * K + i] *
                (-1.0 + im.x[p * channels + j] * bin);
      }
      const double u = std::clamp<double>(uniform(rng), 1e-6, 1 - 1e-6);
      const double scale = std::exp(static_cast<double>(im.s[base + i])) *
                           (!split || region == 2 ? scale_factor : 1.0);
      const double v = mean + scale * std::log(u / (1 - u));
      int level = static_cast<int>(std::lround((v + 1.0) / bin));
      level += region == 0 ? offset : region == 1 ? -offset : 0;
      im.x[p * channels + ch] = std::clamp(level, 0, 255);
      im.region[p * channels + ch] = region;
    }
  }
  return im;
}

// Encodes `im` with `adaptation` and decodes it back, with traces on both sides that
// must agree; returns the stream.
std::string AdaptiveRoundTrip(const AdaptiveImage& im, int adaptation,
                              tfcomp::AdaptationTrace* trace = nullptr) {
  tfcomp::MixtureSpec spec = im.spec;
  spec.adaptation = adaptation;
  const tfcomp::MixtureParams params = im.params();
  tfcomp::AdaptationTrace encoded, decoded;
  std::string out;
  EXPECT(tfcomp::MixtureEncode(spec, params, im.x.data(), im.n, &out, &encoded).empty());
  std::vector<int32_t> y(im.x.size(), -1);
  EXPECT(tfcomp::MixtureDecode(spec, params, out.data(), out.size(), im.n, y.data(),
                               &decoded).empty());
  EXPECT(y == im.x);
  // Without a trace too: the same stream and symbols.
  std::string plain;
  EXPECT(tfcomp::MixtureEncode(spec, params, im.x.data(), im.n, &plain).empty());
  EXPECT(plain == out);
  std::fill(y.begin(), y.end(), -1);
  EXPECT(tfcomp::MixtureDecode(spec, params, out.data(), out.size(), im.n, y.data()).empty());
  EXPECT(y == im.x);
  // The decoder's adaptation state follows the encoder's exactly.
  EXPECT(encoded.bias == decoded.bias);
  EXPECT(encoded.step == decoded.step);
  EXPECT(encoded.digest == decoded.digest);
  const size_t subpixels = adaptation ? im.x.size() : 0;  // no adaptation: no trace
  EXPECT(encoded.bias.size() == subpixels);
  EXPECT(encoded.step.size() == subpixels);
  EXPECT((encoded.digest != 0) == (adaptation != 0));
  // The flags switch their corrections on and off independently, and the first subpixel
  // has no statistics to go on.
  for (size_t i = 0; i < encoded.bias.size(); ++i) {
    if (!(adaptation & tfcomp::kAdaptBias)) EXPECT(encoded.bias[i] == 0);
    if (!(adaptation & tfcomp::kAdaptScale)) EXPECT(encoded.step[i] == 0);
    EXPECT(std::abs(encoded.step[i]) <= 30);
  }
  if (subpixels > 0) EXPECT(encoded.bias[0] == 0 && encoded.step[0] == 0);
  if (trace) *trace = encoded;
  return out;
}

// Every adaptation round-trips exactly, on images of every shape (empty, one pixel, rows
// crossing the coder's chunks of 256 pixels, a last row cut short, one pixel per row,
// rows longer than the image), and the decoder adapts exactly as the encoder did.
void TestAdaptiveRoundTrip() {
  std::mt19937 rng(5);
  struct Shape {
    int64_t pixels, width;
  };
  for (const Shape& shape : {Shape{0, 0}, Shape{1, 0}, Shape{1, 7}, Shape{37 * 23, 23},
                             Shape{37 * 23 + 5, 23}, Shape{300, 0}, Shape{300, 1},
                             Shape{300, 1000}, Shape{7 * 513, 513}, Shape{64 * 80, 80}}) {
    for (int channels : {1, 3}) {
      for (int K : {1, 5, 10}) {
        const AdaptiveImage im =
            MakeAdaptiveImage(rng, channels, K, shape.pixels, shape.width, 4, 2.0f);
        size_t bytes[8];
        tfcomp::AdaptationTrace trace[8];
        for (int adaptation = 0; adaptation < 8; ++adaptation) {
          bytes[adaptation] = AdaptiveRoundTrip(im, adaptation, &trace[adaptation]).size();
        }
        if (shape.pixels * channels < 2000) continue;
        // The corrections are really used on an image that needs them...
        const auto nonzero = [](const std::vector<int32_t>& v) {
          return static_cast<int64_t>(
              std::count_if(v.begin(), v.end(), [](int32_t e) { return e != 0; }));
        };
        for (int adaptation = 1; adaptation < 8; ++adaptation) {
          const int64_t n = static_cast<int64_t>(trace[adaptation].bias.size());
          if (adaptation & tfcomp::kAdaptBias) EXPECT(nonzero(trace[adaptation].bias) > n / 4);
          if (adaptation & tfcomp::kAdaptScale) EXPECT(nonzero(trace[adaptation].step) > n / 4);
        }
        // ... in the right direction: the means move up where the levels are higher, more
        // than where they are lower (the statistics remember the upper half for a while).
        double bias[3] = {0, 0, 0}, count[3] = {0, 0, 0};
        for (size_t i = 0; i < im.region.size(); ++i) {
          bias[im.region[i]] += trace[3].bias[i];
          count[im.region[i]] += 1;
        }
        EXPECT(bias[0] / count[0] > 256);  // 1 level of the 4
        if (count[1] > 100) EXPECT(bias[1] / count[1] < bias[0] / count[0] - 256);
        // And they pay off.
        EXPECT(bytes[3] < bytes[0]);
        EXPECT(bytes[1] < bytes[0]);
        EXPECT(bytes[3] < bytes[2]);
        EXPECT(bytes[4] < bytes[0]);
        EXPECT(bytes[7] < bytes[0]);
      }
    }
  }
}

// The mean of the second half of `v`.
double LateMean(const std::vector<int32_t>& v) {
  double sum = 0;
  for (size_t i = v.size() / 2; i < v.size(); ++i) sum += v[i];
  return sum / std::max<double>(1, v.size() - v.size() / 2);
}

// On levels drawn from unimodal distributions (one component, or components with one
// mean) that match the parameters, the adaptation costs little: its corrections stay
// small. Offsets and wrong scales of the whole image are learnt with the right sign and
// about the right size, and save bits.
void TestAdaptationDirection() {
  std::mt19937 rng(6);
  for (int channels : {1, 3}) {
    for (int K : {1, 5}) {
      // Coefficients would spread the components' means apart: the scale statistics take
      // the spread for too small scales (5-7% more bytes with coefficients of 0.2, K = 5).
      const float coeff = K == 1 ? 0.2f : 0.0f;
      const AdaptiveImage im =
          MakeAdaptiveImage(rng, channels, K, 64 * 80, 80, 0, 1.0f, false, 0.0f, coeff);
      tfcomp::AdaptationTrace trace;
      const size_t plain = AdaptiveRoundTrip(im, 0).size();
      const size_t adapted = AdaptiveRoundTrip(im, tfcomp::kAdaptAll, &trace).size();
      EXPECT(adapted < plain + plain / 64);
      EXPECT(std::fabs(LateMean(trace.bias)) < 32);  // 1/8 level
      EXPECT(std::fabs(LateMean(trace.step)) < 4);
    }
  }
  // 4 levels up or down: a bias of about 4 * 256. Scales times 2 or 1/2: log-scale steps
  // of about +-32 ln 2 = +-22.
  struct Case {
    int offset;
    float scale_factor;
    double bias_low, bias_high, step_low, step_high;
  };
  for (int channels : {1, 3}) {
    for (const Case& t : {Case{4, 1.0f, 768, 1280, -4, 4}, Case{-4, 1.0f, -1280, -768, -4, 4},
                          Case{0, 2.0f, -64, 64, 14, 30}, Case{0, 0.5f, -64, 64, -30, -14}}) {
      const AdaptiveImage im = MakeAdaptiveImage(rng, channels, 1, 64 * 80, 80, t.offset,
                                                 t.scale_factor, false, 0.0f, 0.2f);
      size_t bytes[8];
      tfcomp::AdaptationTrace trace;
      for (int adaptation = 0; adaptation < 8; ++adaptation) {
        bytes[adaptation] = AdaptiveRoundTrip(im, adaptation, &trace).size();
      }
      const double bias = LateMean(trace.bias), step = LateMean(trace.step);
      EXPECT(bias > t.bias_low && bias < t.bias_high);
      EXPECT(step > t.step_low && step < t.step_high);
      EXPECT(bytes[3] < bytes[0] - bytes[0] / 20);  // 5% at least
      if (t.offset != 0) EXPECT(bytes[1] < bytes[0] - bytes[0] / 20);
      if (t.scale_factor != 1.0f) EXPECT(bytes[2] < bytes[0] - bytes[0] / 20);
    }
  }
}

// The baseline and AVX2 paths adapt alike: identical streams and traces, and each decodes
// the other's streams.
void TestAdaptiveSimd() {
  std::mt19937 rng(7);
  const bool simd = tfcomp::MixtureSimdEnabled();
  for (int K : {1, 5, 13}) {
    for (int channels : {1, 3}) {
      const AdaptiveImage im = MakeAdaptiveImage(rng, channels, K, 37 * 23 + 5, 23, 4, 2.0f);
      for (int adaptation : {tfcomp::kAdaptScale, tfcomp::kAdaptAll}) {
        tfcomp::MixtureSpec spec = im.spec;
        spec.adaptation = adaptation;
        const tfcomp::MixtureParams params = im.params();
        std::string out[2];
        tfcomp::AdaptationTrace trace[2];
        for (int on = 0; on < 2; ++on) {
          tfcomp::SetMixtureSimd(on == 1);
          EXPECT(tfcomp::MixtureEncode(spec, params, im.x.data(), im.n, &out[on], &trace[on])
                     .empty());
        }
        EXPECT(out[0] == out[1]);
        EXPECT(trace[0].bias == trace[1].bias);
        EXPECT(trace[0].step == trace[1].step);
        EXPECT(trace[0].digest == trace[1].digest);
        for (int on = 0; on < 2; ++on) {
          tfcomp::SetMixtureSimd(on == 1);
          std::vector<int32_t> y(im.x.size(), -1);
          tfcomp::AdaptationTrace decoded;
          EXPECT(tfcomp::MixtureDecode(spec, params, out[1 - on].data(), out[1 - on].size(),
                                       im.n, y.data(), &decoded).empty());
          EXPECT(y == im.x);
          EXPECT(decoded.bias == trace[0].bias);
          EXPECT(decoded.step == trace[0].step);
          EXPECT(decoded.digest == trace[0].digest);
        }
      }
    }
  }
  tfcomp::SetMixtureSimd(simd);
  EXPECT(tfcomp::MixtureSimdEnabled() == simd);
}

// Streams decoded with the wrong adaptation or rows, truncated, extended, corrupted or made
// of random bytes give errors or wrong levels, never a crash; levels always stay in range.
void TestAdaptiveBadStreams() {
  std::mt19937 rng(8);
  // One row more than is coded, so that decoding more pixels than were coded reads
  // parameters that exist.
  const AdaptiveImage im = MakeAdaptiveImage(rng, 3, 5, 38 * 23, 23, 4, 2.0f);
  const int64_t n = 37 * 23;
  const std::vector<int32_t> x(im.x.begin(), im.x.begin() + n * 3);
  const tfcomp::MixtureParams params = im.params();
  // Decoded levels, or -1 where the decoder stopped before them.
  const auto in_range = [](const std::vector<int32_t>& y, int32_t low = 0) {
    return std::all_of(y.begin(), y.end(), [low](int32_t v) { return v >= low && v < 256; });
  };
  std::vector<int32_t> y(x.size());
  for (int adaptation : {0, 3, 4, 7}) {
    tfcomp::MixtureSpec spec = im.spec;
    spec.adaptation = adaptation;
    std::string out;
    EXPECT(tfcomp::MixtureEncode(spec, params, x.data(), n, &out).empty());
    // Another adaptation, or other rows.
    for (int other : {0, 1, 3, 4, 7}) {
      for (int64_t width : {int64_t{23}, int64_t{0}, int64_t{1}, int64_t{24}}) {
        if (other == adaptation && width == 23) continue;
        tfcomp::MixtureSpec wrong = spec;
        wrong.adaptation = other;
        wrong.width = width;
        std::fill(y.begin(), y.end(), -1);
        tfcomp::AdaptationTrace trace;
        const std::string error =
            tfcomp::MixtureDecode(wrong, params, out.data(), out.size(), n, y.data(), &trace);
        EXPECT(in_range(y, error.empty() ? 0 : -1));
        EXPECT(trace.bias.size() <= y.size());
        // A different model does not give back the coded levels without an error (the
        // rows only matter to the bias and scale statistics: calibration's contexts have
        // no neighbours).
        const bool same = other == adaptation && (adaptation & tfcomp::kAdaptCalibration
                                                      ? !(adaptation & ~tfcomp::kAdaptCalibration)
                                                      : adaptation == 0);
        if (!same) EXPECT(!error.empty() || y != x);
      }
    }
    if (adaptation == 0) continue;
    // Truncated by whole words (the header stays well formed), by a part of a word, down
    // to the header alone and to nothing; extended by a word; every one is refused.
    for (size_t cut : {size_t{4}, size_t{8}, size_t{2}, out.size() - 16, out.size() - 15,
                       out.size()}) {
      const std::string shorter = out.substr(0, out.size() - cut);
      std::fill(y.begin(), y.end(), -1);
      EXPECT(!tfcomp::MixtureDecode(spec, params, shorter.data(), shorter.size(), n,
                                    y.data()).empty());
      EXPECT(in_range(y, -1));
    }
    const std::string longer = out + "abcd";
    EXPECT(!tfcomp::MixtureDecode(spec, params, longer.data(), longer.size(), n, y.data())
                .empty());
    // Fewer or more pixels than were coded.
    std::vector<int32_t> more(im.x.size(), -1);
    EXPECT(!tfcomp::MixtureDecode(spec, params, out.data(), out.size(), n + 23, more.data())
                .empty());
    EXPECT(in_range(more, -1));
    EXPECT(!tfcomp::MixtureDecode(spec, params, out.data(), out.size(), n - 23, y.data())
                .empty());
    // One flipped bit anywhere.
    for (int trial = 0; trial < 20; ++trial) {
      std::string flipped = out;
      flipped[rng() % flipped.size()] ^= static_cast<char>(1 << (rng() % 8));
      std::fill(y.begin(), y.end(), -1);
      tfcomp::MixtureDecode(spec, params, flipped.data(), flipped.size(), n, y.data());
      EXPECT(in_range(y, -1));
    }
    // Random bytes.
    for (int trial = 0; trial < 50; ++trial) {
      std::string data(16 + 4 * (rng() % 64), '\0');
      for (auto& ch : data) ch = static_cast<char>(rng());
      std::fill(y.begin(), y.end(), -1);
      tfcomp::MixtureDecode(spec, params, data.data(), data.size(), n, y.data());
      EXPECT(in_range(y, -1));
    }
  }
}

void TestAdaptiveSpecValidation() {
  tfcomp::MixtureSpec spec;
  for (int adaptation : {0, 1, 2, 3, 4, 5, 6, 7}) {
    spec.adaptation = adaptation;
    EXPECT(tfcomp::ValidateMixtureSpec(spec).empty());
  }
  for (int adaptation : {8, -1, 15, 1 << 30}) {
    spec.adaptation = adaptation;
    const std::string error = tfcomp::ValidateMixtureSpec(spec);
    EXPECT(!error.empty());
    EXPECT(error.find("adaptation") != std::string::npos);
  }
  spec.adaptation = tfcomp::kAdaptAll;
  for (int64_t width : {int64_t{0}, int64_t{1}, int64_t{513}}) {
    spec.width = width;
    EXPECT(tfcomp::ValidateMixtureSpec(spec).empty());
  }
  for (int64_t width : {int64_t{-1}, int64_t{-1000}, INT64_MIN}) {
    spec.width = width;
    const std::string error = tfcomp::ValidateMixtureSpec(spec);
    EXPECT(!error.empty());
    EXPECT(error.find("width") != std::string::npos);
  }
  // The coder refuses such specs too, before touching any data.
  spec.width = -1;
  const int32_t level = 0;
  std::string out;
  EXPECT(!tfcomp::MixtureEncode(spec, tfcomp::MixtureParams{}, &level, 1, &out).empty());
  int32_t decoded = -1;
  EXPECT(!tfcomp::MixtureDecode(spec, tfcomp::MixtureParams{}, out.data(), out.size(), 1,
                                &decoded).empty());
  spec.width = 0;
  spec.adaptation = 8;
  EXPECT(!tfcomp::MixtureEncode(spec, tfcomp::MixtureParams{}, &level, 1, &out).empty());
  EXPECT(out.empty());
}

}  // namespace

int main() {
  std::printf("mixture coder vector path: %s\n", tfcomp::MixtureSimdEnabled() ? "AVX2" : "none");
  TestTableRoundTrip();
  TestRandomBytesNeverCrash();
  TestCdfDecodeInChunks();
  TestMixture();
  TestAdaptiveRoundTrip();
  TestAdaptationDirection();
  TestAdaptiveSimd();
  TestAdaptiveBadStreams();
  TestAdaptiveSpecValidation();
  return ExpectResult();
}
