// Prompt encoding as diffusers' Stable Diffusion pipelines do it: SD1.5 takes the last hidden state
// of its CLIP text encoder; SDXL concatenates the penultimate hidden states of both encoders on the
// feature axis and takes the projected pooled output of encoder 2.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/io/model_folder.h"
#include "dro/nn/state_dict.h"
#include "dro/text/clip_text_model.h"
#include "dro/text/clip_tokenizer.h"

namespace dro::pipeline {

struct PromptEmbeds {
  torch::Tensor embeds;  // [B, S, D] the UNet's encoder_hidden_states
  torch::Tensor pooled;  // [B, P] SDXL pooled text embeds; undefined for SD1.5
};

class PromptEncoder {
 public:
  // Loads tokenizer(s) and text encoder(s) of a model folder (SDXL when text_encoder_2 exists).
  static PromptEncoder load(const io::ModelFolder& model, const nn::LoadOptions& options,
                            const std::string& variant = "");

  // Encodes prompts without gradients. [B] prompts -> embeds [B, 77, D] (+ pooled for SDXL).
  PromptEmbeds encode(const std::vector<std::string>& prompts) const;
  // The unconditional embedding SDXL uses when no negative prompt is given
  // (force_zeros_for_empty_prompt): zeros shaped like an encoding of `n` prompts.
  PromptEmbeds zeros(int64_t n) const;

  bool sdxl() const { return static_cast<bool>(encoder_2_); }
  // SDXL pipelines zero the unconditional embedding for empty negative prompts (model_index.json
  // force_zeros_for_empty_prompt, default true); SD1.5 encodes "".
  bool force_zeros_for_empty_prompt() const { return force_zeros_; }
  int64_t embed_dim() const;
  int64_t pooled_dim() const;
  int64_t parameter_count() const;  // of both text encoders
  int64_t sequence_length() const { return tokenizer_->max_length(); }
  torch::Device device() const { return device_; }
  torch::Dtype dtype() const { return dtype_; }

 private:
  std::shared_ptr<text::ClipTokenizer> tokenizer_, tokenizer_2_;
  mutable text::ClipTextModel encoder_{nullptr}, encoder_2_{nullptr};  // forward is not const
  bool force_zeros_ = false;
  torch::Device device_ = torch::kCPU;
  torch::Dtype dtype_ = torch::kFloat32;
};

}  // namespace dro::pipeline
