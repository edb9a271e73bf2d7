// The UNet / VAE building blocks on their own: attention paths, timestep embedding, samplers and
// the gradient checkpoint function.
#include <cmath>

#include "dro/core/error.h"
#include "dro/nn/attention.h"
#include "dro/nn/checkpoint.h"
#include "dro/nn/downsample.h"
#include "dro/nn/timestep_embedding.h"
#include "dro/nn/upsample.h"
#include "test_util.h"

namespace dro::nn {
namespace {

// Reference multi-head attention written out with plain autograd ops.
torch::Tensor reference_attention(Attention& attn, const torch::Tensor& x,
                                  const torch::Tensor& ctx) {
  const int64_t B = x.size(0), h = attn->options.heads, d = attn->options.dim_head;
  const torch::Tensor& kv = ctx.defined() ? ctx : x;
  auto split = [&](const torch::Tensor& t) { return t.view({B, -1, h, d}).transpose(1, 2); };
  torch::Tensor q = split(attn->to_q(x)), k = split(attn->to_k(kv)), v = split(attn->to_v(kv));
  torch::Tensor p =
      torch::softmax(torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(double(d)), -1);
  return attn->to_out(torch::matmul(p, v).transpose(1, 2).reshape({B, -1, h * d}));
}

// Long sequences are split into several query blocks; forward and backward must match the
// straightforward computation.
TEST(UnetBlocks, AttentionMatchesReferenceForwardAndBackward) {
  torch::manual_seed(0);
  for (int64_t heads : {1, 4}) {
    for (bool cross : {false, true}) {
      AttentionOptions o;
      o.query_dim = 32;
      o.heads = heads;
      o.dim_head = 32 / heads;
      if (cross) o.cross_attention_dim = 24;
      Attention attn(o);
      const torch::Tensor x0 = torch::randn({2, 1200, 32});  // 1200 queries: several blocks
      const torch::Tensor ctx0 = torch::randn({2, cross ? 77 : 1200, cross ? 24 : 32});
      const torch::Tensor w = torch::randn({2, 1200, 32});
      auto grads = [&](bool reference) {
        attn->zero_grad();
        torch::Tensor x = x0.clone().requires_grad_(true);
        torch::Tensor ctx = cross ? ctx0.clone().requires_grad_(true) : torch::Tensor();
        torch::Tensor y = reference ? reference_attention(attn, x, ctx) : attn(x, ctx);
        (y * w).sum().backward();
        std::vector<torch::Tensor> g{y.detach(), x.grad()};
        if (cross) g.push_back(ctx.grad());
        for (const auto& p : attn->parameters()) g.push_back(p.grad().clone());
        return g;
      };
      const auto ours = grads(false), ref = grads(true);
      for (size_t i = 0; i < ours.size(); ++i)
        EXPECT_TRUE(test::allclose(ours[i], ref[i],
                                   1e-4 * std::max(1.0, ref[i].abs().max().item<double>())))
            << heads << " heads, cross " << cross << ", tensor " << i;
      torch::NoGradGuard no_grad;
      EXPECT_TRUE(test::allclose(attn(x0, cross ? ctx0 : torch::Tensor()), ours[0], 1e-5));
    }
  }
}

TEST(UnetBlocks, AttentionImageFormHasResidualAndNchwLayout) {
  torch::manual_seed(0);
  AttentionOptions o;
  o.query_dim = 8;
  o.heads = 1;
  o.dim_head = 8;
  o.bias = true;
  o.norm_num_groups = 4;
  o.eps = 1e-6;
  o.residual_connection = true;
  Attention attn(o);
  const torch::Tensor x = torch::randn({2, 8, 5, 7});
  torch::NoGradGuard no_grad;
  const torch::Tensor y = attn(x);
  EXPECT_TRUE(y.is_contiguous());
  // Reference: the same computation written out on tokens.
  torch::Tensor tokens = attn->group_norm(x).flatten(2).transpose(1, 2);
  torch::Tensor q = attn->to_q(tokens), k = attn->to_k(tokens), v = attn->to_v(tokens);
  torch::Tensor p = torch::softmax(torch::bmm(q, k.transpose(1, 2)) / std::sqrt(8.0), -1);
  torch::Tensor ref = attn->to_out(torch::bmm(p, v)).transpose(1, 2).reshape(x.sizes()) + x;
  EXPECT_TRUE(test::allclose(y, ref, 1e-5));
}

TEST(UnetBlocks, TimestepEmbeddingValues) {
  // dim 6, flip: [cos(t f_i), sin(t f_i)] with f_i = exp(-ln(1e4) * i / 3), i = 0..2.
  const torch::Tensor t = torch::tensor({0.0, 321.5}, torch::kFloat64);
  const torch::Tensor e = timestep_embedding(t, 6, true, 0.0);
  ASSERT_EQ(e.sizes(), (std::vector<int64_t>{2, 6}));
  EXPECT_EQ(e.scalar_type(), torch::kFloat);
  for (int i = 0; i < 3; ++i) {
    const double f = std::exp(-std::log(10000.0) * i / 3.0);
    EXPECT_NEAR(e[1][i].item<double>(), std::cos(321.5 * f), 1e-4);
    EXPECT_NEAR(e[1][3 + i].item<double>(), std::sin(321.5 * f), 1e-4);
    EXPECT_EQ(e[0][i].item<double>(), 1.0);
  }
  const torch::Tensor unflipped = timestep_embedding(torch::tensor({5}), 7, false, 1.0);
  EXPECT_EQ(unflipped.size(1), 7);  // odd width: zero padded
  EXPECT_EQ(unflipped[0][6].item<double>(), 0.0);
  EXPECT_NEAR(unflipped[0][0].item<double>(), std::sin(5.0), 1e-6);  // sin first, frequency 1
  EXPECT_THROW(timestep_embedding(torch::zeros({2, 2}), 4, true, 0.0), UsageError);
}

TEST(UnetBlocks, SamplerShapes) {
  Downsample2D symmetric(4, 4, 1), vae(4, 4, 0);
  Upsample2D up(4, 4);
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({1, 4, 9, 8});
  EXPECT_EQ(symmetric(x).sizes(), (std::vector<int64_t>{1, 4, 5, 4}));
  EXPECT_EQ(vae(x).sizes(), (std::vector<int64_t>{1, 4, 4, 4}));  // pad right/bottom, then stride 2
  EXPECT_EQ(up(x).sizes(), (std::vector<int64_t>{1, 4, 18, 16}));
  EXPECT_EQ(up(x, std::vector<int64_t>{17, 15}).sizes(), (std::vector<int64_t>{1, 4, 17, 15}));
}

TEST(UnetBlocks, CheckpointGradients) {
  torch::manual_seed(0);
  torch::nn::Linear lin(5, 3);
  const torch::Tensor x0 = torch::randn({4, 5});
  const torch::Tensor frozen = torch::randn({4, 3});  // an input that needs no gradient
  auto f = [&](const std::vector<torch::Tensor>& in) {
    torch::Tensor y = torch::tanh(lin(in[0])) * in[2];
    return in[1].defined() ? y + in[1] : y;
  };
  torch::Tensor x = x0.clone().requires_grad_(true);
  f({x, {}, frozen}).square().sum().backward();
  const torch::Tensor gx = x.grad().clone(), gw = lin->weight.grad().clone(),
                      gb = lin->bias.grad().clone();

  lin->zero_grad();
  torch::Tensor x2 = x0.clone().requires_grad_(true);
  torch::Tensor y = checkpoint(f, {x2, {}, frozen}, lin->parameters());
  EXPECT_TRUE(y.requires_grad());
  y.square().sum().backward();
  EXPECT_TRUE(test::allclose(x2.grad(), gx, 1e-6));
  EXPECT_TRUE(test::allclose(lin->weight.grad(), gw, 1e-6));
  EXPECT_TRUE(test::allclose(lin->bias.grad(), gb, 1e-6));

  // A parameter changed in place between forward and backward is caught, not silently used.
  torch::Tensor y2 = checkpoint(f, {x0, {}, frozen}, lin->parameters());
  {
    torch::NoGradGuard no_grad;
    lin->weight.add_(1.0);
  }
  EXPECT_THROW(y2.sum().backward(), c10::Error);

  // Frozen parameters and inputs: nothing to differentiate, no graph.
  for (auto& p : lin->parameters()) p.requires_grad_(false);
  EXPECT_FALSE(checkpoint(f, {x0, {}, frozen}, lin->parameters()).requires_grad());
}

}  // namespace
}  // namespace dro::nn
