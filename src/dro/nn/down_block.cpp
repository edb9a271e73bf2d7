#include "dro/nn/down_block.h"

namespace dro::nn {

DownBlock2DImpl::DownBlock2DImpl(const BlockOptions& o) : options(o) {
  torch::nn::ModuleList resnet_list, attention_list;
  for (int64_t i = 0; i < options.num_layers; ++i) {
    resnets.push_back(
        make_block_resnet(options, i == 0 ? options.in_channels : options.out_channels));
    resnet_list->push_back(resnets.back());
    if (options.cross_attention) {
      attentions.push_back(make_block_transformer(options, options.out_channels));
      attention_list->push_back(attentions.back());
    }
  }
  if (options.cross_attention) register_module("attentions", attention_list);
  register_module("resnets", resnet_list);
  if (options.add_sampler) {
    downsampler =
        Downsample2D(options.out_channels, options.out_channels, options.downsample_padding);
    torch::nn::ModuleList samplers;
    samplers->push_back(downsampler);
    register_module("downsamplers", samplers);
  }
}

void DownBlock2DImpl::set_gradient_checkpointing(bool on) {
  gradient_checkpointing = on;
  for (auto& a : attentions) a->set_gradient_checkpointing(on);
}

torch::Tensor DownBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb,
                                       const torch::Tensor& context,
                                       std::vector<torch::Tensor>* skips) {
  torch::Tensor h = x;
  for (size_t i = 0; i < resnets.size(); ++i) {
    h = run_resnet(resnets[i], h, temb, gradient_checkpointing);
    if (!attentions.empty()) h = attentions[i]->forward(h, context);
    if (skips) skips->push_back(h);
  }
  if (downsampler) {
    h = downsampler(h);
    if (skips) skips->push_back(h);
  }
  return h;
}

}  // namespace dro::nn
