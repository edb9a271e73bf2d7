#include "dro/models/unet.h"

#include <algorithm>

#include "dro/core/error.h"
#include "dro/nn/functional.h"
#include "dro/io/weights.h"

namespace dro::models {
namespace {

template <typename T>
std::vector<T> reversed(std::vector<T> v) {
  std::reverse(v.begin(), v.end());
  return v;
}

// diffusers get_activation, for time_embedding_act_fn.
bool is_activation(const std::string& name) {
  return name == "silu" || name == "swish" || name == "gelu" || name == "mish";
}

torch::Tensor activation(const std::string& name, const torch::Tensor& x) {
  if (name == "gelu") return torch::gelu(x);
  if (name == "mish") return torch::mish(x);
  return torch::silu(x);
}

}  // namespace

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNetConfig& config) : config_(config) {
  const auto& c = config_;
  const size_t n = c.block_out_channels.size();
  const int64_t c0 = c.block_out_channels[0];
  const int64_t temb = c.time_embed_dim();
  if (!c.time_embedding_act_fn.empty() && !is_activation(c.time_embedding_act_fn))
    throw UsageError(cat("[unet] time_embedding_act_fn '", c.time_embedding_act_fn,
                         "' is not supported (silu, swish, gelu, mish)"));

  conv_in = register_module(
      "conv_in", nn::Conv2d(torch::nn::Conv2dOptions(c.in_channels, c0, c.conv_in_kernel)
                                       .padding((c.conv_in_kernel - 1) / 2)));
  time_proj = register_module(
      "time_proj", nn::Timesteps(c0, c.flip_sin_to_cos, static_cast<double>(c.freq_shift)));
  time_embedding = register_module("time_embedding", nn::TimestepEmbedding(c0, temb));
  if (needs_added_conditions()) {
    add_time_proj =
        register_module("add_time_proj", nn::Timesteps(c.addition_time_embed_dim, c.flip_sin_to_cos,
                                                       static_cast<double>(c.freq_shift)));
    add_embedding = register_module(
        "add_embedding", nn::TimestepEmbedding(c.projection_class_embeddings_input_dim, temb));
  }

  // Settings every block shares.
  nn::BlockOptions common;
  common.temb_channels = temb;
  common.groups = c.norm_num_groups;
  common.eps = c.norm_eps;
  common.dropout = c.dropout;
  common.use_linear_projection = c.use_linear_projection;
  common.upcast_attention = c.upcast_attention;
  // diffusers does not pass resnet_out_scale_factor to the SD block types: they use 1.0.

  torch::nn::ModuleList down_list;
  int64_t out_ch = c0;
  for (size_t i = 0; i < n; ++i) {
    nn::BlockOptions o = common;
    o.in_channels = out_ch;
    o.out_channels = out_ch = c.block_out_channels[i];
    o.num_layers = c.layers_per_block[i];
    o.add_sampler = i + 1 < n;
    o.downsample_padding = c.downsample_padding;
    o.cross_attention = c.down_block_types[i] == "CrossAttnDownBlock2D";
    o.transformer_layers = c.transformer_layers_per_block[i];
    o.heads = c.num_attention_heads[i];
    o.cross_attention_dim = c.cross_attention_dim[i];
    o.only_cross_attention = c.only_cross_attention[i];
    down_blocks.emplace_back(o);
    down_list->push_back(down_blocks.back());
  }
  register_module("down_blocks", down_list);

  if (!c.mid_block_type.empty()) {
    nn::BlockOptions o = common;
    o.in_channels = o.out_channels = c.block_out_channels.back();
    o.num_layers = 1;
    o.output_scale_factor = c.mid_block_scale_factor;
    o.cross_attention = true;
    o.transformer_layers = c.transformer_layers_per_block.back();
    o.heads = c.num_attention_heads.back();
    o.cross_attention_dim = c.cross_attention_dim.back();
    mid_block = register_module("mid_block", nn::UNetMidBlock2DCrossAttn(o));
  }

  const auto rev_channels = reversed(c.block_out_channels);
  const auto rev_heads = reversed(c.num_attention_heads);
  const auto rev_layers = reversed(c.layers_per_block);
  const auto rev_cross_dim = reversed(c.cross_attention_dim);
  const auto rev_only_cross = reversed(c.only_cross_attention);
  const auto rev_transformer_layers = c.reverse_transformer_layers_per_block.empty()
                                          ? reversed(c.transformer_layers_per_block)
                                          : c.reverse_transformer_layers_per_block;
  torch::nn::ModuleList up_list;
  out_ch = rev_channels[0];
  for (size_t i = 0; i < n; ++i) {
    nn::BlockOptions o = common;
    o.prev_output_channels = out_ch;
    o.out_channels = out_ch = rev_channels[i];
    o.in_channels = rev_channels[std::min(i + 1, n - 1)];
    o.num_layers = rev_layers[i] + 1;
    o.add_sampler = i + 1 < n;
    o.cross_attention = c.up_block_types[i] == "CrossAttnUpBlock2D";
    o.transformer_layers = rev_transformer_layers[i];
    o.heads = rev_heads[i];
    o.cross_attention_dim = rev_cross_dim[i];
    o.only_cross_attention = rev_only_cross[i];
    up_blocks.emplace_back(o);
    up_list->push_back(up_blocks.back());
  }
  register_module("up_blocks", up_list);

  conv_norm_out = register_module(
      "conv_norm_out",
      torch::nn::GroupNorm(torch::nn::GroupNormOptions(c.norm_num_groups, c0).eps(c.norm_eps)));
  conv_out = register_module(
      "conv_out", nn::Conv2d(torch::nn::Conv2dOptions(c0, c.out_channels, c.conv_out_kernel)
                                        .padding((c.conv_out_kernel - 1) / 2)));
}

void UNet2DConditionModelImpl::set_gradient_checkpointing(bool on) {
  gradient_checkpointing_ = on;
  for (auto& b : down_blocks) b->set_gradient_checkpointing(on);
  if (mid_block) mid_block->set_gradient_checkpointing(on);
  for (auto& b : up_blocks) b->set_gradient_checkpointing(on);
}

torch::Tensor UNet2DConditionModelImpl::embed_time(const torch::Tensor& sample,
                                                   const torch::Tensor& timesteps,
                                                   const torch::Tensor& text_embeds,
                                                   const torch::Tensor& time_ids) {
  const int64_t B = sample.size(0);
  // t: [B], broadcast from a 0-dim or single timestep like diffusers' get_time_embed.
  torch::Tensor t = timesteps.to(sample.device());
  if (t.dim() == 0) t = t.reshape({1});
  if (t.dim() != 1 || (t.size(0) != B && t.size(0) != 1))
    throw UsageError(cat("[unet] timesteps must be 0-dim, [1] or [", B, "] for a batch of ", B,
                         ", got shape ", timesteps.sizes()));
  t = t.expand({B});
  // Timesteps gives float32; the MLP runs in the sample's dtype.
  torch::Tensor emb = time_embedding(time_proj(t).to(sample.scalar_type()));  // [B, temb]

  if (needs_added_conditions()) {
    if (!text_embeds.defined() || !time_ids.defined()) {
      const char* missing = !text_embeds.defined() && !time_ids.defined()
                                ? "text_embeds and time_ids"
                            : !text_embeds.defined() ? "text_embeds"
                                                     : "time_ids";
      throw UsageError(
          cat("[unet] this UNet has addition_embed_type 'text_time' (SDXL) and needs the ",
              "added conditions text_embeds [B, P] and time_ids [B, 6]; missing ", missing,
              " (pooled text embedding and size/crop ids)"));
    }
    if (text_embeds.dim() != 2 || time_ids.dim() != 2 || text_embeds.size(0) != time_ids.size(0))
      throw UsageError(
          cat("[unet] text_embeds must be [B, P] and time_ids [B, n] with the same B; got ",
              text_embeds.sizes(), " and ", time_ids.sizes()));
    const int64_t width = text_embeds.size(1) + time_ids.size(1) * config_.addition_time_embed_dim;
    if (width != config_.projection_class_embeddings_input_dim)
      throw UsageError(cat("[unet] text_embeds ", text_embeds.sizes(), " and time_ids ",
                           time_ids.sizes(), " give ", width,
                           " added-condition features but the config's "
                           "projection_class_embeddings_input_dim is ",
                           config_.projection_class_embeddings_input_dim));
    // time_embeds: [B * n, addition_time_embed_dim] -> [B, n * addition_time_embed_dim]
    torch::Tensor time_embeds =
        add_time_proj(time_ids.flatten()).reshape({text_embeds.size(0), -1});
    torch::Tensor add =
        torch::cat({text_embeds, time_embeds.to(text_embeds.device())}, -1).to(emb.scalar_type());
    emb = emb + add_embedding(add);
  } else if (text_embeds.defined() || time_ids.defined()) {
    throw UsageError(
        "[unet] text_embeds / time_ids were given but this UNet has no addition_embed_type "
        "'text_time' (not an SDXL UNet)");
  }
  if (!config_.time_embedding_act_fn.empty()) emb = activation(config_.time_embedding_act_fn, emb);
  return emb;
}

torch::Tensor UNet2DConditionModelImpl::forward(const torch::Tensor& sample,
                                                const torch::Tensor& timesteps,
                                                const torch::Tensor& encoder_hidden_states,
                                                const torch::Tensor& text_embeds,
                                                const torch::Tensor& time_ids) {
  const auto& c = config_;
  if (sample.dim() != 4 || sample.size(1) != c.in_channels)
    throw UsageError(
        cat("[unet] sample must be [B, ", c.in_channels, ", H, W], got ", sample.sizes()));
  if (!encoder_hidden_states.defined() || encoder_hidden_states.dim() != 3 ||
      encoder_hidden_states.size(0) != sample.size(0))
    throw UsageError(
        cat("[unet] encoder_hidden_states must be [B, S, D] with B = ", sample.size(0), ", got ",
            encoder_hidden_states.defined() ? encoder_hidden_states.sizes() : c10::IntArrayRef{}));
  for (size_t i = 0; i < c.cross_attention_dim.size(); ++i)
    if (c.down_block_types[i] == "CrossAttnDownBlock2D" &&
        encoder_hidden_states.size(2) != c.cross_attention_dim[i])
      throw UsageError(cat("[unet] encoder_hidden_states has width ", encoder_hidden_states.size(2),
                           " but cross_attention_dim is ", c.cross_attention_dim[i],
                           " (text encoder output of another model?)"));

  const torch::Tensor& ctx = encoder_hidden_states;
  torch::Tensor x = c.center_input_sample ? sample * 2.0 - 1.0 : sample;
  const torch::Tensor emb = embed_time(x, timesteps, text_embeds, time_ids);

  // When H or W is not a multiple of the total downsampling, each upsampler is told the size of
  // the matching down-path state instead of doubling.
  const int64_t up_factor = int64_t(1) << (up_blocks.size() - 1);
  const bool forward_upsample_size = x.size(2) % up_factor != 0 || x.size(3) % up_factor != 0;

  torch::Tensor h = conv_in(x);  // [B, C0, H, W]
  std::vector<torch::Tensor> skips{h};
  for (auto& block : down_blocks) h = block->forward(h, emb, ctx, &skips);
  if (mid_block) h = mid_block->forward(h, emb, ctx);
  for (size_t i = 0; i < up_blocks.size(); ++i) {
    auto& block = up_blocks[i];
    c10::optional<std::vector<int64_t>> size;
    if (forward_upsample_size && i + 1 < up_blocks.size()) {
      const auto& next = skips[skips.size() - block->resnets.size() - 1];
      size = std::vector<int64_t>{next.size(2), next.size(3)};
    }
    h = block->forward(h, &skips, emb, ctx, size);
  }
  h = torch::silu(nn::norm(conv_norm_out, h));
  return conv_out(h);  // [B, out_channels, H, W]
}

UNet2DConditionModel load_unet(const std::filesystem::path& dir, const nn::LoadOptions& options,
                               const std::string& variant) {
  UNet2DConditionModel unet(UNetConfig::load(dir));
  const auto weights = io::ComponentWeights::open(dir, variant);
  nn::load_weights(*unet, weights, options, "unet");
  return unet;
}

void save_unet(const std::filesystem::path& dir, const UNet2DConditionModel& unet,
               c10::optional<torch::Dtype> dtype) {
  nn::save_component(dir, *unet, unet->config().raw, io::kDiffusersWeightsStem, dtype);
}

}  // namespace dro::models
