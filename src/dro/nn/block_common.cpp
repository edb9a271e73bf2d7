#include "dro/nn/block_common.h"

#include "dro/core/error.h"
#include "dro/nn/checkpoint.h"

namespace dro::nn {

ResnetBlock2D make_block_resnet(const BlockOptions& o, int64_t in) {
  ResnetBlock2DOptions r;
  r.in_channels = in;
  r.out_channels = o.out_channels;
  r.temb_channels = o.temb_channels;
  r.groups = o.groups;
  r.eps = o.eps;
  r.dropout = o.dropout;
  r.output_scale_factor = o.output_scale_factor;
  return ResnetBlock2D(r);
}

Transformer2DModel make_block_transformer(const BlockOptions& o, int64_t channels) {
  if (o.heads <= 0 || channels % o.heads != 0)
    throw UsageError(
        cat("[unet] ", channels, " channels cannot be split into ", o.heads,
            " attention heads (num_attention_heads / attention_head_dim in the config)"));
  Transformer2DOptions t;
  t.in_channels = channels;
  t.heads = o.heads;
  t.dim_head = channels / o.heads;
  t.num_layers = o.transformer_layers;
  t.cross_attention_dim = o.cross_attention_dim;
  t.norm_num_groups = o.groups;
  t.use_linear_projection = o.use_linear_projection;
  t.only_cross_attention = o.only_cross_attention;
  t.upcast_attention = o.upcast_attention;
  t.dropout = o.dropout;
  return Transformer2DModel(t);
}

torch::Tensor run_resnet(ResnetBlock2D& resnet, const torch::Tensor& x, const torch::Tensor& temb,
                         bool checkpointing) {
  if (!should_checkpoint(checkpointing)) return resnet->forward(x, temb);
  auto r = resnet.ptr();
  return checkpoint(
      [r, slot = current_lora_slot()](const std::vector<torch::Tensor>& in) {
        LoraScope scope(slot);  // the recomputation may run on autograd's device thread
        return r->forward(in[0], in[1]);
      },
      {x, temb}, parameters_with_lora(*r));
}

}  // namespace dro::nn
