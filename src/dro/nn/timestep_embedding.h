// Timestep conditioning of diffusers' UNets (embeddings.py): the sinusoidal `Timesteps`
// projection (no weights) and the two-layer `TimestepEmbedding` MLP (linear_1, act, linear_2).
#pragma once

#include <torch/torch.h>

#include "dro/nn/lora.h"

namespace dro::nn {

// Sinusoidal embedding of `timesteps` [N] (integer or fractional, any dtype): [N, dim] float32.
// Frequencies exp(-ln(max_period) * i / (dim/2 - freq_shift)); halves [sin, cos], or [cos, sin]
// when flip_sin_to_cos; an odd dim is zero-padded. Computed in float32 as diffusers does.
torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                 double freq_shift, double scale = 1.0,
                                 double max_period = 10000.0);

// diffusers `Timesteps`: a weightless module around timestep_embedding.
struct TimestepsImpl : torch::nn::Module {
  TimestepsImpl(int64_t num_channels, bool flip_sin_to_cos, double freq_shift)
      : num_channels(num_channels), flip_sin_to_cos(flip_sin_to_cos), freq_shift(freq_shift) {}
  // timesteps: [N] -> [N, num_channels] float32
  torch::Tensor forward(const torch::Tensor& timesteps) const {
    return timestep_embedding(timesteps, num_channels, flip_sin_to_cos, freq_shift);
  }
  int64_t num_channels;
  bool flip_sin_to_cos;
  double freq_shift;
};
TORCH_MODULE(Timesteps);

// diffusers `TimestepEmbedding` with SiLU: linear_2(silu(linear_1(x))).
struct TimestepEmbeddingImpl : torch::nn::Module {
  TimestepEmbeddingImpl(int64_t in_channels, int64_t time_embed_dim);
  // sample: [B, in_channels] -> [B, time_embed_dim]
  torch::Tensor forward(const torch::Tensor& sample);

  Linear linear_1{nullptr};  // weight [D, in_channels]
  Linear linear_2{nullptr};  // weight [D, D]
};
TORCH_MODULE(TimestepEmbedding);

}  // namespace dro::nn
