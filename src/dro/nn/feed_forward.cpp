#include "dro/nn/feed_forward.h"

namespace dro::nn {

GEGLUImpl::GEGLUImpl(int64_t dim_in, int64_t dim_out) {
  proj = register_module("proj", Linear(dim_in, 2 * dim_out));
}

torch::Tensor GEGLUImpl::forward(const torch::Tensor& x) {
  auto halves = proj(x).chunk(2, -1);  // value, gate: [..., dim_out] each
  return halves[0] * torch::gelu(halves[1]);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t mult, double dropout) : dropout(dropout) {
  const int64_t inner = dim * mult;
  act = GEGLU(dim, inner);
  out = Linear(inner, dim);
  // diffusers' ModuleList [GEGLU, Dropout, Linear] fixes the keys net.0.proj and net.2.
  torch::nn::ModuleList net;
  net->push_back(act);
  net->push_back(torch::nn::Dropout(dropout));
  net->push_back(out);
  register_module("net", net);
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = act(x);
  if (dropout > 0.0) h = torch::dropout(h, dropout, is_training());
  return out(h);
}

}  // namespace dro::nn
