#include "table_coder.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "rans.h"

namespace tfcomp {
namespace {

constexpr int kEscapeLengthBits = 6;  // bit length of the escaped value, coded uniformly
constexpr int kMaxEscapeLength = 40;  // longer than any int32 escape; larger means corrupt

std::string Str(int64_t v) { return std::to_string(v); }

std::string CheckPrecision(int precision) {
  if (precision < 1 || precision > kRansMaxPrecision) {
    return "precision must be in [1, 16], got " + Str(precision);
  }
  return "";
}

// Checks one CDF row: starts at 0, ends at 2^precision, non-decreasing.
bool ValidRow(const int32_t* row, int64_t size, int precision) {
  if (row[0] != 0 || row[size - 1] != (1 << precision)) return false;
  for (int64_t i = 1; i < size; ++i) {
    if (row[i] < row[i - 1]) return false;
  }
  return true;
}

// Largest s in [0, size - 2] with row[s] <= slot (row valid, slot < 2^precision).
inline int64_t Search(const int32_t* row, int64_t size, uint32_t slot) {
  return std::upper_bound(row + 1, row + size, static_cast<int32_t>(slot)) - (row + 1);
}

// Maps each table's slots, in 2^kBucketBits buckets, to the symbol holding the bucket's first
// slot, so that decoding a symbol is a lookup plus a short forward scan instead of a binary
// search. Built only when there are enough symbols to pay for it.
constexpr int kBucketBits = 10;

class SymbolIndex {
 public:
  SymbolIndex(const CdfTables& t, int64_t num_symbols)
      : tables_(t), bits_(std::min(kBucketBits, t.precision)), shift_(t.precision - bits_) {
    const int64_t buckets = int64_t{1} << bits_;
    if (t.num_tables * buckets > 4 * std::max<int64_t>(num_symbols, 1 << 14)) return;
    first_.resize(t.num_tables * buckets);
    for (int64_t i = 0; i < t.num_tables; ++i) {
      const int32_t* row = t.cdf + i * t.max_size;
      int32_t s = 0;
      for (int64_t b = 0; b < buckets; ++b) {
        while (row[s + 1] <= (b << shift_)) ++s;
        first_[i * buckets + b] = s;
      }
    }
  }

  // The symbol s of table `index` with row[s] <= slot < row[s + 1].
  inline int64_t Find(int32_t index, uint32_t slot) const {
    const int32_t* row = tables_.cdf + index * tables_.max_size;
    if (first_.empty()) return Search(row, tables_.sizes[index], slot);
    int64_t s = first_[(static_cast<int64_t>(index) << bits_) + (slot >> shift_)];
    while (row[s + 1] <= static_cast<int32_t>(slot)) ++s;
    return s;
  }

 private:
  const CdfTables& tables_;
  const int bits_, shift_;
  std::vector<int32_t> first_;
};

std::string BadIndex(const CdfTables& t, int32_t index, int64_t position) {
  return "index " + Str(index) + " at position " + Str(position) + " is outside [0, " +
         Str(t.num_tables) + ")";
}

int BitLength(uint64_t w) {
  int n = 0;
  while (w) {
    ++n;
    w >>= 1;
  }
  return n;
}

}  // namespace

std::string ValidateCdfTables(const CdfTables& t) {
  std::string error = CheckPrecision(t.precision);
  if (!error.empty()) return error;
  if (t.num_tables < 1) return "need at least one CDF table";
  for (int64_t i = 0; i < t.num_tables; ++i) {
    const int64_t size = t.sizes[i];
    if (size < 2 || size > t.max_size) {
      return "cdf_size[" + Str(i) + "] must be in [2, " + Str(t.max_size) + "], got " +
             Str(size);
    }
    if (!ValidRow(t.cdf + i * t.max_size, size, t.precision)) {
      return "CDF table " + Str(i) + " must start at 0, end at 2^precision and not decrease";
    }
  }
  return "";
}

std::string TableEncode(const CdfTables& t, const int32_t* values, const int32_t* indexes,
                        int64_t n, std::string* out) {
  std::string error = ValidateCdfTables(t);
  if (!error.empty()) return error;
  RansEncoder enc;
  const int p = t.precision;
  for (int64_t i = n - 1; i >= 0; --i) {
    const int lane = static_cast<int>(i & 1);
    const int32_t index = indexes[i];
    if (index < 0 || index >= t.num_tables) return BadIndex(t, index, i);
    const int32_t* row = t.cdf + index * t.max_size;
    const int64_t escape = t.sizes[index] - 2;
    const int64_t d = static_cast<int64_t>(values[i]) - t.offsets[index];
    if (d >= 0 && d < escape) {
      const uint32_t freq = row[d + 1] - row[d];
      if (freq == 0) {
        return "value " + Str(values[i]) + " at position " + Str(i) +
               " has zero probability in CDF table " + Str(index);
      }
      enc.Put(lane, row[d], freq, p);
      continue;
    }
    const uint32_t escape_freq = row[escape + 1] - row[escape];
    if (escape_freq == 0) {
      return "value " + Str(values[i]) + " at position " + Str(i) +
             " is outside the range of CDF table " + Str(index) +
             " and its escape symbol has zero probability";
    }
    // Events in decoding order: escape, bit length, then the bits below the leading one
    // in 16-bit chunks, lowest first. Pushed here in reverse.
    const uint64_t u = d < 0 ? static_cast<uint64_t>(-2 * d - 1)
                             : static_cast<uint64_t>(2 * (d - escape));
    const uint64_t w = u + 1;
    const int length = BitLength(w) - 1;
    const int chunks = (length + 15) / 16;
    for (int c = chunks - 1; c >= 0; --c) {
      const int bits = std::min(16, length - 16 * c);
      enc.Put(lane, static_cast<uint32_t>((w >> (16 * c)) & ((1u << bits) - 1)), 1, bits);
    }
    enc.Put(lane, length, 1, kEscapeLengthBits);
    enc.Put(lane, row[escape], escape_freq, p);
  }
  enc.Finish(out);
  return "";
}

std::string TableDecode(const CdfTables& t, const char* data, size_t size,
                        const int32_t* indexes, int64_t n, int32_t* values) {
  std::string error = ValidateCdfTables(t);
  if (!error.empty()) return error;
  RansDecoder dec(data, size);
  if (!dec.ok()) return "corrupted or truncated stream: bad header";
  const int p = t.precision;
  const SymbolIndex symbol_index(t, n);
  for (int64_t i = 0; i < n; ++i) {
    const int lane = static_cast<int>(i & 1);
    const int32_t index = indexes[i];
    if (index < 0 || index >= t.num_tables) return BadIndex(t, index, i);
    const int32_t* row = t.cdf + index * t.max_size;
    const int64_t escape = t.sizes[index] - 2;
    const int64_t s = symbol_index.Find(index, dec.Peek(lane, p));
    if (!dec.Advance(lane, row[s], row[s + 1] - row[s], p)) {
      return "corrupted or truncated stream: it ended after " + Str(i) + " of " + Str(n) +
             " symbols";
    }
    if (s < escape) {
      values[i] = static_cast<int32_t>(s + t.offsets[index]);
      continue;
    }
    const int length = static_cast<int>(dec.Peek(lane, kEscapeLengthBits));
    bool ok = dec.Advance(lane, length, 1, kEscapeLengthBits) && length <= kMaxEscapeLength;
    uint64_t w = uint64_t{1} << std::min(length, kMaxEscapeLength);
    for (int c = 0; ok && 16 * c < length; ++c) {
      const int bits = std::min(16, length - 16 * c);
      const uint32_t chunk = dec.Peek(lane, bits);
      ok = dec.Advance(lane, chunk, 1, bits);
      w |= static_cast<uint64_t>(chunk) << (16 * c);
    }
    const uint64_t u = w - 1;
    const int64_t d = (u & 1) ? -static_cast<int64_t>((u + 1) / 2)
                              : static_cast<int64_t>(u / 2) + escape;
    const int64_t v = d + t.offsets[index];
    if (!ok || v < INT32_MIN || v > INT32_MAX) {
      return "corrupted or truncated stream: bad escaped value at position " + Str(i);
    }
    values[i] = static_cast<int32_t>(v);
  }
  if (!dec.Finish()) return "corrupted stream: it does not end where the symbols end";
  return "";
}

std::string CdfEncode(const int32_t* cdf, int64_t m, int precision, const int32_t* values,
                      int64_t n, std::string* out) {
  std::string error = CheckPrecision(precision);
  if (!error.empty()) return error;
  if (m < 2) return "CDF rows need at least 2 entries, got " + Str(m);
  RansEncoder enc;
  for (int64_t i = n - 1; i >= 0; --i) {
    const int32_t* row = cdf + i * m;
    if (!ValidRow(row, m, precision)) {
      return "CDF row " + Str(i) + " must start at 0, end at 2^precision and not decrease";
    }
    const int32_t v = values[i];
    if (v < 0 || v > m - 2 || row[v + 1] == row[v]) {
      return "value " + Str(v) + " at position " + Str(i) +
             " is outside [0, " + Str(m - 2) + "] or has zero probability";
    }
    enc.Put(static_cast<int>(i & 1), row[v], row[v + 1] - row[v], precision);
  }
  enc.Finish(out);
  return "";
}

std::string CdfDecodeChunk(const int32_t* cdf, int64_t m, int precision, const char* data,
                           size_t size, int64_t n, bool final, int64_t* state,
                           int32_t* values) {
  std::string error = CheckPrecision(precision);
  if (!error.empty()) return error;
  if (m < 2) return "CDF rows need at least 2 entries, got " + Str(m);
  bool start = true;
  for (int k = 0; k < kCdfDecodeStateSize; ++k) start = start && state[k] == 0;
  const int64_t done = state[3];
  uint64_t lanes[kRansLanes] = {static_cast<uint64_t>(state[0]), static_cast<uint64_t>(state[1])};
  RansDecoder dec = start ? RansDecoder(data, size)
                          : RansDecoder(data, size, lanes, static_cast<uint64_t>(state[2]));
  if (!dec.ok() || done < 0) {
    return start ? "corrupted or truncated stream: bad header"
                 : "the decoder state does not belong to this stream";
  }
  for (int64_t i = 0; i < n; ++i) {
    const int32_t* row = cdf + i * m;
    if (!ValidRow(row, m, precision)) {
      return "CDF row " + Str(i) + " must start at 0, end at 2^precision and not decrease";
    }
    const int lane = static_cast<int>((done + i) & 1);
    const int64_t s = Search(row, m, dec.Peek(lane, precision));
    if (!dec.Advance(lane, row[s], row[s + 1] - row[s], precision)) {
      return "corrupted or truncated stream: it ended after " + Str(done + i) + " symbols";
    }
    values[i] = static_cast<int32_t>(s);
  }
  if (final && !dec.Finish()) return "corrupted stream: it does not end where the symbols end";
  uint64_t offset;
  dec.Save(data, lanes, &offset);
  state[0] = static_cast<int64_t>(lanes[0]);
  state[1] = static_cast<int64_t>(lanes[1]);
  state[2] = static_cast<int64_t>(offset);
  state[3] = done + n;
  return "";
}

std::string CdfDecode(const int32_t* cdf, int64_t m, int precision, const char* data,
                      size_t size, int64_t n, int32_t* values) {
  int64_t state[kCdfDecodeStateSize] = {};
  return CdfDecodeChunk(cdf, m, precision, data, size, n, /*final=*/true, state, values);
}

std::string PmfToCdf(const float* pmf, int64_t n, int64_t m, int precision, int32_t* cdf) {
  std::string error = CheckPrecision(precision);
  if (!error.empty()) return error;
  if (m < 1 || m > (int64_t{1} << precision)) {
    return "a PMF of " + Str(m) + " symbols does not fit precision " + Str(precision);
  }
  const int64_t total_freq = int64_t{1} << precision;
  const double spare = static_cast<double>(total_freq - m);
  std::vector<int64_t> freq(m);
  for (int64_t i = 0; i < n; ++i) {
    const float* row = pmf + i * m;
    double total = 0;
    for (int64_t j = 0; j < m; ++j) {
      if (!std::isfinite(row[j]) || row[j] < 0) {
        return "PMF row " + Str(i) + " has a negative or non-finite entry";
      }
      total += row[j];
    }
    int64_t sum = 0, argmax = 0;
    for (int64_t j = 0; j < m; ++j) {
      const double share = total > 0 ? row[j] / total : 1.0 / static_cast<double>(m);
      freq[j] = 1 + static_cast<int64_t>(std::floor(share * spare));
      sum += freq[j];
      if (row[j] > row[argmax]) argmax = j;
    }
    // Flooring leaves a few counts over; the most probable symbol takes them.
    freq[argmax] += total_freq - sum;
    int32_t* out = cdf + i * (m + 1);
    out[0] = 0;
    for (int64_t j = 0; j < m; ++j) out[j + 1] = out[j] + static_cast<int32_t>(freq[j]);
  }
  return "";
}

}  // namespace tfcomp
