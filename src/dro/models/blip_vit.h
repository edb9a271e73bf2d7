// BLIP's vision transformer (BLIP/models/vit.py on timm, as ImageReward ships it), under the names
// of its checkpoint keys (`blip.visual_encoder.` in ImageReward.pt): a patch convolution with
// bias, a class token and learned position embeddings, pre-norm blocks (LayerNorm, multi-head
// attention with a packed qkv projection, LayerNorm, GELU MLP) and a final LayerNorm over the
// whole sequence. Not here: dropout and drop-path (evaluation only), position-embedding
// interpolation to other image sizes, gradient checkpointing, attention maps.
#pragma once

#include <string>

#include <torch/torch.h>

#include "dro/io/json.h"

namespace dro::models {

// The ViT sizes. The official code hard-codes them (create_vit('large', 224): ViT-L/16 at 224 px);
// these defaults are those, and a JSON with the same keys overrides them.
struct BlipVitConfig {
  int64_t image_size = 224;
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  int64_t embed_dim = 1024;
  int64_t depth = 24;
  int64_t num_heads = 16;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  double layer_norm_eps = 1e-6;  // VisionTransformer: partial(nn.LayerNorm, eps=1e-6)

  int64_t grid() const { return image_size / patch_size; }
  int64_t num_patches() const { return grid() * grid(); }
  int64_t mlp_hidden() const {
    return static_cast<int64_t>(static_cast<double>(embed_dim) * mlp_ratio);
  }

  // Keys as above (`_comment` and other keys starting with '_' are ignored; any other unknown key
  // is a UsageError naming it, so a misspelt size cannot pass silently). Validated.
  static BlipVitConfig from_json(const io::OrderedJson& j, const std::string& where);
  static BlipVitConfig load(const std::filesystem::path& file);
  void validate(const std::string& where) const;
  std::string describe() const;  // e.g. "ViT 1024 wide, 24 blocks, 16 heads, patch 16 at 224 px"
};

// timm PatchEmbed: `proj` = Conv2d(in_chans, D, patch, stride patch) with bias.
struct BlipPatchEmbedImpl : torch::nn::Module {
  explicit BlipPatchEmbedImpl(const BlipVitConfig& c);
  // x: [B, C, H, W] -> [B, grid*grid, D]
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d proj{nullptr};  // weight [D, C, p, p], bias [D]
};
TORCH_MODULE(BlipPatchEmbed);

struct BlipVitAttentionImpl : torch::nn::Module {
  BlipVitAttentionImpl(int64_t dim, int64_t heads, bool qkv_bias);
  // x: [B, S, D] -> [B, S, D]
  torch::Tensor forward(const torch::Tensor& x);
  int64_t heads;
  double scale;                     // head_dim ** -0.5
  torch::nn::Linear qkv{nullptr};   // [3D, D]: rows q, k, v
  torch::nn::Linear proj{nullptr};  // [D, D]
};
TORCH_MODULE(BlipVitAttention);

struct BlipVitMlpImpl : torch::nn::Module {
  BlipVitMlpImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);  // fc2(gelu(fc1(x))), exact (erf) GELU
  torch::nn::Linear fc1{nullptr};                 // [hidden, D]
  torch::nn::Linear fc2{nullptr};                 // [D, hidden]
};
TORCH_MODULE(BlipVitMlp);

struct BlipVitBlockImpl : torch::nn::Module {
  explicit BlipVitBlockImpl(const BlipVitConfig& c);
  // x + attn(norm1(x)), then + mlp(norm2(x))
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::LayerNorm norm1{nullptr};
  BlipVitAttention attn{nullptr};
  torch::nn::LayerNorm norm2{nullptr};
  BlipVitMlp mlp{nullptr};
};
TORCH_MODULE(BlipVitBlock);

struct BlipVisionTransformerImpl : torch::nn::Module {
  explicit BlipVisionTransformerImpl(BlipVitConfig config);
  // pixels: [B, in_chans, image_size, image_size] -> [B, 1 + patches, D] after the final norm.
  // UsageError for another shape (timm's PatchEmbed asserts the size too).
  torch::Tensor forward(const torch::Tensor& pixels);
  const BlipVitConfig& config() const { return config_; }

  torch::Tensor cls_token;  // [1, 1, D]
  torch::Tensor pos_embed;  // [1, 1 + patches, D]
  BlipPatchEmbed patch_embed{nullptr};
  torch::nn::ModuleList blocks{nullptr};  // depth x BlipVitBlock
  torch::nn::LayerNorm norm{nullptr};

 private:
  BlipVitConfig config_;
};
TORCH_MODULE(BlipVisionTransformer);

}  // namespace dro::models
