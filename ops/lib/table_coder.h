// Coding integer symbols with quantized CDF tables: plain C++, no TensorFlow types.
//
// Table coder: each symbol picks one of T tables by an index. Table t has
// `sizes[t] - 1` symbols and CDF `cdf[t][0..sizes[t]-1]` (cdf[0] = 0, cdf[last] =
// 2^precision, non-decreasing). A value v is coded as symbol v - offsets[t] when that lies
// in [0, sizes[t] - 2); the last symbol is an escape, after which the value is coded with an
// Elias-gamma-like code (a 6-bit length, then the bits, uniformly), so every int32 is codable.
//
// Explicit-CDF coder: symbol i is coded with its own CDF row of M entries (no escape).
#ifndef TFCOMP_OPS_LIB_TABLE_CODER_H_
#define TFCOMP_OPS_LIB_TABLE_CODER_H_

#include <cstdint>
#include <string>

namespace tfcomp {

struct CdfTables {
  const int32_t* cdf = nullptr;      // [num_tables, max_size], row-major
  const int32_t* sizes = nullptr;    // [num_tables]
  const int32_t* offsets = nullptr;  // [num_tables]
  int64_t num_tables = 0;
  int64_t max_size = 0;
  int precision = 16;
};

// Each function returns an empty string on success, else a message naming the problem.
std::string ValidateCdfTables(const CdfTables& tables);
std::string TableEncode(const CdfTables& tables, const int32_t* values, const int32_t* indexes,
                        int64_t n, std::string* out);
std::string TableDecode(const CdfTables& tables, const char* data, size_t size,
                        const int32_t* indexes, int64_t n, int32_t* values);

// Explicit-CDF coder. `cdf` is [n, m]: symbol i uses row i, with m - 1 symbols.
std::string CdfEncode(const int32_t* cdf, int64_t m, int precision, const int32_t* values,
                      int64_t n, std::string* out);
std::string CdfDecode(const int32_t* cdf, int64_t m, int precision, const char* data,
                      size_t size, int64_t n, int32_t* values);

// Resumable explicit-CDF decoding, for decoders that learn each step's CDF rows from the
// symbols of earlier steps while the encoder coded all steps as one stream: decodes the
// next n symbols of a CdfEncode stream from `state` and advances it. An all-zero state is
// the start of the stream; with `final`, the stream must end right after these symbols.
// The state is (lane 0, lane 1, byte offset, symbols decoded so far); a state that cannot
// belong to the stream is rejected.
constexpr int kCdfDecodeStateSize = 4;
std::string CdfDecodeChunk(const int32_t* cdf, int64_t m, int precision, const char* data,
                           size_t size, int64_t n, bool final, int64_t* state,
                           int32_t* values);

// Quantizes each row of `pmf` ([n, m], non-negative, finite) into a CDF row of m + 1 entries
// in which every symbol has frequency >= 1. Deterministic: IEEE double arithmetic only.
std::string PmfToCdf(const float* pmf, int64_t n, int64_t m, int precision, int32_t* cdf);

}  // namespace tfcomp

#endif  // TFCOMP_OPS_LIB_TABLE_CODER_H_
