#include "dro/text/clip_text_model.h"

#include <limits>

#include "dro/core/compat.h"
#include "dro/core/error.h"
#include "dro/io/weights.h"

namespace dro::text {

namespace {

torch::nn::LayerNorm layer_norm(int64_t size, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({size}).eps(eps));
}

}  // namespace

ClipAttentionImpl::ClipAttentionImpl(int64_t hidden_size, int64_t heads) : num_heads(heads) {
  q_proj = register_module("q_proj", torch::nn::Linear(hidden_size, hidden_size));
  k_proj = register_module("k_proj", torch::nn::Linear(hidden_size, hidden_size));
  v_proj = register_module("v_proj", torch::nn::Linear(hidden_size, hidden_size));
  out_proj = register_module("out_proj", torch::nn::Linear(hidden_size, hidden_size));
}

torch::Tensor ClipAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const int64_t b = x.size(0), s = x.size(1), d = x.size(2);
  const int64_t head_dim = d / num_heads;
  // q, k, v: [B, heads, S, d]
  auto split = [&](const torch::Tensor& t) {
    return t.view({b, s, num_heads, head_dim}).transpose(1, 2);
  };
  torch::Tensor out = compat::attention(split(q_proj(x)), split(k_proj(x)), split(v_proj(x)), mask);
  // out: [B, heads, S, d] -> [B, S, D]
  return out_proj(out.transpose(1, 2).reshape({b, s, d}));
}

ClipMlpImpl::ClipMlpImpl(int64_t hidden_size, int64_t intermediate_size,
                         const std::string& hidden_act)
    : quick_gelu(hidden_act == "quick_gelu"),
      tanh_gelu(hidden_act == "gelu_new" || hidden_act == "gelu_pytorch_tanh") {
  if (!is_clip_activation(hidden_act))
    throw UsageError(
        cat("[clip] hidden_act '", hidden_act, "' is not supported (", kClipActivations, ")"));
  fc1 = register_module("fc1", torch::nn::Linear(hidden_size, intermediate_size));
  fc2 = register_module("fc2", torch::nn::Linear(intermediate_size, hidden_size));
}

torch::Tensor ClipMlpImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = fc1(x);  // [B, S, I]
  // quick_gelu is the activation OpenAI CLIP was trained with (clip/model.py QuickGELU).
  h = quick_gelu  ? h * torch::sigmoid(1.702 * h)
      : tanh_gelu ? torch::gelu(h, "tanh")
                  : torch::gelu(h);
  return fc2(h);
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipEncoderSizes& c) {
  self_attn = register_module("self_attn", ClipAttention(c.hidden_size, c.num_attention_heads));
  layer_norm1 = register_module("layer_norm1", layer_norm(c.hidden_size, c.layer_norm_eps));
  mlp = register_module("mlp", ClipMlp(c.hidden_size, c.intermediate_size, c.hidden_act));
  layer_norm2 = register_module("layer_norm2", layer_norm(c.hidden_size, c.layer_norm_eps));
}

torch::Tensor ClipEncoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  torch::Tensor h = x + self_attn(layer_norm1(x), mask);
  return h + mlp(layer_norm2(h));
}

ClipEncoderImpl::ClipEncoderImpl(const ClipEncoderSizes& c) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    typed_layers.emplace_back(c);
    layers->push_back(typed_layers.back());
  }
}

ClipTextEmbeddingsImpl::ClipTextEmbeddingsImpl(const ClipTextConfig& c) {
  token_embedding =
      register_module("token_embedding", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  position_embedding = register_module(
      "position_embedding", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
}

torch::Tensor ClipTextEmbeddingsImpl::forward(const torch::Tensor& input_ids) {
  // Positions are 0..S-1 for every row, so the table's first S rows stand in for the lookup.
  return token_embedding(input_ids) + position_embedding->weight.narrow(0, 0, input_ids.size(1));
}

ClipTextTransformerImpl::ClipTextTransformerImpl(const ClipTextConfig& c) : config_(c) {
  embeddings = register_module("embeddings", ClipTextEmbeddings(c));
  encoder = register_module("encoder", ClipEncoder(ClipEncoderSizes::of(c)));
  final_layer_norm = register_module("final_layer_norm", layer_norm(c.hidden_size, c.layer_norm_eps));
}

ClipTextModelImpl::ClipTextModelImpl(ClipTextConfig config) : config_(std::move(config)) {
  text_model = register_module("text_model", ClipTextTransformer(config_));
  if (config_.with_projection())
    text_projection = register_module(
        "text_projection",
        torch::nn::Linear(
            torch::nn::LinearOptions(config_.hidden_size, config_.projection_dim).bias(false)));
}

ClipTextOutput ClipTextTransformerImpl::forward(const torch::Tensor& input_ids,
                                                const torch::Tensor& attention_mask,
                                                bool output_hidden_states) {
  if (input_ids.dim() != 2 || !c10::isIntegralType(input_ids.scalar_type(), /*includeBool=*/false))
    throw UsageError(cat("[clip] input_ids must be an integer tensor [B, S], got ",
                         input_ids.scalar_type(), " ", input_ids.sizes()));
  const int64_t b = input_ids.size(0), s = input_ids.size(1);
  if (s < 1 || s > config_.max_position_embeddings)
    throw UsageError(cat("[clip] input_ids has ", s, " positions; the model takes 1 to ",
                         config_.max_position_embeddings));
  const auto& weight = embeddings->token_embedding->weight;
  const torch::Tensor ids = input_ids.to(weight.device(), torch::kInt64);
  if (b > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      throw UsageError(cat("[clip] input_ids range [", lo, ", ", hi,
                           "] is outside the vocabulary [0, ", config_.vocab_size, ")"));
  }

  // causal: [S, S], -inf above the diagonal (a token sees itself and what precedes it)
  torch::Tensor mask =
      torch::full({s, s}, -std::numeric_limits<float>::infinity(), weight.options()).triu(1);
  if (attention_mask.defined()) {
    if (attention_mask.sizes() != input_ids.sizes())
      throw UsageError(cat("[clip] attention_mask ", attention_mask.sizes(),
                           " does not match input_ids ", input_ids.sizes()));
    // transformers adds the padding mask (dtype minimum at padded keys) to the causal one:
    // mask [B, 1, S, S]; a padded query still sees the real tokens before it, so no row is empty.
    // Built in float32 (no 0 * inf in bf16), then cast.
    const torch::Tensor pad =
        torch::zeros({b, 1, 1, s}, weight.options().dtype(torch::kFloat32))
            .masked_fill(attention_mask.to(weight.device()).eq(0).view({b, 1, 1, s}),
                         -std::numeric_limits<float>::infinity());
    mask = (mask.to(torch::kFloat32).view({1, 1, s, s}) + pad)
               .clamp_min(std::numeric_limits<float>::lowest())
               .to(weight.scalar_type());
  }

  ClipTextOutput out;
  torch::Tensor h = embeddings(ids);  // [B, S, D]
  if (output_hidden_states) out.hidden_states.push_back(h);
  for (auto& layer : encoder->typed_layers) {
    h = layer(h, mask);
    if (output_hidden_states) out.hidden_states.push_back(h);
  }
  out.last_hidden_state = final_layer_norm(h);

  // transformers: with the legacy eos_token_id 2 of the SD configs, pool at argmax(input_ids) (the
  // first <|endoftext|>, OpenAI's rule); otherwise at the first eos_token_id.
  const torch::Tensor at = config_.eos_token_id == 2
                               ? ids.argmax(-1)
                               : ids.eq(config_.eos_token_id).to(torch::kInt32).argmax(-1);  // [B]
  out.pooled = out.last_hidden_state.index(
      {torch::arange(b, torch::TensorOptions().dtype(torch::kInt64).device(ids.device())), at});
  return out;
}

ClipTextOutput ClipTextModelImpl::forward(const torch::Tensor& input_ids,
                                          bool output_hidden_states) {
  ClipTextOutput out = text_model->forward(input_ids, {}, output_hidden_states);
  if (text_projection) out.text_embeds = text_projection(out.pooled);  // [B, P]
  return out;
}

ClipTextModel load_clip_text_model(const std::filesystem::path& dir, nn::LoadOptions options,
                                   const std::string& variant) {
  ClipTextModel model(ClipTextConfig::load(dir));
  const auto weights = io::ComponentWeights::open(dir, variant);
  // Real SD1.5 text encoders store this int64 [1, 77] buffer; it is always arange(77).
  options.ignore.insert("text_model.embeddings.position_ids");
  nn::load_weights(*model, weights, options, dir.string());
  model->eval();
  return model;
}

}  // namespace dro::text
