#include "dro/nn/resnet_block.h"

#include "dro/core/error.h"
#include "dro/nn/functional.h"

namespace dro::nn {

ResnetBlock2DImpl::ResnetBlock2DImpl(const ResnetBlock2DOptions& o) : options(o) {
  if (options.out_channels == 0) options.out_channels = options.in_channels;
  const int64_t in = options.in_channels, out = options.out_channels;
  if (in % options.groups != 0 || out % options.groups != 0)
    throw UsageError(cat("[resnet] channels ", in, " -> ", out, " are not divisible by ",
                         options.groups, " norm groups"));
  using torch::nn::Conv2dOptions;
  using torch::nn::GroupNormOptions;
  norm1 = register_module(
      "norm1", torch::nn::GroupNorm(GroupNormOptions(options.groups, in).eps(options.eps)));
  conv1 = register_module("conv1", Conv2d(Conv2dOptions(in, out, 3).padding(1)));
  if (options.temb_channels > 0)
    time_emb_proj = register_module("time_emb_proj", Linear(options.temb_channels, out));
  norm2 = register_module(
      "norm2", torch::nn::GroupNorm(GroupNormOptions(options.groups, out).eps(options.eps)));
  conv2 = register_module("conv2", Conv2d(Conv2dOptions(out, out, 3).padding(1)));
  if (in != out)
    conv_shortcut = register_module("conv_shortcut", Conv2d(Conv2dOptions(in, out, 1)));
}

torch::Tensor ResnetBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  torch::Tensor h = conv1(torch::silu(norm(norm1, x)));
  if (time_emb_proj && temb.defined()) {
    // t: [B, out] -> [B, out, 1, 1]
    torch::Tensor t = time_emb_proj(torch::silu(temb));
    h.add_(t.view({t.size(0), t.size(1), 1, 1}));  // conv1's output is not saved by autograd
  }
  h = torch::silu(norm(norm2, h));
  if (options.dropout > 0.0) h = torch::dropout(h, options.dropout, is_training());
  h = conv2(h);
  torch::Tensor out = conv_shortcut ? conv_shortcut(x).add_(h) : x + h;
  if (options.output_scale_factor != 1.0) out.div_(options.output_scale_factor);
  return out;
}

}  // namespace dro::nn
