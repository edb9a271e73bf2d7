#include "dro/models/blip_vit.h"

#include <cmath>

#include "dro/core/error.h"

namespace dro::models {

BlipVitConfig BlipVitConfig::from_json(const io::OrderedJson& j, const std::string& where) {
  using io::get_or;
  if (!j.is_object())
    throw UsageError(cat("[config] ", where, ": expected a JSON object of ViT sizes"));
  static const char* kKeys[] = {"image_size", "patch_size", "in_chans", "embed_dim",     "depth",
                                "num_heads",  "mlp_ratio",  "qkv_bias", "layer_norm_eps"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.key().empty() && it.key()[0] == '_') continue;
    bool known = false;
    for (const char* k : kKeys) known = known || it.key() == k;
    if (!known) {
      std::string names;
      for (const char* k : kKeys) names += cat(names.empty() ? "" : ", ", k);
      throw UsageError(
          cat("[config] ", where, ": unknown key '", it.key(), "' (known: ", names, ")"));
    }
  }
  BlipVitConfig c;
  c.image_size = get_or<int64_t>(j, "image_size", c.image_size, where);
  c.patch_size = get_or<int64_t>(j, "patch_size", c.patch_size, where);
  c.in_chans = get_or<int64_t>(j, "in_chans", c.in_chans, where);
  c.embed_dim = get_or<int64_t>(j, "embed_dim", c.embed_dim, where);
  c.depth = get_or<int64_t>(j, "depth", c.depth, where);
  c.num_heads = get_or<int64_t>(j, "num_heads", c.num_heads, where);
  c.mlp_ratio = get_or<double>(j, "mlp_ratio", c.mlp_ratio, where);
  c.qkv_bias = get_or<bool>(j, "qkv_bias", c.qkv_bias, where);
  c.layer_norm_eps = get_or<double>(j, "layer_norm_eps", c.layer_norm_eps, where);
  c.validate(where);
  return c;
}

BlipVitConfig BlipVitConfig::load(const std::filesystem::path& file) {
  return from_json(io::read_json(file), file.string());
}

void BlipVitConfig::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* key) {
    if (v <= 0) throw UsageError(cat("[config] ", where, ": ", key, " must be positive, got ", v));
  };
  positive(image_size, "image_size");
  positive(patch_size, "patch_size");
  positive(in_chans, "in_chans");
  positive(embed_dim, "embed_dim");
  positive(depth, "depth");
  positive(num_heads, "num_heads");
  if (patch_size > image_size)
    throw UsageError(
        cat("[config] ", where, ": patch_size ", patch_size, " exceeds image_size ", image_size));
  if (embed_dim % num_heads != 0)
    throw UsageError(cat("[config] ", where, ": embed_dim ", embed_dim,
                         " is not divisible by num_heads ", num_heads));
  if (!(mlp_ratio > 0) || mlp_hidden() <= 0)
    throw UsageError(cat("[config] ", where, ": mlp_ratio must be positive, got ", mlp_ratio));
  if (!(layer_norm_eps > 0))
    throw UsageError(
        cat("[config] ", where, ": layer_norm_eps must be positive, got ", layer_norm_eps));
}

std::string BlipVitConfig::describe() const {
  return cat("ViT ", embed_dim, " wide, ", depth, " blocks, ", num_heads, " heads, patch ",
             patch_size, " at ", image_size, " px");
}

BlipPatchEmbedImpl::BlipPatchEmbedImpl(const BlipVitConfig& c) {
  proj = register_module(
      "proj",
      torch::nn::Conv2d(
          torch::nn::Conv2dOptions(c.in_chans, c.embed_dim, c.patch_size).stride(c.patch_size)));
}

torch::Tensor BlipPatchEmbedImpl::forward(const torch::Tensor& x) {
  return proj(x).flatten(2).transpose(1, 2);  // [B, D, g, g] -> [B, g*g, D]
}

BlipVitAttentionImpl::BlipVitAttentionImpl(int64_t dim, int64_t heads_, bool qkv_bias)
    : heads(heads_), scale(std::pow(static_cast<double>(dim / heads_), -0.5)) {
  qkv = register_module("qkv",
                        torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(qkv_bias)));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
}

torch::Tensor BlipVitAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), s = x.size(1), d = x.size(2);
  // qkv: [B, S, 3D] -> [3, B, heads, S, D/heads]
  const torch::Tensor qkv_ = qkv(x).reshape({b, s, 3, heads, d / heads}).permute({2, 0, 3, 1, 4});
  const torch::Tensor q = qkv_[0], k = qkv_[1], v = qkv_[2];
  const torch::Tensor attn = (torch::matmul(q, k.transpose(-2, -1)) * scale).softmax(-1);
  return proj(torch::matmul(attn, v).transpose(1, 2).reshape({b, s, d}));  // [B, S, D]
}

BlipVitMlpImpl::BlipVitMlpImpl(int64_t dim, int64_t hidden) {
  fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, dim));
}

torch::Tensor BlipVitMlpImpl::forward(const torch::Tensor& x) {
  return fc2(torch::gelu(fc1(x)));
}

BlipVitBlockImpl::BlipVitBlockImpl(const BlipVitConfig& c) {
  auto ln = [&] {
    return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.embed_dim}).eps(c.layer_norm_eps));
  };
  norm1 = register_module("norm1", ln());
  attn = register_module("attn", BlipVitAttention(c.embed_dim, c.num_heads, c.qkv_bias));
  norm2 = register_module("norm2", ln());
  mlp = register_module("mlp", BlipVitMlp(c.embed_dim, c.mlp_hidden()));
}

torch::Tensor BlipVitBlockImpl::forward(const torch::Tensor& x) {
  const torch::Tensor h = x + attn(norm1(x));
  return h + mlp(norm2(h));
}

BlipVisionTransformerImpl::BlipVisionTransformerImpl(BlipVitConfig c) : config_(std::move(c)) {
  config_.validate("BlipVisionTransformer");
  const int64_t d = config_.embed_dim;
  patch_embed = register_module("patch_embed", BlipPatchEmbed(config_));
  cls_token = register_parameter("cls_token", torch::zeros({1, 1, d}));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, config_.num_patches() + 1, d}));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.depth; ++i) blocks->push_back(BlipVitBlock(config_));
  norm = register_module(
      "norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(config_.layer_norm_eps)));
}

torch::Tensor BlipVisionTransformerImpl::forward(const torch::Tensor& pixels) {
  const auto& c = config_;
  if (pixels.dim() != 4 || pixels.size(1) != c.in_chans || pixels.size(2) != c.image_size ||
      pixels.size(3) != c.image_size)
    throw UsageError(cat("[blip-vit] pixels must be [B, ", c.in_chans, ", ", c.image_size, ", ",
                         c.image_size, "], got ", pixels.sizes()));
  const auto& w = patch_embed->proj->weight;
  torch::Tensor x = patch_embed(pixels.to(w.device(), w.scalar_type()));  // [B, patches, D]
  x = torch::cat({cls_token.expand({x.size(0), -1, -1}), x}, 1);          // [B, 1 + patches, D]
  x = x + pos_embed;
  for (const auto& blk : *blocks) x = blk->as<BlipVitBlockImpl>()->forward(x);
  return norm(x);
}

}  // namespace dro::models
