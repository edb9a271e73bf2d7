#include "dro/nn/timestep_embedding.h"

#include <cmath>

#include "dro/core/error.h"

namespace dro::nn {

torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                 double freq_shift, double scale, double max_period) {
  if (timesteps.dim() != 1)
    throw UsageError(
        cat("[timesteps] expected a 1-D tensor of timesteps, got shape ", timesteps.sizes()));
  const int64_t half = dim / 2;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(timesteps.device());
  // Same float32 operation order as diffusers' get_timestep_embedding, so results match bitwise.
  torch::Tensor exponent = torch::arange(0, half, f32) * (-std::log(max_period));
  exponent = exponent / (static_cast<double>(half) - freq_shift);
  // args: [N, half]
  torch::Tensor args = timesteps.unsqueeze(1).to(torch::kFloat) * exponent.exp().unsqueeze(0);
  if (scale != 1.0) args = args * scale;
  torch::Tensor emb = flip_sin_to_cos ? torch::cat({args.cos(), args.sin()}, -1)
                                      : torch::cat({args.sin(), args.cos()}, -1);
  if (dim % 2 == 1) emb = torch::constant_pad_nd(emb, {0, 1, 0, 0});
  return emb;  // [N, dim]
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in_channels, int64_t time_embed_dim) {
  linear_1 = register_module("linear_1", Linear(in_channels, time_embed_dim));
  linear_2 = register_module("linear_2", Linear(time_embed_dim, time_embed_dim));
}

torch::Tensor TimestepEmbeddingImpl::forward(const torch::Tensor& sample) {
  return linear_2(torch::silu(linear_1(sample)));
}

}  // namespace dro::nn
