// BLIP's "mixture of encoder-decoder" BERT (BLIP/models/med.py, as ImageReward ships it) in its
// encoder form with cross-attention (mode="multimodal"), under the names of its checkpoint keys
// (`blip.text_encoder.` in ImageReward.pt): word + absolute position embeddings (no token-type
// embeddings) and LayerNorm, then per layer self-attention, cross-attention to the image tokens
// and the feed-forward block, each post-norm with a residual. Sizes come from med_config.json (a
// transformers BertConfig). Not here: the pooler (BLIP builds it with add_pooling_layer=False),
// the causal decoder form, key/value caches, relative position embeddings, dropout.
#pragma once

#include <string>

#include <torch/torch.h>

#include "dro/io/json.h"

namespace dro::models {

// The BertConfig fields med.py reads, with transformers' defaults.
struct MedBertConfig {
  int64_t vocab_size = 30522;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  int64_t max_position_embeddings = 512;
  int64_t pad_token_id = 0;
  std::string hidden_act = "gelu";
  double layer_norm_eps = 1e-12;
  bool add_cross_attention = false;
  std::string position_embedding_type = "absolute";
  // Width of the image tokens the cross-attention keys/values take. BLIP overwrites the file's
  // value with the ViT width (blip_pretrain.py: encoder_config.encoder_width = vision_width).
  int64_t encoder_width = 768;

  // Validated: positive sizes, heads dividing the width, a supported activation, absolute
  // positions. UsageError naming `where` and the field.
  static MedBertConfig from_json(const io::OrderedJson& j, const std::string& where);
  static MedBertConfig load(const std::filesystem::path& file);
  void validate(const std::string& where) const;
};

// transformers' ACT2FN names supported here: gelu (erf), gelu_new / gelu_pytorch_tanh (tanh
// approximation), quick_gelu, relu, silu / swish.
bool is_med_activation(const std::string& name);

struct MedBertEmbeddingsImpl : torch::nn::Module {
  explicit MedBertEmbeddingsImpl(const MedBertConfig& c);
  // input_ids: [B, S] int64 -> LayerNorm(word + position embeddings): [B, S, H]
  torch::Tensor forward(const torch::Tensor& input_ids);

  torch::nn::Embedding word_embeddings{nullptr};      // [V, H]
  torch::nn::Embedding position_embeddings{nullptr};  // [P, H]
  torch::nn::LayerNorm LayerNorm{nullptr};            // [H]; the name is the checkpoint's
  // The checkpoint's `embeddings.position_ids` buffer ([1, P] int64: 0..P-1 in every known file),
  // used as the reference uses it: positions[:, :S]. Not a registered buffer (dtype conversion
  // of the module must not touch it); set by the loader.
  torch::Tensor position_ids;
};
TORCH_MODULE(MedBertEmbeddings);

// BertSelfAttention: query from the hidden states, key/value from them or from the image tokens.
struct MedBertSelfAttentionImpl : torch::nn::Module {
  MedBertSelfAttentionImpl(const MedBertConfig& c, bool cross);
  // hidden: [B, S, H]; context: [B, S_ctx, W] (cross) or undefined (self); additive_mask:
  // broadcastable to [B, heads, S, S_ctx] or undefined -> [B, S, H]
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& context,
                        const torch::Tensor& additive_mask);
  int64_t heads, head_size;
  torch::nn::Linear query{nullptr};  // [H, H]
  torch::nn::Linear key{nullptr};    // [H, H] or [H, W]
  torch::nn::Linear value{nullptr};  // [H, H] or [H, W]
};
TORCH_MODULE(MedBertSelfAttention);

// BertSelfOutput / BertOutput: LayerNorm(dense(x) + residual).
struct MedBertDenseNormImpl : torch::nn::Module {
  MedBertDenseNormImpl(int64_t in, int64_t out, double eps);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);
  torch::nn::Linear dense{nullptr};  // [out, in]
  torch::nn::LayerNorm LayerNorm{nullptr};
};
TORCH_MODULE(MedBertDenseNorm);

// BertAttention: `self` (the attention) and `output` (projection, residual, norm).
struct MedBertAttentionImpl : torch::nn::Module {
  MedBertAttentionImpl(const MedBertConfig& c, bool cross);
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& context,
                        const torch::Tensor& additive_mask);
  MedBertSelfAttention self{nullptr};
  MedBertDenseNorm output{nullptr};
};
TORCH_MODULE(MedBertAttention);

// BertIntermediate: act(dense(x)).
struct MedBertIntermediateImpl : torch::nn::Module {
  explicit MedBertIntermediateImpl(const MedBertConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  std::string act;
  torch::nn::Linear dense{nullptr};  // [I, H]
};
TORCH_MODULE(MedBertIntermediate);

struct MedBertLayerImpl : torch::nn::Module {
  explicit MedBertLayerImpl(const MedBertConfig& c);
  // hidden: [B, S, H], image: [B, S_img, W] -> [B, S, H]
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& self_mask,
                        const torch::Tensor& image);
  MedBertAttention attention{nullptr};
  MedBertAttention crossattention{nullptr};
  MedBertIntermediate intermediate{nullptr};
  MedBertDenseNorm output{nullptr};  // dense [H, I]
};
TORCH_MODULE(MedBertLayer);

struct MedBertEncoderImpl : torch::nn::Module {
  explicit MedBertEncoderImpl(const MedBertConfig& c);
  torch::nn::ModuleList layer{nullptr};  // num_hidden_layers x MedBertLayer
};
TORCH_MODULE(MedBertEncoder);

// BertModel(config, add_pooling_layer=False) called with encoder_hidden_states and an all-ones
// encoder_attention_mask, as ImageReward does.
struct MedBertModelImpl : torch::nn::Module {
  explicit MedBertModelImpl(MedBertConfig config);
  // input_ids / attention_mask: [B, S] int64 (S <= max_position_embeddings); image_embeds:
  // [B, S_img, encoder_width] -> last_hidden_state [B, S, H].
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                        const torch::Tensor& image_embeds);
  const MedBertConfig& config() const { return config_; }

  MedBertEmbeddings embeddings{nullptr};
  MedBertEncoder encoder{nullptr};

 private:
  MedBertConfig config_;
};
TORCH_MODULE(MedBertModel);

}  // namespace dro::models
