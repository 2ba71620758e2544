// Declarations, shape functions and documentation of tfcomp's coding ops. Names carry the
// "Tfcomp" prefix so they never collide with tensorflow-compression's ops in one process.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfcomp {
namespace {

using tensorflow::Status;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

Status ScalarOutput(InferenceContext* c) {
  c->set_output(0, c->Scalar());
  return tensorflow::OkStatus();
}

REGISTER_OP("TfcompExactOperands")
    .Input("x: float")
    .Input("kernel: float")
    .Input("bias: float")
    .Input("finest: int32")
    .Input("room: int32")
    .Attr("activation_bits: int >= 2 = 11")
    .Output("x_int: float")
    .Output("kernel_scaled: float")
    .Output("bias_scaled: float")
    .Output("f: int32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle kernel, vector;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(1), 1, &kernel));
      for (int i = 2; i <= 4; ++i) TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 1, &vector));
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      c->set_output(2, c->input(2));
      c->set_output(3, c->Scalar());
      return tensorflow::OkStatus();
    })
    .Doc(R"doc(
The operands of an exact convolution (tfcomp.exact): the input rounded to its power-of-two
grid 2^-f (given as the integers X = x 2^f), the kernel rounded to the grid 2^-e_c of each
output channel c and scaled by 2^-f, and the bias rounded to the accumulator grid
2^-(e_c + f), where e_c = min(finest_c, room_c - f). Any convolution of x_int with
kernel_scaled, plus bias_scaled, then sums integers below 2^24 steps: float32 computes it
exactly, in any order.

x: any shape, finite.
kernel: [..., out], finite.
bias, finest, room: [out]; finest and room from tfcomp.exact.weight_grids.
activation_bits: |X| <= 2^(activation_bits - 1).
)doc");

REGISTER_OP("TfcompBiasAdd")
    .Input("value: float")
    .Input("bias: float")
    .Output("output: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle value, bias;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &value));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &bias));
      c->set_output(0, c->input(0));
      return tensorflow::OkStatus();
    })
    .Doc(R"doc(
value + bias, the bias broadcast over value's last axis: BiasAdd as a kernel of its own.

tfcomp.exact's convolutions add their bias with it. TensorFlow's graph optimizer fuses
its own BiasAdd, and an Add of another tensor after it, into the convolution before them,
and oneDNN may then accumulate the convolution's products onto that other tensor in an
order that depends on the CPU: the exact sums would round. Nothing fuses into this op.
)doc");

REGISTER_OP("TfcompTableEncode")
    .Input("values: int32")
    .Input("indexes: int32")
    .Input("cdf: int32")
    .Input("cdf_size: int32")
    .Input("offset: int32")
    .Attr("precision: int >= 1 = 16")
    .Output("encoded: string")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle unused;
      TF_RETURN_IF_ERROR(c->Merge(c->input(0), c->input(1), &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 1, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 1, &unused));
      return ScalarOutput(c);
    })
    .Doc(R"doc(
Entropy-codes int32 values, each with the CDF table selected by its index (interleaved rANS).

Table t describes `cdf_size[t] - 1` symbols: `cdf[t, 0] = 0`, `cdf[t, cdf_size[t] - 1] =
2^precision`, non-decreasing. Value v is coded as symbol `v - offset[t]` when that is in
[0, cdf_size[t] - 2); the last symbol is an escape after which any other int32 is coded
with an Elias-gamma-like code.

values: any shape.
indexes: same shape as values; table of each value, in [0, num_tables).
cdf: [num_tables, max_size] quantized CDFs.
cdf_size: [num_tables] number of valid entries of each row of cdf.
offset: [num_tables] value coded as symbol 0 of each table.
encoded: scalar string.
)doc");

REGISTER_OP("TfcompTableDecode")
    .Input("encoded: string")
    .Input("indexes: int32")
    .Input("cdf: int32")
    .Input("cdf_size: int32")
    .Input("offset: int32")
    .Attr("precision: int >= 1 = 16")
    .Output("values: int32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle unused;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 0, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &unused));
      c->set_output(0, c->input(1));
      return tensorflow::OkStatus();
    })
    .Doc(R"doc(
Decodes what TfcompTableEncode produced, given the same indexes and tables.

Fails with InvalidArgument on a corrupted, truncated or over-long stream.
values: same shape as indexes.
)doc");

REGISTER_OP("TfcompCdfEncode")
    .Input("values: int32")
    .Input("cdf: int32")
    .Attr("precision: int >= 1 = 16")
    .Output("encoded: string")
    .SetShapeFn(ScalarOutput)
    .Doc(R"doc(
Entropy-codes each value with its own CDF row (for distributions computed on the fly).

values: any shape; each in [0, M - 2] with non-zero probability.
cdf: values' shape + [M]: a quantized CDF per value (0 first, 2^precision last,
  non-decreasing).
encoded: scalar string.
)doc");

REGISTER_OP("TfcompCdfDecode")
    .Input("encoded: string")
    .Input("cdf: int32")
    .Attr("precision: int >= 1 = 16")
    .Output("values: int32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle unused, values;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 0, &unused));
      TF_RETURN_IF_ERROR(c->Subshape(c->input(1), 0, -1, &values));
      c->set_output(0, values);
      return tensorflow::OkStatus();
    })
    .Doc(R"doc(
Decodes what TfcompCdfEncode produced, given the same CDF rows.

All rows must be known up front; decoders that learn rows from earlier symbols use
TfcompCdfDecodeChunk.
values: cdf's shape without its last axis.
)doc");

REGISTER_OP("TfcompCdfDecodeChunk")
    .Input("encoded: string")
    .Input("state: int64")
    .Input("cdf: int32")
    .Attr("precision: int >= 1 = 16")
    .Attr("final: bool = false")
    .Output("values: int32")
    .Output("new_state: int64")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle unused, state, values;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 0, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &state));
      TF_RETURN_IF_ERROR(c->Subshape(c->input(2), 0, -1, &values));
      c->set_output(0, values);
      c->set_output(1, c->Vector(4));
      return tensorflow::OkStatus();
    })
    .Doc(R"doc(
Decodes the next symbols of a TfcompCdfEncode stream, resuming from `state`.

A sequential decoder (a context model whose CDF rows depend on the symbols decoded before)
calls this once per step with that step's rows, threading the state through; the encoder
codes all steps' symbols, in the same order, with one TfcompCdfEncode.
state: int64 [4]; zeros to start, then the previous call's new_state. A state that cannot
  belong to the stream is an InvalidArgument error.
final: the stream must end right after these symbols (set on the last call).
values: cdf's shape without its last axis.
new_state: the state after these symbols.
)doc");

REGISTER_OP("TfcompPmfToCdf")
    .Input("pmf: float")
    .Attr("precision: int >= 1 = 16")
    .Output("cdf: int32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle leading, out;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &leading));
      TF_RETURN_IF_ERROR(c->Subshape(c->input(0), 0, -1, &leading));
      auto m = c->Dim(c->input(0), -1);
      tensorflow::shape_inference::DimensionHandle m1;
      TF_RETURN_IF_ERROR(c->Add(m, 1, &m1));
      TF_RETURN_IF_ERROR(c->Concatenate(leading, c->Vector(m1), &out));
      c->set_output(0, out);
      return tensorflow::OkStatus();
    })
    .Doc(R"doc(
Quantizes probability mass functions into CDF rows, deterministically.

Every symbol gets a frequency of at least 1 out of 2^precision, so every symbol stays
codable; rounding leftovers go to the most probable symbol.
pmf: [..., M] non-negative, finite (need not sum to 1; all-zero rows become uniform).
cdf: [..., M + 1].
)doc");

#define TFCOMP_MIXTURE_ATTRS                 \
  Attr("num_levels: int = 256")              \
      .Attr("x_min: float = -1.0")           \
      .Attr("x_max: float = 1.0")           \
      .Attr("adaptation: int = 0")

REGISTER_OP("TfcompMixtureEncode")
    .Input("symbols: int32")
    .Input("logit_weights: float")
    .Input("means: float")
    .Input("log_scales: float")
    .Input("coeffs: float")
    .TFCOMP_MIXTURE_ATTRS
    .Output("encoded: string")
    .SetShapeFn(ScalarOutput)
    .Doc(R"doc(
Entropy-codes subpixels under discretized logistic mixtures (L3C / PixelCNN++).

Level k of num_levels stands for x_min + k * (x_max - x_min) / (num_levels - 1). Subpixel
(p, c) follows a mixture of K logistics with weights softmax(logit_weights[p, c]), means
means[p, c] shifted by sum_{j<c} coeffs[p, c(c-1)/2 + j] * x[p, j], and scales
exp(log_scales[p, c]); the extreme levels take the tails. CDFs are computed inside the
kernel with fixed-point arithmetic from parameters snapped to grids, so the decoder builds
the same CDFs on any machine.

symbols: [..., C] levels in [0, num_levels).
logit_weights: [..., C, K].
means: [..., C, K].
log_scales: [..., C, K].
coeffs: [..., C*(C-1)/2, K] channel-autoregressive coefficients.
adaptation: online adaptation flags, 1 (bias) | 2 (scale), 0 for none; rows for its
  neighbours are the innermost pixel dimension when the pixels are [..., H, W].
encoded: scalar string.
)doc");

REGISTER_OP("TfcompMixtureDecode")
    .Input("encoded: string")
    .Input("logit_weights: float")
    .Input("means: float")
    .Input("log_scales: float")
    .Input("coeffs: float")
    .TFCOMP_MIXTURE_ATTRS
    .Output("symbols: int32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle unused, leading, out;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 0, &unused));
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(1), 2, &unused));
      TF_RETURN_IF_ERROR(c->Subshape(c->input(1), 0, -1, &out));
      c->set_output(0, out);
      return tensorflow::OkStatus();
    })
    .Doc(R"doc(
Decodes what TfcompMixtureEncode produced, given the same parameters.

The channel-autoregressive shift uses the channels already decoded for the same pixel, so
the whole image is decoded in one call. Fails with InvalidArgument on a corrupted or
truncated stream.
symbols: [..., C].
)doc");

}  // namespace
}  // namespace tfcomp
