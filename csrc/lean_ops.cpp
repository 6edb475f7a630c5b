// Convolutions with frozen weights that keep less for the backward pass
// (src/models/lean.rs explains where and why).
//
// libtorch's autograd keeps a convolution's input for the weight gradient
// even when the weights are frozen, and a GroupNorm -> SiLU -> conv chain
// keeps three activation maps: the norm's input, the SiLU's input and the
// convolution's input. Guidance never needs the weight gradient, and the
// input gradient of this chain needs only the norm's input and statistics:
// the SiLU's input is recomputed from them in the backward pass with one
// per-channel scale and shift. In the VQGAN decoder at full resolution this
// keeps one map where libtorch keeps three. On a GPU the statistics of a
// large map come from a reduction over the whole GPU (group_moments).
//
// The error convention is shim.h's.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "shim.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The per-(image, channel) scale and shift that turn x into the group norm's
// output, n = x * a + b, in float32 and shaped [N, C, 1, 1] (libtorch's own
// kernels normalise with the same two coefficients). Written with
// broadcasting over [N, G, C/G] so that it is a handful of tiny kernels.
std::pair<at::Tensor, at::Tensor> norm_coefficients(const at::Tensor& mean, const at::Tensor& rstd,
                                                    const at::Tensor& gamma,
                                                    const at::Tensor& beta, int64_t channels) {
  const int64_t n = mean.size(0), groups = mean.size(1);
  const std::vector<int64_t> grouped{1, groups, channels / groups};
  auto a = rstd.to(at::kFloat).unsqueeze(2) * gamma.to(at::kFloat).view(grouped);
  auto b = at::addcmul(beta.to(at::kFloat).view(grouped), mean.to(at::kFloat).unsqueeze(2), a, -1);
  return {a.view({n, channels, 1, 1}), b.view({n, channels, 1, 1})};
}

// Maps at least this large (bytes) take their statistics from group_moments
// on a GPU. Below it libtorch's group norm wins: its statistics kernel is
// slow only in proportion to the map, while the reduction path launches
// about ten more (tiny) kernels, and a CUDA-graph step pays for each.
constexpr int64_t kReduceStatsBytes = int64_t{16} << 20;

// A group norm's statistics of x [N, C, H, W] (contiguous or channels-last):
// mean and 1/sqrt(var + eps) per (image, group), [N, G], in the dtype
// libtorch's native_group_norm keeps them: x's, or float32 for a reduced-
// precision x with float32 parameters. native_group_norm_backward takes them
// in that dtype (on CUDA only when x and the parameters share a dtype, which
// the decoder's variable store guarantees), and libtorch 2.11's forward, too,
// normalises a bf16 x with its bf16-rounded statistics. They come from one
// Welford reduction that libtorch spreads over the whole GPU;
// native_group_norm gives each (image, group) one thread block, 32 blocks for
// one image, which left most of an H100 idle (BENCHMARKS.md).
std::pair<at::Tensor, at::Tensor> group_moments(const at::Tensor& x, int64_t groups, double eps,
                                                at::ScalarType param_type) {
  const int64_t n = x.size(0), c = x.size(1);
  const int64_t hw = n * c == 0 ? 0 : x.numel() / (n * c);
  const bool channels_last = x.dim() == 4 && x.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  auto [var, mean] = channels_last
      ? at::var_mean(x.permute({0, 2, 3, 1}).view({n, hw, groups, c / groups}), {1, 3}, 0, false)
      : at::var_mean(x.view({n, groups, -1}), {2}, 0, false);
  const bool mixed = x.scalar_type() != param_type && param_type == at::kFloat;
  const auto stat_type = mixed ? at::kFloat : x.scalar_type();
  auto rstd = (var.to(at::kFloat) + eps).rsqrt();
  return {mean.to(stat_type), rstd.to(stat_type)};
}

// y = conv2d(silu(group_norm(x)), weight, bias) when gamma is defined,
// y = conv2d(x, weight, bias) when it is not. Weights, bias and the norm's
// affine parameters get no gradient.
struct LeanConv : public torch::autograd::Function<LeanConv> {
  // Optional tensors are std::optional: autograd cannot record an undefined
  // at::Tensor as an input.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const std::optional<at::Tensor>& gamma,
                            const std::optional<at::Tensor>& beta, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, int64_t groups, double eps,
                            int64_t stride, int64_t padding, bool reduce_stats) {
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["sizes"] = x.sizes().vec();
    ctx->saved_data["channels_last"] =
        x.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
    if (!gamma || !beta) {
      ctx->save_for_backward({weight});
      return at::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
    }
    const auto format = x.suggest_memory_format();
    const auto input = x.contiguous(format);
    const int64_t n = input.size(0), c = input.size(1);
    const int64_t hw = n * c == 0 ? 0 : input.numel() / (n * c);
    at::Tensor activated, mean, rstd;
    const bool large = input.numel() * input.element_size() >= kReduceStatsBytes;
    // libtorch's CUDA group norm takes NCHW only: a channels-last map there
    // takes the reduction path too (it reads either layout).
    const bool channels_last = format == at::MemoryFormat::ChannelsLast;
    if ((input.is_cuda() && (large || channels_last)) || reduce_stats) {
      std::tie(mean, rstd) = group_moments(input, groups, eps, gamma->scalar_type());
      auto [a, b] = norm_coefficients(mean, rstd, *gamma, *beta, c);
      // x * a + b in x's dtype and layout, as libtorch's kernel applies it.
      activated = at::empty_like(input, format);
      at::addcmul_out(activated, b, input, a);
      // The backward pass applies the same coefficients again.
      ctx->save_for_backward({weight, input, mean, rstd, *gamma, *beta, a, b});
    } else {
      std::tie(activated, mean, rstd) =
          at::native_group_norm(input, gamma, beta, n, c, hw, groups, eps);
      ctx->save_for_backward({weight, input, mean, rstd, *gamma, *beta});
    }
    at::silu_(activated);
    return at::conv2d(activated, weight, bias, {stride, stride}, {padding, padding});
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& weight = saved[0];
    const int64_t stride = ctx->saved_data["stride"].toInt();
    const int64_t padding = ctx->saved_data["padding"].toInt();
    const auto sizes = ctx->saved_data["sizes"].toIntVector();
    const auto format = ctx->saved_data["channels_last"].toBool() ? at::MemoryFormat::ChannelsLast
                                                                    : at::MemoryFormat::Contiguous;
    const auto grad = grads[0].contiguous(format);
    // The convolution's input gradient reads the input's shape, dtype and
    // layout only (libtorch reads its values for the weight gradient alone),
    // so `like` may be any tensor with that metadata.
    auto conv_input_grad = [&](const at::Tensor& like) {
      return std::get<0>(at::convolution_backward(grad, like, weight, std::nullopt, {stride, stride},
                                                  {padding, padding}, {1, 1}, false, {0, 0}, 1,
                                                  {true, false, false}));
    };
    variable_list out(10);
    if (saved.size() == 1) {
      // With stride 1 the input gradient is the transposed convolution of
      // the gradient, which needs no stand-in for the input (that would be
      // one more map the size of the up-sampled input).
      out[0] = stride == 1
          ? at::conv_transpose2d(grad, weight, std::nullopt, 1, padding)
          : conv_input_grad(at::empty(sizes, grad.options().memory_format(format)));
      return out;
    }
    const auto& input = saved[1];
    const auto& mean = saved[2];
    const auto& rstd = saved[3];
    const auto& gamma = saved[4];
    const auto& beta = saved[5];
    const int64_t n = input.size(0), c = input.size(1);
    const int64_t hw = n * c == 0 ? 0 : input.numel() / (n * c);
    const int64_t groups = ctx->saved_data["groups"].toInt();
    // The norm's output again, x * a + b, with the forward's coefficients or
    // (after libtorch's group norm) coefficients made from its saved
    // statistics: never by a second group norm, whose statistics kernel
    // (one thread block per image and group) was most of this node's cost
    // on an H100 (BENCHMARKS.md, run 6).
    at::Tensor a, b;
    if (saved.size() == 8) {
      a = saved[6];
      b = saved[7];
    } else {
      std::tie(a, b) = norm_coefficients(mean, rstd, gamma, beta, c);
    }
    auto normed = at::empty_like(input);
    at::addcmul_out(normed, b, input, a);
    auto grad_normed = at::silu_backward(conv_input_grad(normed), normed);
    // libtorch's CUDA kernels read dY and X as NCHW buffers whatever their
    // strides (a channels-last view would give wrong sums, not an error), so
    // on a GPU both go in NCHW; the CPU kernels read either layout.
    const auto norm_format = input.is_cuda() ? at::MemoryFormat::Contiguous : format;
    out[0] = std::get<0>(at::native_group_norm_backward(
        grad_normed.contiguous(norm_format), input.contiguous(norm_format), mean, rstd, gamma, n,
        c, hw, groups, {true, false, false}));
    return out;
  }
};

}  // namespace

extern "C" {

// See LeanConv. `gamma` and `beta` null: a plain convolution that keeps no
// activation. `reduce_stats` non-zero: the GPU's way to the norm's
// statistics on any device (for tests on the CPU). Returns a new at::Tensor*
// or null with `err` set.
void* zt_lean_conv(void* x, void* gamma, void* beta, void* weight, void* bias, int64_t groups,
                   double eps, int64_t stride, int64_t padding, int reduce_stats, char** err) {
  at::Tensor* out = nullptr;
  zt::guarded(err, [&] {
    auto tensor = [](void* p) {
      return p ? std::optional<at::Tensor>(*static_cast<at::Tensor*>(p)) : std::nullopt;
    };
    out = new at::Tensor(LeanConv::apply(*tensor(x), tensor(gamma), tensor(beta), *tensor(weight),
                                         tensor(bias), groups, eps, stride, padding,
                                         reduce_stats != 0));
  });
  return out;
}

}  // extern "C"
