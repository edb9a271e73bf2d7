#include "dro/nn/mid_block.h"

namespace dro::nn {

UNetMidBlock2DCrossAttnImpl::UNetMidBlock2DCrossAttnImpl(const BlockOptions& o) : options(o) {
  options.out_channels = options.in_channels;
  torch::nn::ModuleList resnet_list, attention_list;
  resnets.push_back(make_block_resnet(options, options.in_channels));
  resnet_list->push_back(resnets.back());
  for (int64_t i = 0; i < options.num_layers; ++i) {
    attentions.push_back(make_block_transformer(options, options.in_channels));
    attention_list->push_back(attentions.back());
    resnets.push_back(make_block_resnet(options, options.in_channels));
    resnet_list->push_back(resnets.back());
  }
  register_module("attentions", attention_list);
  register_module("resnets", resnet_list);
}

void UNetMidBlock2DCrossAttnImpl::set_gradient_checkpointing(bool on) {
  gradient_checkpointing = on;
  for (auto& a : attentions) a->set_gradient_checkpointing(on);
}

torch::Tensor UNetMidBlock2DCrossAttnImpl::forward(const torch::Tensor& x,
                                                   const torch::Tensor& temb,
                                                   const torch::Tensor& context) {
  // diffusers checkpoints the resnets after the first one, not the first.
  torch::Tensor h = resnets[0]->forward(x, temb);
  for (size_t i = 0; i < attentions.size(); ++i) {
    h = attentions[i]->forward(h, context);
    h = run_resnet(resnets[i + 1], h, temb, gradient_checkpointing);
  }
  return h;
}

UNetMidBlock2DImpl::UNetMidBlock2DImpl(const BlockOptions& o, bool add_attention) : options(o) {
  options.out_channels = options.in_channels;
  const int64_t C = options.in_channels;
  torch::nn::ModuleList resnet_list, attention_list;
  resnets.push_back(make_block_resnet(options, C));
  resnet_list->push_back(resnets.back());
  for (int64_t i = 0; i < options.num_layers; ++i) {
    if (add_attention) {
      // diffusers: heads = C / attention_head_dim with attention_head_dim = C, i.e. one head.
      AttentionOptions a;
      a.query_dim = C;
      a.heads = 1;
      a.dim_head = C;
      a.bias = true;
      a.norm_num_groups = options.groups;
      a.eps = options.eps;
      a.residual_connection = true;
      a.rescale_output_factor = options.output_scale_factor;
      attentions.emplace_back(a);
      attention_list->push_back(attentions.back());
    }
    resnets.push_back(make_block_resnet(options, C));
    resnet_list->push_back(resnets.back());
  }
  if (add_attention) register_module("attentions", attention_list);
  register_module("resnets", resnet_list);
}

torch::Tensor UNetMidBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  torch::Tensor h = resnets[0]->forward(x, temb);
  for (size_t i = 1; i < resnets.size(); ++i) {
    if (!attentions.empty()) h = attentions[i - 1]->forward(h);
    h = resnets[i]->forward(h, temb);
  }
  return h;
}

}  // namespace dro::nn
