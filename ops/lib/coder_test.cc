// Unit tests of the plain C++ coders, built and run by tests/test_ops_lib.py:
//   g++ -O2 -std=c++17 coder_test.cc table_coder.cc mixture_coder.cc && ./a.out
#include <algorithm>
#include <cmath>
#include <cstdio>
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

}  // namespace

int main() {
  std::printf("mixture coder vector path: %s\n", tfcomp::MixtureSimdEnabled() ? "AVX2" : "none");
  TestTableRoundTrip();
  TestRandomBytesNeverCrash();
  TestCdfDecodeInChunks();
  TestMixture();
  return ExpectResult();
}
