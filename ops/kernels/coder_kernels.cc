// TensorFlow CPU kernels around the plain C++ coders in ops/lib. Every input is validated
// here or in the coder; any problem becomes InvalidArgument, never a crash.
#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "ops/lib/exact_grid.h"
#include "ops/lib/mixture_coder.h"
#include "ops/lib/table_coder.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tfcomp {
namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::TensorShapeUtils;
using tensorflow::tstring;
namespace errors = tensorflow::errors;

#define TFCOMP_CHECK_OK(ctx, message)                                \
  do {                                                               \
    const std::string _m = (message);                                \
    OP_REQUIRES(ctx, _m.empty(), errors::InvalidArgument(_m));       \
  } while (0)

// Reads the CDF tables of the table coder from inputs `first`, `first + 1`, `first + 2`.
bool GetTables(OpKernelContext* ctx, int first, int precision, CdfTables* tables) {
  const Tensor& cdf = ctx->input(first);
  const Tensor& sizes = ctx->input(first + 1);
  const Tensor& offsets = ctx->input(first + 2);
  if (cdf.dims() != 2 || sizes.dims() != 1 || offsets.dims() != 1 ||
      sizes.dim_size(0) != cdf.dim_size(0) || offsets.dim_size(0) != cdf.dim_size(0)) {
    ctx->CtxFailure(errors::InvalidArgument(
        "cdf must be [num_tables, max_size] with cdf_size and offset [num_tables]; got ",
        cdf.shape().DebugString(), ", ", sizes.shape().DebugString(), ", ",
        offsets.shape().DebugString()));
    return false;
  }
  tables->cdf = cdf.flat<int32_t>().data();
  tables->sizes = sizes.flat<int32_t>().data();
  tables->offsets = offsets.flat<int32_t>().data();
  tables->num_tables = cdf.dim_size(0);
  tables->max_size = cdf.dim_size(1);
  tables->precision = precision;
  return true;
}

class TableEncodeOp : public OpKernel {
 public:
  explicit TableEncodeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("precision", &precision_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& values = ctx->input(0);
    const Tensor& indexes = ctx->input(1);
    OP_REQUIRES(ctx, values.shape() == indexes.shape(),
                errors::InvalidArgument("values and indexes must have the same shape; got ",
                                        values.shape().DebugString(), " and ",
                                        indexes.shape().DebugString()));
    CdfTables tables;
    if (!GetTables(ctx, 2, precision_, &tables)) return;
    std::string out;
    TFCOMP_CHECK_OK(ctx, TableEncode(tables, values.flat<int32_t>().data(),
                                     indexes.flat<int32_t>().data(), values.NumElements(),
                                     &out));
    Tensor* encoded;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape{}, &encoded));
    encoded->scalar<tstring>()() = std::move(out);
  }

 private:
  int precision_;
};

class TableDecodeOp : public OpKernel {
 public:
  explicit TableDecodeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("precision", &precision_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& encoded = ctx->input(0);
    const Tensor& indexes = ctx->input(1);
    OP_REQUIRES(ctx, TensorShapeUtils::IsScalar(encoded.shape()),
                errors::InvalidArgument("encoded must be a scalar string"));
    CdfTables tables;
    if (!GetTables(ctx, 2, precision_, &tables)) return;
    Tensor* values;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, indexes.shape(), &values));
    const tstring& data = encoded.scalar<tstring>()();
    TFCOMP_CHECK_OK(ctx, TableDecode(tables, data.data(), data.size(),
                                     indexes.flat<int32_t>().data(), indexes.NumElements(),
                                     values->flat<int32_t>().data()));
  }

 private:
  int precision_;
};

class CdfEncodeOp : public OpKernel {
 public:
  explicit CdfEncodeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("precision", &precision_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& values = ctx->input(0);
    const Tensor& cdf = ctx->input(1);
    TensorShape leading = cdf.shape();
    if (leading.dims() > 0) leading.RemoveLastDims(1);
    OP_REQUIRES(ctx, cdf.dims() == values.dims() + 1 && leading == values.shape(),
                errors::InvalidArgument("cdf must have the shape of values plus one axis; got ",
                                        cdf.shape().DebugString(), " for values ",
                                        values.shape().DebugString()));
    std::string out;
    TFCOMP_CHECK_OK(ctx, CdfEncode(cdf.flat<int32_t>().data(), cdf.dim_size(cdf.dims() - 1),
                                   precision_, values.flat<int32_t>().data(),
                                   values.NumElements(), &out));
    Tensor* encoded;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape{}, &encoded));
    encoded->scalar<tstring>()() = std::move(out);
  }

 private:
  int precision_;
};

class CdfDecodeOp : public OpKernel {
 public:
  explicit CdfDecodeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("precision", &precision_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& encoded = ctx->input(0);
    const Tensor& cdf = ctx->input(1);
    OP_REQUIRES(ctx, TensorShapeUtils::IsScalar(encoded.shape()),
                errors::InvalidArgument("encoded must be a scalar string"));
    OP_REQUIRES(ctx, cdf.dims() >= 1,
                errors::InvalidArgument("cdf must have at least one axis"));
    TensorShape shape = cdf.shape();
    shape.RemoveLastDims(1);
    Tensor* values;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &values));
    const tstring& data = encoded.scalar<tstring>()();
    TFCOMP_CHECK_OK(ctx, CdfDecode(cdf.flat<int32_t>().data(), cdf.dim_size(cdf.dims() - 1),
                                   precision_, data.data(), data.size(), shape.num_elements(),
                                   values->flat<int32_t>().data()));
  }

 private:
  int precision_;
};

class CdfDecodeChunkOp : public OpKernel {
 public:
  explicit CdfDecodeChunkOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("precision", &precision_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("final", &final_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& encoded = ctx->input(0);
    const Tensor& state = ctx->input(1);
    const Tensor& cdf = ctx->input(2);
    OP_REQUIRES(ctx, TensorShapeUtils::IsScalar(encoded.shape()),
                errors::InvalidArgument("encoded must be a scalar string"));
    OP_REQUIRES(ctx, state.dims() == 1 && state.dim_size(0) == kCdfDecodeStateSize,
                errors::InvalidArgument("state must have shape [", kCdfDecodeStateSize, "]"));
    OP_REQUIRES(ctx, cdf.dims() >= 1,
                errors::InvalidArgument("cdf must have at least one axis"));
    TensorShape shape = cdf.shape();
    shape.RemoveLastDims(1);
    Tensor* values;
    Tensor* new_state;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &values));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, state.shape(), &new_state));
    auto next = new_state->flat<int64_t>();
    for (int k = 0; k < kCdfDecodeStateSize; ++k) next(k) = state.flat<int64_t>()(k);
    const tstring& data = encoded.scalar<tstring>()();
    TFCOMP_CHECK_OK(ctx, CdfDecodeChunk(cdf.flat<int32_t>().data(),
                                        cdf.dim_size(cdf.dims() - 1), precision_, data.data(),
                                        data.size(), shape.num_elements(), final_, next.data(),
                                        values->flat<int32_t>().data()));
  }

 private:
  int precision_;
  bool final_;
};

class PmfToCdfOp : public OpKernel {
 public:
  explicit PmfToCdfOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("precision", &precision_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& pmf = ctx->input(0);
    OP_REQUIRES(ctx, pmf.dims() >= 1 && pmf.dim_size(pmf.dims() - 1) >= 1,
                errors::InvalidArgument("pmf must have a non-empty last axis"));
    TensorShape shape = pmf.shape();
    const int64_t m = shape.dim_size(shape.dims() - 1);
    shape.set_dim(shape.dims() - 1, m + 1);
    Tensor* cdf;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &cdf));
    TFCOMP_CHECK_OK(ctx, PmfToCdf(pmf.flat<float>().data(), pmf.NumElements() / m, m,
                                  precision_, cdf->flat<int32_t>().data()));
  }

 private:
  int precision_;
};

// Shared by the mixture encoder and decoder: attributes and parameter tensors.
class MixtureOpBase : public OpKernel {
 public:
  explicit MixtureOpBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    float x_min, x_max;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_levels", &spec_.num_levels));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("x_min", &x_min));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("x_max", &x_max));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("adaptation", &spec_.adaptation));
    spec_.x_min = x_min;
    spec_.x_max = x_max;
  }

 protected:
  // Reads inputs first..first+3 (logit_weights, means, log_scales, coeffs). On success sets
  // spec_.channels/components, `params` and the leading shape (one entry per pixel).
  bool GetParams(OpKernelContext* ctx, int first, MixtureSpec* spec, MixtureParams* params,
                 TensorShape* pixels) {
    const Tensor& w = ctx->input(first);
    const Tensor& m = ctx->input(first + 1);
    const Tensor& s = ctx->input(first + 2);
    const Tensor& c = ctx->input(first + 3);
    if (w.dims() < 2 || m.shape() != w.shape() || s.shape() != w.shape() ||
        c.dims() != w.dims()) {
      ctx->CtxFailure(errors::InvalidArgument(
          "logit_weights, means and log_scales must share a shape [..., C, K] and coeffs be "
          "[..., C*(C-1)/2, K]; got ", w.shape().DebugString(), ", ", m.shape().DebugString(),
          ", ", s.shape().DebugString(), ", ", c.shape().DebugString()));
      return false;
    }
    *spec = spec_;
    spec->channels = static_cast<int>(w.dim_size(w.dims() - 2));
    spec->components = static_cast<int>(w.dim_size(w.dims() - 1));
    const std::string error = ValidateMixtureSpec(*spec);
    if (!error.empty()) {
      ctx->CtxFailure(errors::InvalidArgument(error));
      return false;
    }
    *pixels = w.shape();
    pixels->RemoveLastDims(2);
    // Rows for the adaptation's neighbours: the innermost pixel dimension ([..., H, W]).
    spec->width = pixels->dims() >= 2 ? pixels->dim_size(pixels->dims() - 1) : 0;
    TensorShape expected_c = *pixels;
    expected_c.AddDim(spec->channels * (spec->channels - 1) / 2);
    expected_c.AddDim(spec->components);
    if (c.shape() != expected_c) {
      ctx->CtxFailure(errors::InvalidArgument("coeffs must be ", expected_c.DebugString(),
                                              ", got ", c.shape().DebugString()));
      return false;
    }
    params->logit_weights = w.flat<float>().data();
    params->means = m.flat<float>().data();
    params->log_scales = s.flat<float>().data();
    params->coeffs = c.flat<float>().data();
    return true;
  }

  MixtureSpec spec_;
};

class MixtureEncodeOp : public MixtureOpBase {
 public:
  using MixtureOpBase::MixtureOpBase;
  void Compute(OpKernelContext* ctx) override {
    MixtureSpec spec;
    MixtureParams params;
    TensorShape pixels;
    if (!GetParams(ctx, 1, &spec, &params, &pixels)) return;
    const Tensor& symbols = ctx->input(0);
    TensorShape expected = pixels;
    expected.AddDim(spec.channels);
    OP_REQUIRES(ctx, symbols.shape() == expected,
                errors::InvalidArgument("symbols must be ", expected.DebugString(), ", got ",
                                        symbols.shape().DebugString()));
    std::string out;
    TFCOMP_CHECK_OK(ctx, MixtureEncode(spec, params, symbols.flat<int32_t>().data(),
                                       pixels.num_elements(), &out));
    Tensor* encoded;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape{}, &encoded));
    encoded->scalar<tstring>()() = std::move(out);
  }
};

class MixtureDecodeOp : public MixtureOpBase {
 public:
  using MixtureOpBase::MixtureOpBase;
  void Compute(OpKernelContext* ctx) override {
    const Tensor& encoded = ctx->input(0);
    OP_REQUIRES(ctx, TensorShapeUtils::IsScalar(encoded.shape()),
                errors::InvalidArgument("encoded must be a scalar string"));
    MixtureSpec spec;
    MixtureParams params;
    TensorShape pixels;
    if (!GetParams(ctx, 1, &spec, &params, &pixels)) return;
    TensorShape shape = pixels;
    shape.AddDim(spec.channels);
    Tensor* symbols;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &symbols));
    const tstring& data = encoded.scalar<tstring>()();
    TFCOMP_CHECK_OK(ctx, MixtureDecode(spec, params, data.data(), data.size(),
                                       pixels.num_elements(), symbols->flat<int32_t>().data()));
  }
};

class ExactOperandsOp : public OpKernel {
 public:
  explicit ExactOperandsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("activation_bits", &activation_bits_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& kernel = ctx->input(1);
    const Tensor& bias = ctx->input(2);
    const Tensor& finest = ctx->input(3);
    const Tensor& room = ctx->input(4);
    OP_REQUIRES(ctx, kernel.dims() >= 1, errors::InvalidArgument("kernel must have an output "
                                                                 "axis"));
    const int64_t out = kernel.dim_size(kernel.dims() - 1);
    for (const Tensor* t : {&bias, &finest, &room}) {
      OP_REQUIRES(ctx, t->dims() == 1 && t->dim_size(0) == out,
                  errors::InvalidArgument("bias, finest and room must be [", out, "], got ",
                                          t->shape().DebugString()));
    }
    Tensor *x_int, *w, *b, *f;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &x_int));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, kernel.shape(), &w));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, bias.shape(), &b));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape{}, &f));
    ExactOperands in;
    in.x = x.flat<float>().data();
    in.n = x.NumElements();
    in.kernel = kernel.flat<float>().data();
    in.k = kernel.NumElements();
    in.bias = bias.flat<float>().data();
    in.finest = finest.flat<int32_t>().data();
    in.room = room.flat<int32_t>().data();
    in.out = out;
    in.activation_bits = activation_bits_;
    OP_REQUIRES(ctx, activation_bits_ <= 23,
                errors::InvalidArgument("activation_bits must be at most 23"));
    // The input's two passes (its largest magnitude, then X) split across the CPU threads:
    // a maximum and elementwise roundings give the same numbers however they are split.
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    const int64_t cost = 4;  // cycles per value, roughly
    std::atomic<uint32_t> peak{0};
    tensorflow::Shard(workers->NumThreads(), workers, in.n, cost,
                      [&](int64_t begin, int64_t end) {
                        const uint32_t local = ExactPeakBits(in.x + begin, end - begin);
                        uint32_t seen = peak.load();
                        while (local > seen && !peak.compare_exchange_weak(seen, local)) {
                        }
                      });
    OP_REQUIRES(ctx, peak.load() < kExactNonFinite,
                errors::InvalidArgument("input has a non-finite value"));
    const int32_t grid = ExactInputGrid(peak.load(), activation_bits_);
    TFCOMP_CHECK_OK(ctx, ExactWeightOperands(in, grid, w->flat<float>().data(),
                                             b->flat<float>().data()));
    float* x_out = x_int->flat<float>().data();
    tensorflow::Shard(workers->NumThreads(), workers, in.n, cost,
                      [&](int64_t begin, int64_t end) {
                        ExactRoundInput(in.x + begin, end - begin, grid, x_out + begin);
                      });
    f->scalar<int32_t>()() = grid;
  }

 private:
  int activation_bits_;
};

class BiasAddOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    const Tensor& value = ctx->input(0);
    const Tensor& bias = ctx->input(1);
    OP_REQUIRES(ctx, value.dims() >= 1 && bias.dims() == 1 &&
                         bias.dim_size(0) == value.dim_size(value.dims() - 1),
                errors::InvalidArgument("bias must be [channels] of value ",
                                        value.shape().DebugString(), ", got ",
                                        bias.shape().DebugString()));
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, value.shape(), &out));
    const int64_t channels = bias.dim_size(0);
    const int64_t rows = channels ? value.NumElements() / channels : 0;
    const float* in = value.flat<float>().data();
    const float* b = bias.flat<float>().data();
    float* o = out->flat<float>().data();
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    tensorflow::Shard(workers->NumThreads(), workers, rows, channels,
                      [&](int64_t begin, int64_t end) {
                        for (int64_t r = begin; r < end; ++r) {
                          for (int64_t c = 0; c < channels; ++c) {
                            o[r * channels + c] = in[r * channels + c] + b[c];
                          }
                        }
                      });
  }
};

REGISTER_KERNEL_BUILDER(Name("TfcompExactOperands").Device(DEVICE_CPU), ExactOperandsOp);
REGISTER_KERNEL_BUILDER(Name("TfcompBiasAdd").Device(DEVICE_CPU), BiasAddOp);
REGISTER_KERNEL_BUILDER(Name("TfcompTableEncode").Device(DEVICE_CPU), TableEncodeOp);
REGISTER_KERNEL_BUILDER(Name("TfcompTableDecode").Device(DEVICE_CPU), TableDecodeOp);
REGISTER_KERNEL_BUILDER(Name("TfcompCdfEncode").Device(DEVICE_CPU), CdfEncodeOp);
REGISTER_KERNEL_BUILDER(Name("TfcompCdfDecode").Device(DEVICE_CPU), CdfDecodeOp);
REGISTER_KERNEL_BUILDER(Name("TfcompCdfDecodeChunk").Device(DEVICE_CPU), CdfDecodeChunkOp);
REGISTER_KERNEL_BUILDER(Name("TfcompPmfToCdf").Device(DEVICE_CPU), PmfToCdfOp);
REGISTER_KERNEL_BUILDER(Name("TfcompMixtureEncode").Device(DEVICE_CPU), MixtureEncodeOp);
REGISTER_KERNEL_BUILDER(Name("TfcompMixtureDecode").Device(DEVICE_CPU), MixtureDecodeOp);

}  // namespace
}  // namespace tfcomp
