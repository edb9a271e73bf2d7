// CLIP text encoder as transformers' CLIPTextModel / CLIPTextModelWithProjection: token + position
// embeddings, pre-norm transformer layers with a causal mask, final layer norm, pooled output at
// the end-of-text token and (with projection) a bias-free text projection. Module names are the
// transformers checkpoint keys, so named_parameters() equals the key set of `model.safetensors`.
// The padding attention_mask is taken by ClipTextTransformer (scorers pass it; Stable Diffusion
// pipelines do not). Not here: dropout.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/nn/state_dict.h"
#include "dro/text/clip_config.h"

namespace dro::text {

struct ClipTextOutput {
  torch::Tensor last_hidden_state;  // [B, S, D], after final_layer_norm
  torch::Tensor pooled;             // [B, D], last_hidden_state at the end-of-text position
  torch::Tensor text_embeds;        // [B, P], text_projection(pooled); WithProjection models only
  // Only when requested: the embeddings output, then each layer's output (no final norm), L + 1
  // entries of [B, S, D] as in transformers; hidden_states[L - 1] is SDXL's "penultimate" state.
  std::vector<torch::Tensor> hidden_states;
};

// transformers CLIPAttention: multi-head self-attention with q/k/v/out projections (all biased).
struct ClipAttentionImpl : torch::nn::Module {
  ClipAttentionImpl(int64_t hidden_size, int64_t num_heads);
  // x: [B, S, D]; mask: additive, broadcastable to [B, heads, S, S]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);

  int64_t num_heads;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};  // [D, D]
};
TORCH_MODULE(ClipAttention);

struct ClipMlpImpl : torch::nn::Module {
  ClipMlpImpl(int64_t hidden_size, int64_t intermediate_size, const std::string& hidden_act);
  torch::Tensor forward(const torch::Tensor& x);

  bool quick_gelu;                 // x * sigmoid(1.702 x)
  bool tanh_gelu;                  // gelu_new / gelu_pytorch_tanh; neither: exact (erf) GELU
  torch::nn::Linear fc1{nullptr};  // [I, D]
  torch::nn::Linear fc2{nullptr};  // [D, I]
};
TORCH_MODULE(ClipMlp);

// The sizes of one pre-norm transformer stack; the text and vision towers share the layer code.
struct ClipEncoderSizes {
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t num_attention_heads = 8;
  int64_t num_hidden_layers = 12;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;
  static ClipEncoderSizes of(const ClipTextConfig& c) {
    return {c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_hidden_layers,
            c.hidden_act, c.layer_norm_eps};
  }
};

struct ClipEncoderLayerImpl : torch::nn::Module {
  explicit ClipEncoderLayerImpl(const ClipEncoderSizes& sizes);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);

  ClipAttention self_attn{nullptr};
  torch::nn::LayerNorm layer_norm1{nullptr};  // [D]
  ClipMlp mlp{nullptr};
  torch::nn::LayerNorm layer_norm2{nullptr};  // [D]
};
TORCH_MODULE(ClipEncoderLayer);

struct ClipEncoderImpl : torch::nn::Module {
  explicit ClipEncoderImpl(const ClipEncoderSizes& sizes);
  torch::nn::ModuleList layers;
  std::vector<ClipEncoderLayer> typed_layers;  // the same modules, for calling
};
TORCH_MODULE(ClipEncoder);

struct ClipTextEmbeddingsImpl : torch::nn::Module {
  explicit ClipTextEmbeddingsImpl(const ClipTextConfig& config);
  // input_ids: [B, S] int64 -> [B, S, D]
  torch::Tensor forward(const torch::Tensor& input_ids);

  torch::nn::Embedding token_embedding{nullptr};     // [vocab_size, D]
  torch::nn::Embedding position_embedding{nullptr};  // [max_position_embeddings, D]
};
TORCH_MODULE(ClipTextEmbeddings);

// transformers CLIPTextTransformer (the `text_model.` prefix).
struct ClipTextTransformerImpl : torch::nn::Module {
  explicit ClipTextTransformerImpl(const ClipTextConfig& config);

  // input_ids: [B, S] integer ids; attention_mask: optional [B, S] (1 = token, 0 = padding), added
  // to the causal mask as transformers does. Fills last_hidden_state, pooled (and hidden_states);
  // no projection. UsageError for a bad shape or an id outside the vocabulary.
  ClipTextOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                         bool output_hidden_states = false);

  ClipTextEmbeddings embeddings{nullptr};
  ClipEncoder encoder{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};  // [D]

 private:
  ClipTextConfig config_;
};
TORCH_MODULE(ClipTextTransformer);

struct ClipTextModelImpl : torch::nn::Module {
  explicit ClipTextModelImpl(ClipTextConfig config);

  // input_ids: [B, S] integer token ids (S <= max_position_embeddings), e.g.
  // ClipTokenizer::tokenize. UsageError for a bad shape or an id outside the vocabulary.
  ClipTextOutput forward(const torch::Tensor& input_ids, bool output_hidden_states = false);

  const ClipTextConfig& config() const { return config_; }

  ClipTextTransformer text_model{nullptr};
  torch::nn::Linear text_projection{nullptr};  // [P, D], no bias; WithProjection only

 private:
  ClipTextConfig config_;
};
TORCH_MODULE(ClipTextModel);

// Builds the model from `dir/config.json` and loads `dir/model[.variant].safetensors` (or shards).
// The legacy buffer `text_model.embeddings.position_ids` of real SD1.5 checkpoints is ignored; any
// other missing or unexpected key is an IoError naming it. The model is returned in eval mode.
ClipTextModel load_clip_text_model(const std::filesystem::path& dir, nn::LoadOptions options = {},
                                   const std::string& variant = "");

}  // namespace dro::text
