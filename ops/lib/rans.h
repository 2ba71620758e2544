// Interleaved rANS entropy coder core: no TensorFlow types, unit-testable on its own.
//
// Two coder states ("lanes") are interleaved: symbol i of a stream uses lane i % 2, so the
// decoder's two dependency chains overlap in the CPU. Each state lives in [2^31, 2^63) and
// moves 32-bit words in and out; probabilities have at most 16 bits of precision, so a
// single renormalisation step per symbol always suffices, on either side, and the state
// stays far above the precision (which keeps the coding overhead negligible).
//
// rANS is last-in-first-out: the encoder must be fed the events of a stream in exactly the
// reverse of the order in which the decoder will take them. Stream layout (little endian):
//
//   [state of lane 0: u64][state of lane 1: u64][32-bit words in decoding order]
//
// The encoder starts both lanes at kRansLow, so a decoder that consumed a valid stream ends
// with both lanes at kRansLow and no words left; `RansDecoder::Finish` checks exactly that.
#ifndef TFCOMP_OPS_LIB_RANS_H_
#define TFCOMP_OPS_LIB_RANS_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the stream reader assumes little endian");

namespace tfcomp {

constexpr int kRansLanes = 2;
constexpr uint64_t kRansLow = uint64_t{1} << 31;
constexpr int kRansMaxPrecision = 16;

class RansEncoder {
 public:
  RansEncoder() { Reset(); }

  void Reset() {
    for (auto& s : state_) s = kRansLow;
    words_.clear();
  }

  // Pushes one event: a symbol occupying [start, start + freq) of [0, 2^precision).
  // Requires 1 <= precision <= 16, freq >= 1 and start + freq <= 2^precision.
  inline void Put(int lane, uint32_t start, uint32_t freq, int precision) {
    uint64_t x = state_[lane];
    const uint64_t x_max = static_cast<uint64_t>(freq) << (63 - precision);
    if (x >= x_max) {
      words_.push_back(static_cast<uint32_t>(x));
      x >>= 32;
    }
    state_[lane] = ((x / freq) << precision) + (x % freq) + start;
  }

  // Appends the finished stream to `out` and resets the encoder.
  void Finish(std::string* out) {
    const size_t base = out->size();
    out->resize(base + 8 * kRansLanes + 4 * words_.size());
    char* p = &(*out)[base];
    for (int l = 0; l < kRansLanes; ++l) {
      for (int b = 0; b < 8; ++b) *p++ = static_cast<char>(state_[l] >> (8 * b));
    }
    // Words were produced in encoding order; the decoder takes them in reverse.
    for (size_t i = words_.size(); i-- > 0;) {
      for (int b = 0; b < 4; ++b) *p++ = static_cast<char>(words_[i] >> (8 * b));
    }
    Reset();
  }

  size_t pending_words() const { return words_.size(); }

 private:
  uint64_t state_[kRansLanes];
  std::vector<uint32_t> words_;
};

class RansDecoder {
 public:
  // `data` must outlive the decoder. Returns false from `ok()` if the header is malformed.
  RansDecoder(const char* data, size_t size) {
    ok_ = size >= 8 * kRansLanes && (size - 8 * kRansLanes) % 4 == 0;
    if (!ok_) return;
    const auto* p = reinterpret_cast<const uint8_t*>(data);
    for (int l = 0; l < kRansLanes; ++l) {
      uint64_t x = 0;
      for (int b = 0; b < 8; ++b) x |= static_cast<uint64_t>(p[b]) << (8 * b);
      p += 8;
      state_[l] = x;
      ok_ = ok_ && x >= kRansLow && x < (kRansLow << 32);
    }
    pos_ = p;
    end_ = reinterpret_cast<const uint8_t*>(data) + size;
  }

  // Resumes at a point that `Save` recorded while decoding the same stream. ok() is false
  // if the point cannot belong to a stream of `size` bytes.
  RansDecoder(const char* data, size_t size, const uint64_t lanes[kRansLanes], uint64_t offset) {
    ok_ = size >= 8 * kRansLanes && (size - 8 * kRansLanes) % 4 == 0 &&
          offset >= 8 * kRansLanes && offset <= size && (offset - 8 * kRansLanes) % 4 == 0;
    for (int l = 0; l < kRansLanes; ++l) {
      state_[l] = lanes[l];
      ok_ = ok_ && lanes[l] >= kRansLow && lanes[l] < (kRansLow << 32);
    }
    if (!ok_) return;
    pos_ = reinterpret_cast<const uint8_t*>(data) + offset;
    end_ = reinterpret_cast<const uint8_t*>(data) + size;
  }

  // Records the decoding point: the lane states and the byte offset of the next word.
  void Save(const char* data, uint64_t lanes[kRansLanes], uint64_t* offset) const {
    for (int l = 0; l < kRansLanes; ++l) lanes[l] = state_[l];
    *offset = static_cast<uint64_t>(pos_ - reinterpret_cast<const uint8_t*>(data));
  }

  bool ok() const { return ok_; }

  // The slot in [0, 2^precision) that identifies the next symbol of `lane`.
  inline uint32_t Peek(int lane, int precision) const {
    return static_cast<uint32_t>(state_[lane]) & ((1u << precision) - 1);
  }

  // Removes the symbol [start, start + freq) that `Peek` identified. Returns false when
  // the stream ends early (a truncated or corrupted stream).
  inline bool Advance(int lane, uint32_t start, uint32_t freq, int precision) {
    uint64_t x = state_[lane];
    x = freq * (x >> precision) + (x & ((uint64_t{1} << precision) - 1)) - start;
    if (x < kRansLow) {
      if (pos_ == end_) {
        ok_ = false;
        return false;
      }
      uint32_t word;
      std::memcpy(&word, pos_, 4);  // little-endian hosts only (x86-64, aarch64)
      x = (x << 32) | word;
      pos_ += 4;
    }
    state_[lane] = x;
    return true;
  }

  // True if the stream was consumed exactly: every lane back at its initial state and no
  // words left over. Any other outcome means the stream does not match what was decoded.
  bool Finish() const {
    if (!ok_ || pos_ != end_) return false;
    for (auto s : state_) {
      if (s != kRansLow) return false;
    }
    return true;
  }

 private:
  bool ok_ = false;
  uint64_t state_[kRansLanes] = {};
  const uint8_t* pos_ = nullptr;
  const uint8_t* end_ = nullptr;
};

}  // namespace tfcomp

#endif  // TFCOMP_OPS_LIB_RANS_H_
