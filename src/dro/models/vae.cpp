#include "dro/models/vae.h"

#include "dro/nn/checkpoint.h"

namespace dro::models {
namespace {

constexpr double kVaeEps = 1e-6;  // every VAE norm (diffusers passes resnet_eps=1e-6 throughout)

nn::BlockOptions vae_block(const VaeConfig& c) {
  nn::BlockOptions o;
  o.temb_channels = 0;
  o.groups = c.norm_num_groups;
  o.eps = kVaeEps;
  return o;
}

torch::nn::Conv2d conv3x3(int64_t in, int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1));
}

// module->forward(x) as diffusers' VAE runs its blocks: through the checkpoint when it is on.
template <typename Block, typename Fn>
torch::Tensor run_block(const Block& block, const torch::Tensor& x, bool checkpointing, Fn fn) {
  if (!nn::should_checkpoint(checkpointing)) return fn(x);
  return nn::checkpoint([fn](const std::vector<torch::Tensor>& in) { return fn(in[0]); }, {x},
                        block->parameters());
}

torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(kVaeEps));
}

}  // namespace

VaeEncoderImpl::VaeEncoderImpl(const VaeConfig& c) {
  const size_t n = c.block_out_channels.size();
  conv_in = register_module("conv_in", conv3x3(c.in_channels, c.block_out_channels[0]));
  torch::nn::ModuleList down_list;
  int64_t out_ch = c.block_out_channels[0];
  for (size_t i = 0; i < n; ++i) {
    nn::BlockOptions o = vae_block(c);
    o.in_channels = out_ch;
    o.out_channels = out_ch = c.block_out_channels[i];
    o.num_layers = c.layers_per_block;
    o.add_sampler = i + 1 < n;
    o.downsample_padding = 0;  // the encoder pads right/bottom only
    down_blocks.emplace_back(o);
    down_list->push_back(down_blocks.back());
  }
  register_module("down_blocks", down_list);
  nn::BlockOptions m = vae_block(c);
  m.in_channels = c.block_out_channels.back();
  mid_block = register_module("mid_block", nn::UNetMidBlock2D(m, c.mid_block_add_attention));
  conv_norm_out =
      register_module("conv_norm_out", group_norm(c.norm_num_groups, c.block_out_channels.back()));
  conv_out =
      register_module("conv_out", conv3x3(c.block_out_channels.back(), 2 * c.latent_channels));
}

torch::Tensor VaeEncoderImpl::forward(const torch::Tensor& image) {
  torch::Tensor h = conv_in(image);
  for (auto& block : down_blocks) {
    auto b = block.ptr();
    h = run_block(block, h, gradient_checkpointing,
                  [b](const torch::Tensor& x) { return b->forward(x, {}, {}, nullptr); });
  }
  auto mid = mid_block.ptr();
  h = run_block(mid_block, h, gradient_checkpointing,
                [mid](const torch::Tensor& x) { return mid->forward(x); });
  return conv_out(torch::silu(conv_norm_out(h)));
}

VaeDecoderImpl::VaeDecoderImpl(const VaeConfig& c) {
  const size_t n = c.block_out_channels.size();
  conv_in = register_module("conv_in", conv3x3(c.latent_channels, c.block_out_channels.back()));
  nn::BlockOptions m = vae_block(c);
  m.in_channels = c.block_out_channels.back();
  mid_block = register_module("mid_block", nn::UNetMidBlock2D(m, c.mid_block_add_attention));
  torch::nn::ModuleList up_list;
  int64_t out_ch = c.block_out_channels.back();
  for (size_t i = 0; i < n; ++i) {
    nn::BlockOptions o = vae_block(c);
    o.in_channels = out_ch;
    o.out_channels = out_ch = c.block_out_channels[n - 1 - i];
    o.num_layers = c.layers_per_block + 1;
    o.add_sampler = i + 1 < n;
    up_blocks.emplace_back(o);
    up_list->push_back(up_blocks.back());
  }
  register_module("up_blocks", up_list);
  conv_norm_out =
      register_module("conv_norm_out", group_norm(c.norm_num_groups, c.block_out_channels[0]));
  conv_out = register_module("conv_out", conv3x3(c.block_out_channels[0], c.out_channels));
}

torch::Tensor VaeDecoderImpl::forward(const torch::Tensor& z) {
  auto mid = mid_block.ptr();
  torch::Tensor h = run_block(mid_block, conv_in(z), gradient_checkpointing,
                              [mid](const torch::Tensor& x) { return mid->forward(x); });
  for (auto& block : up_blocks) {
    auto b = block.ptr();
    h = run_block(block, h, gradient_checkpointing,
                  [b](const torch::Tensor& x) { return b->forward(x, nullptr, {}, {}); });
  }
  return conv_out(torch::silu(conv_norm_out(h)));
}

}  // namespace dro::models
