// Unit tests of the exact convolution operands, built and run by tests/test_ops_lib.py:
//   g++ -O2 -std=c++17 exact_grid_test.cc exact_grid.cc && ./a.out
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "exact_grid.h"
#include "expect.h"

namespace {

void TestHelpers() {
  EXPECT(tfcomp::FloorLog2(1.0f) == 0 && tfcomp::FloorLog2(1.9f) == 0);
  EXPECT(tfcomp::FloorLog2(0.5f) == -1 && tfcomp::FloorLog2(1024.0f) == 10);
  EXPECT(tfcomp::FloorLog2(0.0f) == -127 && tfcomp::FloorLog2(1e-40f) == -127);
  for (int e = -126; e <= 127; ++e) EXPECT(tfcomp::Pow2(e) == std::ldexp(1.0f, e));
  EXPECT(tfcomp::RoundHalfEven(0.5f) == 0.0f && tfcomp::RoundHalfEven(1.5f) == 2.0f);
  EXPECT(tfcomp::RoundHalfEven(-0.5f) == 0.0f && tfcomp::RoundHalfEven(-2.5f) == -2.0f);
  EXPECT(tfcomp::RoundHalfEven(2.49999f) == 2.0f && tfcomp::RoundHalfEven(-7.6f) == -8.0f);
  EXPECT(tfcomp::RoundHalfEven(16777217.0f * 2) == 16777217.0f * 2);
  std::mt19937 rng(3);
  for (int i = 0; i < 200000; ++i) {
    const float v = std::ldexp(std::uniform_real_distribution<float>(-1, 1)(rng), i % 23);
    EXPECT(tfcomp::RoundSmall(v) == tfcomp::RoundHalfEven(v));
  }
  for (float v : {0.5f, 1.5f, 2.5f, -2.5f, 4194303.5f, -4194304.0f, 1e-30f, -0.0f}) {
    EXPECT(tfcomp::RoundSmall(v) == tfcomp::RoundHalfEven(v));
  }
}

void TestOperandsKeepSumsExact() {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t n = 900, out = 4, taps = 288;
  std::vector<float> x(n), kernel(taps * out), bias(out);
  for (auto& v : x) v = 3.0f * normal(rng);
  for (auto& v : kernel) v = 0.05f * normal(rng);
  for (auto& v : bias) v = normal(rng);
  bias[3] = 1e6f;  // a bias too large for the finest grid coarsens that channel's
  std::vector<int32_t> finest = {12, 12, 13, 12}, room = {22, 22, 22, 1};
  tfcomp::ExactOperands in{x.data(), n, kernel.data(), taps * out, bias.data(),
                           finest.data(), room.data(), out, 11};
  std::vector<float> x_int(n), w(taps * out), b(out);
  int32_t f = 0;
  EXPECT(tfcomp::ComputeExactOperands(in, x_int.data(), w.data(), b.data(), &f).empty());
  float peak = 0;
  for (float v : x) peak = std::max(peak, std::fabs(v));
  EXPECT(f == 9 - tfcomp::FloorLog2(peak));
  for (int64_t i = 0; i < n; ++i) {
    EXPECT(x_int[i] == std::nearbyint(x_int[i]) && std::fabs(x_int[i]) <= 1024.0f);
  }
  for (int64_t c = 0; c < out; ++c) {
    const int e = std::min(finest[c], room[c] - f);
    double l1 = 0;
    for (int64_t i = c; i < taps * out; i += out) {
      const double units = std::ldexp(static_cast<double>(w[i]), e + f);
      EXPECT(units == std::nearbyint(units));
      l1 += std::fabs(units);
    }
    const double bias_units = std::ldexp(static_cast<double>(b[c]), e + f);
    EXPECT(bias_units == std::nearbyint(bias_units) && std::fabs(bias_units) <= 4194304.0);
    EXPECT(std::fabs(b[c] - bias[c]) <= std::ldexp(0.5, -(e + f)) || c == 3);
  }
}

void TestRejectsNonFiniteInputs() {
  float x[2] = {1.0f, NAN}, k[1] = {1.0f}, bias[1] = {0.0f}, out3[3];
  int32_t finest[1] = {0}, room[1] = {0}, f;
  tfcomp::ExactOperands in{x, 2, k, 1, bias, finest, room, 1, 11};
  EXPECT(!tfcomp::ComputeExactOperands(in, out3, out3 + 2, out3 + 2, &f).empty());
  x[1] = INFINITY;
  EXPECT(!tfcomp::ComputeExactOperands(in, out3, out3 + 2, out3 + 2, &f).empty());
  in.k = 3;
  in.out = 2;
  x[1] = 0.0f;
  EXPECT(!tfcomp::ComputeExactOperands(in, out3, out3 + 2, out3 + 2, &f).empty());
}

}  // namespace

int main() {
  TestHelpers();
  TestOperandsKeepSumsExact();
  TestRejectsNonFiniteInputs();
  return ExpectResult();
}
