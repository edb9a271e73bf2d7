#include "dro/models/med_bert.h"

#include <cmath>

#include "dro/core/error.h"

namespace dro::models {

namespace {

torch::Tensor activation(const std::string& name, const torch::Tensor& x) {
  if (name == "gelu") return torch::gelu(x);
  if (name == "gelu_pytorch_tanh") return torch::gelu(x, "tanh");
  if (name == "gelu_new")  // transformers' NewGELUActivation, written out as it computes it
    return 0.5 * x *
           (1.0 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * torch::pow(x, 3.0))));
  if (name == "quick_gelu") return x * torch::sigmoid(1.702 * x);
  if (name == "relu") return torch::relu(x);
  if (name == "silu" || name == "swish") return torch::silu(x);
  throw UsageError(cat("[med-bert] unsupported hidden_act '", name, "'"));
}

}  // namespace

bool is_med_activation(const std::string& name) {
  for (const char* a :
       {"gelu", "gelu_pytorch_tanh", "gelu_new", "quick_gelu", "relu", "silu", "swish"})
    if (name == a) return true;
  return false;
}

MedBertConfig MedBertConfig::from_json(const io::OrderedJson& j, const std::string& where) {
  using io::get_or;
  if (!j.is_object())
    throw UsageError(cat("[config] ", where, ": expected a JSON object (a BertConfig)"));
  MedBertConfig c;
  c.vocab_size = get_or<int64_t>(j, "vocab_size", c.vocab_size, where);
  c.hidden_size = get_or<int64_t>(j, "hidden_size", c.hidden_size, where);
  c.num_hidden_layers = get_or<int64_t>(j, "num_hidden_layers", c.num_hidden_layers, where);
  c.num_attention_heads = get_or<int64_t>(j, "num_attention_heads", c.num_attention_heads, where);
  c.intermediate_size = get_or<int64_t>(j, "intermediate_size", c.intermediate_size, where);
  c.max_position_embeddings =
      get_or<int64_t>(j, "max_position_embeddings", c.max_position_embeddings, where);
  c.pad_token_id = get_or<int64_t>(j, "pad_token_id", c.pad_token_id, where);
  c.hidden_act = get_or<std::string>(j, "hidden_act", c.hidden_act, where);
  c.layer_norm_eps = get_or<double>(j, "layer_norm_eps", c.layer_norm_eps, where);
  c.add_cross_attention = get_or<bool>(j, "add_cross_attention", c.add_cross_attention, where);
  c.position_embedding_type =
      get_or<std::string>(j, "position_embedding_type", c.position_embedding_type, where);
  c.encoder_width = get_or<int64_t>(j, "encoder_width", c.encoder_width, where);
  c.validate(where);
  return c;
}

MedBertConfig MedBertConfig::load(const std::filesystem::path& file) {
  return from_json(io::read_json(file), file.string());
}

void MedBertConfig::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* key) {
    if (v <= 0) throw UsageError(cat("[config] ", where, ": ", key, " must be positive, got ", v));
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(intermediate_size, "intermediate_size");
  positive(max_position_embeddings, "max_position_embeddings");
  positive(encoder_width, "encoder_width");
  if (hidden_size % num_attention_heads != 0)
    throw UsageError(cat("[config] ", where, ": hidden_size ", hidden_size,
                         " is not a multiple of num_attention_heads ", num_attention_heads));
  if (!is_med_activation(hidden_act))
    throw UsageError(cat("[config] ", where, ": hidden_act '", hidden_act,
                         "' is not supported (gelu, gelu_new, gelu_pytorch_tanh, quick_gelu, relu, "
                         "silu, swish)"));
  if (position_embedding_type != "absolute")
    throw UsageError(cat("[config] ", where, ": position_embedding_type '", position_embedding_type,
                         "' is not supported (only 'absolute')"));
  if (!(layer_norm_eps > 0))
    throw UsageError(
        cat("[config] ", where, ": layer_norm_eps must be positive, got ", layer_norm_eps));
}

MedBertEmbeddingsImpl::MedBertEmbeddingsImpl(const MedBertConfig& c) {
  word_embeddings =
      register_module("word_embeddings", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  position_embeddings = register_module(
      "position_embeddings", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
  LayerNorm = register_module(
      "LayerNorm",
      torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  position_ids = torch::arange(c.max_position_embeddings, torch::kInt64).unsqueeze(0);
}

torch::Tensor MedBertEmbeddingsImpl::forward(const torch::Tensor& input_ids) {
  const int64_t s = input_ids.size(1);
  const torch::Tensor pos = position_ids.narrow(1, 0, s).to(input_ids.device());  // [1, S]
  torch::Tensor h = word_embeddings(input_ids);                                   // [B, S, H]
  h = h + position_embeddings(pos);
  return LayerNorm(h);
}

MedBertSelfAttentionImpl::MedBertSelfAttentionImpl(const MedBertConfig& c, bool cross)
    : heads(c.num_attention_heads), head_size(c.hidden_size / c.num_attention_heads) {
  const int64_t kv_in = cross ? c.encoder_width : c.hidden_size;
  query = register_module("query", torch::nn::Linear(c.hidden_size, heads * head_size));
  key = register_module("key", torch::nn::Linear(kv_in, heads * head_size));
  value = register_module("value", torch::nn::Linear(kv_in, heads * head_size));
}

torch::Tensor MedBertSelfAttentionImpl::forward(const torch::Tensor& hidden,
                                                const torch::Tensor& context,
                                                const torch::Tensor& additive_mask) {
  const torch::Tensor& kv = context.defined() ? context : hidden;
  auto split = [&](const torch::Tensor& x) {  // [B, S, heads*hs] -> [B, heads, S, hs]
    return x.view({x.size(0), x.size(1), heads, head_size}).permute({0, 2, 1, 3});
  };
  const torch::Tensor q = split(query(hidden));
  const torch::Tensor k = split(key(kv));
  const torch::Tensor v = split(value(kv));
  // med.py: (q @ k^T) / sqrt(head_size), + mask, softmax.
  torch::Tensor scores =
      torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(head_size));
  if (additive_mask.defined()) scores = scores + additive_mask;
  const torch::Tensor ctx = torch::matmul(scores.softmax(-1), v);  // [B, heads, S, hs]
  return ctx.permute({0, 2, 1, 3})
      .contiguous()
      .view({hidden.size(0), hidden.size(1), heads * head_size});
}

MedBertDenseNormImpl::MedBertDenseNormImpl(int64_t in, int64_t out, double eps) {
  dense = register_module("dense", torch::nn::Linear(in, out));
  LayerNorm = register_module("LayerNorm",
                              torch::nn::LayerNorm(torch::nn::LayerNormOptions({out}).eps(eps)));
}

torch::Tensor MedBertDenseNormImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  return LayerNorm(dense(x) + residual);
}

MedBertAttentionImpl::MedBertAttentionImpl(const MedBertConfig& c, bool cross) {
  self = register_module("self", MedBertSelfAttention(c, cross));
  output =
      register_module("output", MedBertDenseNorm(c.hidden_size, c.hidden_size, c.layer_norm_eps));
}

torch::Tensor MedBertAttentionImpl::forward(const torch::Tensor& hidden,
                                            const torch::Tensor& context,
                                            const torch::Tensor& additive_mask) {
  return output(self(hidden, context, additive_mask), hidden);
}

MedBertIntermediateImpl::MedBertIntermediateImpl(const MedBertConfig& c) : act(c.hidden_act) {
  dense = register_module("dense", torch::nn::Linear(c.hidden_size, c.intermediate_size));
}

torch::Tensor MedBertIntermediateImpl::forward(const torch::Tensor& x) {
  return activation(act, dense(x));
}

MedBertLayerImpl::MedBertLayerImpl(const MedBertConfig& c) {
  attention = register_module("attention", MedBertAttention(c, false));
  crossattention = register_module("crossattention", MedBertAttention(c, true));
  intermediate = register_module("intermediate", MedBertIntermediate(c));
  output = register_module("output",
                           MedBertDenseNorm(c.intermediate_size, c.hidden_size, c.layer_norm_eps));
}

torch::Tensor MedBertLayerImpl::forward(const torch::Tensor& hidden, const torch::Tensor& self_mask,
                                        const torch::Tensor& image) {
  const torch::Tensor a = attention(hidden, torch::Tensor(), self_mask);
  // The image mask is all ones: its additive form is zero everywhere, so it is left out.
  const torch::Tensor x = crossattention(a, image, torch::Tensor());
  return output(intermediate(x), x);
}

MedBertEncoderImpl::MedBertEncoderImpl(const MedBertConfig& c) {
  layer = register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layer->push_back(MedBertLayer(c));
}

MedBertModelImpl::MedBertModelImpl(MedBertConfig c) : config_(std::move(c)) {
  config_.validate("MedBertModel");
  if (!config_.add_cross_attention)
    throw UsageError(
        "[config] med_config.json: add_cross_attention is false, but ImageReward runs the text "
        "encoder in its multimodal mode, which needs the cross-attention layers");
  embeddings = register_module("embeddings", MedBertEmbeddings(config_));
  encoder = register_module("encoder", MedBertEncoder(config_));
}

torch::Tensor MedBertModelImpl::forward(const torch::Tensor& input_ids,
                                        const torch::Tensor& attention_mask,
                                        const torch::Tensor& image_embeds) {
  const auto& c = config_;
  if (input_ids.dim() != 2 || input_ids.size(1) > c.max_position_embeddings)
    throw UsageError(cat("[med-bert] input_ids must be [B, S] with S <= ",
                         c.max_position_embeddings, ", got ", input_ids.sizes()));
  if (attention_mask.sizes() != input_ids.sizes())
    throw UsageError(cat("[med-bert] attention_mask ", attention_mask.sizes(),
                         " does not match input_ids ", input_ids.sizes()));
  if (image_embeds.dim() != 3 || image_embeds.size(0) != input_ids.size(0) ||
      image_embeds.size(2) != c.encoder_width)
    throw UsageError(cat("[med-bert] image_embeds must be [", input_ids.size(0), ", S_img, ",
                         c.encoder_width, "], got ", image_embeds.sizes()));
  const auto& w = embeddings->word_embeddings->weight;
  const torch::Tensor ids = input_ids.to(w.device());
  // get_extended_attention_mask (encoder): (1 - mask) * -10000 in the model dtype, [B, 1, 1, S].
  const torch::Tensor mask =
      (1.0 - attention_mask.to(w.device(), w.scalar_type()).unsqueeze(1).unsqueeze(2)) * -10000.0;
  const torch::Tensor image = image_embeds.to(w.device(), w.scalar_type());
  torch::Tensor h = embeddings(ids);
  for (const auto& l : *encoder->layer) h = l->as<MedBertLayerImpl>()->forward(h, mask, image);
  return h;
}

}  // namespace dro::models
