#include "dro/pipeline/prompt_encoder.h"

#include "dro/core/error.h"

namespace dro::pipeline {

PromptEncoder PromptEncoder::load(const io::ModelFolder& model, const nn::LoadOptions& options,
                                  const std::string& variant) {
  PromptEncoder p;
  p.device_ = options.device;
  p.dtype_ = options.dtype;
  if (!model.has("tokenizer") || !model.has("text_encoder"))
    throw IoError(cat("[model] ", model.root.string(), ": no tokenizer/text_encoder components"));
  p.tokenizer_ = std::make_shared<text::ClipTokenizer>(
      text::ClipTokenizer::load(model.component("tokenizer").dir));
  p.encoder_ = text::load_clip_text_model(model.component("text_encoder").dir, options, variant);
  p.encoder_->eval();
  if (model.has("text_encoder_2")) {
    if (!model.has("tokenizer_2"))
      throw IoError(cat("[model] ", model.root.string(), ": has text_encoder_2 but no tokenizer_2"));
    p.tokenizer_2_ = std::make_shared<text::ClipTokenizer>(
        text::ClipTokenizer::load(model.component("tokenizer_2").dir));
    p.encoder_2_ = text::load_clip_text_model(model.component("text_encoder_2").dir, options, variant);
    p.encoder_2_->eval();
    if (!p.encoder_2_->config().with_projection())
      throw IoError(cat("[model] ", model.root.string(),
                        ": text_encoder_2 must be a CLIPTextModelWithProjection (SDXL)"));
    p.force_zeros_ = model.index.value("force_zeros_for_empty_prompt", true);
  }
  return p;
}

int64_t PromptEncoder::embed_dim() const {
  int64_t d = encoder_->config().hidden_size;
  if (encoder_2_) d += encoder_2_->config().hidden_size;
  return d;
}

int64_t PromptEncoder::pooled_dim() const {
  return encoder_2_ ? encoder_2_->config().projection_dim : 0;
}

PromptEmbeds PromptEncoder::encode(const std::vector<std::string>& prompts) const {
  torch::NoGradGuard no_grad;
  PromptEmbeds out;
  const auto ids = tokenizer_->tokenize(prompts).to(device_);  // [B, 77]
  if (!encoder_2_) {
    out.embeds = encoder_->forward(ids).last_hidden_state;  // [B, 77, D]
    return out;
  }
  const auto ids_2 = tokenizer_2_->tokenize(prompts).to(device_);
  auto o1 = encoder_->forward(ids, /*output_hidden_states=*/true);
  auto o2 = encoder_2_->forward(ids_2, /*output_hidden_states=*/true);
  const auto& h1 = o1.hidden_states[o1.hidden_states.size() - 2];  // penultimate layer
  const auto& h2 = o2.hidden_states[o2.hidden_states.size() - 2];
  out.embeds = torch::cat({h1, h2}, -1);  // [B, 77, D1 + D2]
  out.pooled = o2.text_embeds;            // [B, P]
  return out;
}

PromptEmbeds PromptEncoder::zeros(int64_t n) const {
  auto opts = torch::TensorOptions().device(device_).dtype(dtype_);
  PromptEmbeds out;
  out.embeds = torch::zeros({n, sequence_length(), embed_dim()}, opts);
  if (encoder_2_) out.pooled = torch::zeros({n, pooled_dim()}, opts);
  return out;
}

int64_t PromptEncoder::parameter_count() const {
  int64_t n = 0;
  for (const auto* e : {&encoder_, &encoder_2_})
    if (*e)
      for (const auto& p : (*e)->parameters()) n += p.numel();
  return n;
}

}  // namespace dro::pipeline
