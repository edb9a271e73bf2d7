#include "dro/nn/up_block.h"

#include "dro/core/error.h"

namespace dro::nn {

UpBlock2DImpl::UpBlock2DImpl(const BlockOptions& o) : options(o) {
  const bool with_skips = options.prev_output_channels > 0;
  torch::nn::ModuleList resnet_list, attention_list;
  for (int64_t i = 0; i < options.num_layers; ++i) {
    int64_t in = 0;
    if (with_skips) {
      // The last resnet takes the skip from the block's input level (the previous down block).
      const int64_t skip = i == options.num_layers - 1 ? options.in_channels : options.out_channels;
      in = (i == 0 ? options.prev_output_channels : options.out_channels) + skip;
    } else {
      in = i == 0 ? options.in_channels : options.out_channels;
    }
    resnets.push_back(make_block_resnet(options, in));
    resnet_list->push_back(resnets.back());
    if (options.cross_attention) {
      attentions.push_back(make_block_transformer(options, options.out_channels));
      attention_list->push_back(attentions.back());
    }
  }
  if (options.cross_attention) register_module("attentions", attention_list);
  register_module("resnets", resnet_list);
  if (options.add_sampler) {
    upsampler = Upsample2D(options.out_channels, options.out_channels);
    torch::nn::ModuleList samplers;
    samplers->push_back(upsampler);
    register_module("upsamplers", samplers);
  }
}

void UpBlock2DImpl::set_gradient_checkpointing(bool on) {
  gradient_checkpointing = on;
  for (auto& a : attentions) a->set_gradient_checkpointing(on);
}

torch::Tensor UpBlock2DImpl::forward(const torch::Tensor& x, std::vector<torch::Tensor>* skips,
                                     const torch::Tensor& temb, const torch::Tensor& context,
                                     const c10::optional<std::vector<int64_t>>& upsample_size) {
  const bool with_skips = options.prev_output_channels > 0;
  if (with_skips && (!skips || skips->size() < resnets.size()))
    throw UsageError("[unet] up block needs one skip connection per resnet");
  torch::Tensor h = x;
  for (size_t i = 0; i < resnets.size(); ++i) {
    if (with_skips) {
      h = torch::cat({h, skips->back()}, 1);  // [B, prev + skip, H, W]
      skips->pop_back();
    }
    h = run_resnet(resnets[i], h, temb, gradient_checkpointing);
    if (!attentions.empty()) h = attentions[i]->forward(h, context);
  }
  if (upsampler) h = upsampler(h, upsample_size);
  return h;
}

}  // namespace dro::nn
