// Gradient checkpointing (nn/checkpoint) against the same computation without it: float32, CPU
// bf16 autocast (the recomputation must run under the forward's autocast settings), dropout (it
// must replay the forward's random numbers), the settings and streams it leaves behind, layers of
// the tiny SD1.5 UNet and the whole UNet with its blocks checkpointed. Tolerances are relative to
// max(1, max |grad|) of each tensor.
#include "dro/nn/checkpoint.h"

#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>

#include "dro/core/compat.h"
#include "dro/models/unet.h"
#include "dro/nn/transformer_block.h"
#include "test_util.h"

namespace dro::nn {
namespace {

using compat::AutocastGuard;
using compat::AutocastOn;
using compat::AutocastState;
using compat::AutocastStateGuard;

// A small MLP in two halves, so that one checkpoint's input comes from another; `p_drop` > 0
// puts dropout after each GELU.
struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(double p_drop = 0.0) {
    first = register_module("first",
                            torch::nn::Sequential(torch::nn::Linear(16, 32), torch::nn::GELU()));
    second = register_module("second",
                             torch::nn::Sequential(torch::nn::Linear(32, 32), torch::nn::GELU()));
    if (p_drop > 0) {
      first->push_back(torch::nn::Dropout(p_drop));
      second->push_back(torch::nn::Dropout(p_drop));
    }
    second->push_back(torch::nn::Linear(32, 8));
  }
  torch::Tensor forward(const torch::Tensor& x) { return second->forward(first->forward(x)); }

  torch::nn::Sequential first{nullptr}, second{nullptr};
};
TORCH_MODULE(Mlp);

using Grads = std::map<std::string, torch::Tensor>;
// Runs one half of the MLP: the function handed to checkpoint().
using Half = std::function<torch::Tensor(torch::nn::Sequential&, const torch::Tensor&)>;

// d/d(input, parameters) of sum(net(x) * w), the forward under `autocast`. With `half` set, each
// half runs through checkpoint(half, ...). Backward runs after the autocast scope has ended, as
// in the trainer, unless `backward_autocast` is given.
Grads mlp_grads(Mlp& net, const torch::Tensor& x0, const torch::Tensor& w,
                const AutocastState& autocast, const Half& half = {}, torch::Tensor* out = nullptr,
                const std::optional<AutocastState>& backward_autocast = std::nullopt) {
  net->zero_grad();
  torch::Tensor x = x0.clone().requires_grad_(true);
  torch::Tensor y;
  {
    AutocastStateGuard ac(autocast);
    if (half) {
      auto run = [&half](torch::nn::Sequential s) {
        return [s, half](const std::vector<torch::Tensor>& in) mutable { return half(s, in[0]); };
      };
      torch::Tensor h = checkpoint(run(net->first), {x}, net->first->parameters());
      y = checkpoint(run(net->second), {h}, net->second->parameters());
    } else {
      y = net->forward(x);
    }
  }
  if (out) *out = y.detach();
  {
    std::optional<AutocastStateGuard> ac;
    if (backward_autocast) ac.emplace(*backward_autocast);
    (y.to(torch::kFloat) * w).sum().backward();
  }
  Grads g{{"<input>", x.grad()}};
  for (const auto& p : net->named_parameters()) g[p.key()] = p.value().grad().clone();
  return g;
}

torch::Tensor plain_forward(torch::nn::Sequential& s, const torch::Tensor& x) {
  return s->forward(x);
}

// What checkpoint did before it kept the forward's autocast settings: the recomputation (the only
// call made with grad mode on) runs with autocast off. Declared first in a checkpointed function.
struct OldBehaviour {
  OldBehaviour() {
    if (torch::GradMode::is_enabled()) off.emplace(AutocastState{});
  }
  std::optional<AutocastStateGuard> off;
};

// Largest |a - b| over all tensors, relative to the largest |b| of that tensor (at least 1);
// checks tensor by tensor against `rel_tol` and prints the worst one.
double compare(const Grads& actual, const Grads& expected, double rel_tol,
               const std::string& what) {
  EXPECT_EQ(actual.size(), expected.size()) << what;
  double worst = 0;
  std::string worst_name;
  for (const auto& [name, e] : expected) {
    const auto it = actual.find(name);
    if (it == actual.end() || !it->second.defined()) {
      ADD_FAILURE() << what << ": no gradient for " << name;
      continue;
    }
    const double scale = std::max(1.0, e.abs().max().item<double>());
    const double d = test::max_abs_diff(it->second, e) / scale;
    if (d >= worst) worst = d, worst_name = name;
    EXPECT_TRUE(test::allclose(it->second, e, rel_tol * scale)) << what << ": " << name;
  }
  std::cout << "[ ckpt     ] " << what << ": largest relative gradient difference " << worst << " ("
            << worst_name << ")\n";
  return worst;
}

// Largest |a - b| / max(1, max |b|) over the tensors of `b`.
double worst_relative(const Grads& a, const Grads& b) {
  double worst = 0;
  for (const auto& [name, g] : b)
    worst = std::max(
        worst, test::max_abs_diff(a.at(name), g) / std::max(1.0, g.abs().max().item<double>()));
  return worst;
}

AutocastState cpu_bf16() {
  AutocastState s = compat::autocast_state();
  s.cpu_enabled = true;
  s.cpu_dtype = at::kBFloat16;
  return s;
}

// Same order of the same float32 operations: equal to rounding (1e-6 relative to max |grad|).
TEST(Checkpoint, Float32SameGradientsAsWithout) {
  torch::manual_seed(0);
  Mlp net;
  const torch::Tensor x = torch::randn({4, 16}), w = torch::randn({4, 8});
  const AutocastState off = compat::autocast_state();
  const Grads plain = mlp_grads(net, x, w, off);
  const Grads checkpointed = mlp_grads(net, x, w, off, plain_forward);
  compare(checkpointed, plain, 1e-6, "mlp float32");
}

// Under CPU bf16 autocast the recomputation must run in bf16 as the forward did. The same bf16
// kernels on the same inputs: 1e-6 relative to max |grad| (in practice exact). Recomputing in
// float32 instead (the old behaviour) moves the gradients by bf16 rounding, ~1e-2 relative.
TEST(Checkpoint, Bf16AutocastRecomputesUnderTheForwardsSettings) {
  torch::manual_seed(0);
  Mlp net;
  const torch::Tensor x = torch::randn({4, 16}), w = torch::randn({4, 8});
  torch::Tensor y_plain, y_ckpt;
  const Grads plain = mlp_grads(net, x, w, cpu_bf16(), {}, &y_plain);
  ASSERT_EQ(y_plain.scalar_type(), torch::kBFloat16) << "CPU autocast did not run Linear in bf16";

  std::vector<AutocastState> seen;  // by the recomputations
  auto recording = [&seen](torch::nn::Sequential& s, const torch::Tensor& h) {
    if (torch::GradMode::is_enabled()) seen.push_back(compat::autocast_state());
    return s->forward(h);
  };
  const AutocastState before = compat::autocast_state();
  const Grads checkpointed = mlp_grads(net, x, w, cpu_bf16(), recording, &y_ckpt);
  EXPECT_EQ(compat::autocast_state(), before) << "backward left autocast settings changed";
  ASSERT_EQ(seen.size(), 2u);
  for (const auto& s : seen) {
    EXPECT_TRUE(s.cpu_enabled);
    EXPECT_EQ(s.cpu_dtype, at::kBFloat16);
    EXPECT_FALSE(s.cuda_enabled);
  }
  EXPECT_TRUE(test::allclose(y_ckpt.to(torch::kFloat), y_plain.to(torch::kFloat), 0.0));
  const double same = compare(checkpointed, plain, 1e-6, "mlp bf16 autocast");

  // The old behaviour, so that this test can fail. One checkpoint over the whole MLP (its input
  // is float32): recomputed outside autocast it runs in float32 and silently gives other
  // gradients. (With the two chained checkpoints above it would not even run: the second one's
  // bf16 input meets float32 weights, "mat1 and mat2 must have the same dtype".)
  net->zero_grad();
  torch::Tensor xo = x.clone().requires_grad_(true);
  torch::Tensor yo;
  {
    AutocastStateGuard ac(cpu_bf16());
    yo = checkpoint(
        [&net](const std::vector<torch::Tensor>& in) {
          OldBehaviour old;
          return net->forward(in[0]);
        },
        {xo}, net->parameters());
  }
  (yo.to(torch::kFloat) * w).sum().backward();
  Grads old{{"<input>", xo.grad()}};
  for (const auto& p : net->named_parameters()) old[p.key()] = p.value().grad().clone();
  double worst = 0;
  for (const auto& [name, g] : plain)
    worst = std::max(
        worst, test::max_abs_diff(old.at(name), g) / std::max(1.0, g.abs().max().item<double>()));
  std::cout << "[ ckpt     ] mlp bf16 autocast, recomputed outside autocast (old behaviour): "
               "largest relative gradient difference "
            << worst << "\n";
  EXPECT_GT(worst, 1e-3);
  EXPECT_GT(worst, 100 * std::max(same, 1e-6));
}

// A backward called under other autocast settings (here: the forward in float32, backward inside
// a bf16 autocast scope) still recomputes under the forward's, and leaves the caller's as they
// were. Reference: the same without checkpointing, backward in the same scope.
TEST(Checkpoint, BackwardUnderOtherAutocastSettings) {
  torch::manual_seed(1);
  Mlp net;
  const torch::Tensor x = torch::randn({4, 16}), w = torch::randn({4, 8});
  const AutocastState off = compat::autocast_state();
  const Grads plain = mlp_grads(net, x, w, off, {}, nullptr, cpu_bf16());
  std::vector<AutocastState> seen;
  auto recording = [&seen](torch::nn::Sequential& s, const torch::Tensor& h) {
    if (torch::GradMode::is_enabled()) {
      seen.push_back(compat::autocast_state());
      EXPECT_EQ(h.scalar_type(), torch::kFloat);
    }
    return s->forward(h);
  };
  const Grads checkpointed = mlp_grads(net, x, w, off, recording, nullptr, cpu_bf16());
  EXPECT_EQ(compat::autocast_state(), off);
  ASSERT_EQ(seen.size(), 2u);
  for (const auto& s : seen) EXPECT_FALSE(s.cpu_enabled);
  compare(checkpointed, plain, 1e-6, "mlp float32, backward inside bf16 autocast");
}

// An exception thrown by the recomputation leaves the caller's autocast settings and random
// streams as they were.
TEST(Checkpoint, ExceptionInRecomputationRestoresState) {
  torch::manual_seed(2);
  Mlp net;
  const torch::Tensor x = torch::randn({4, 16}, torch::requires_grad());
  torch::Tensor y;
  {
    AutocastGuard ac(torch::kCPU, true, AutocastOn::kCudaAndCpu);
    y = checkpoint(
        [&net](const std::vector<torch::Tensor>& in) {
          if (torch::GradMode::is_enabled()) throw std::runtime_error("recomputation failed");
          return net->forward(in[0]);
        },
        {x}, net->parameters());
  }
  torch::rand({3});  // moves the stream away from the forward's
  const AutocastState before = compat::autocast_state();
  const torch::Tensor rng_before = at::detail::getDefaultCPUGenerator().get_state();
  EXPECT_ANY_THROW(y.to(torch::kFloat).sum().backward());
  EXPECT_EQ(compat::autocast_state(), before);
  EXPECT_TRUE(torch::equal(at::detail::getDefaultCPUGenerator().get_state(), rng_before));
}

// With dropout the recomputation replays the forward's random numbers: the same gradients as
// without checkpointing (1e-6 relative), and the default generator ends where it would without.
TEST(Checkpoint, DropoutReplaysTheForwardsRandomNumbers) {
  torch::manual_seed(3);
  Mlp net(/*p_drop=*/0.3);
  net->train();
  const torch::Tensor x = torch::randn({64, 16}), w = torch::randn({64, 8});
  const AutocastState off = compat::autocast_state();
  torch::manual_seed(42);
  const Grads plain = mlp_grads(net, x, w, off);
  const torch::Tensor next_plain = torch::rand({8});
  torch::manual_seed(42);
  const Grads checkpointed = mlp_grads(net, x, w, off, plain_forward);
  const torch::Tensor next_ckpt = torch::rand({8});
  compare(checkpointed, plain, 1e-6, "mlp with dropout 0.3");
  EXPECT_TRUE(torch::equal(next_ckpt, next_plain)) << "checkpointing moved the random stream";
}

// AutocastGuard keeps its CUDA-only default: on a CPU device it changes nothing unless asked.
TEST(Checkpoint, AutocastGuardCpuOnlyWhenAsked) {
  const AutocastState before = compat::autocast_state();
  {
    AutocastGuard ac(torch::kCPU, true);
    EXPECT_EQ(compat::autocast_state(), before);
  }
  {
    AutocastGuard ac(torch::kCPU, false, AutocastOn::kCudaAndCpu);
    EXPECT_EQ(compat::autocast_state(), before);
  }
  {
    AutocastGuard ac(torch::kCPU, true, AutocastOn::kCudaAndCpu);
    const AutocastState s = compat::autocast_state();
    EXPECT_TRUE(s.cpu_enabled);
    EXPECT_EQ(s.cpu_dtype, at::kBFloat16);
    EXPECT_EQ(s.cuda_enabled, before.cuda_enabled);
    EXPECT_EQ(s.cuda_dtype, before.cuda_dtype);
  }
  EXPECT_EQ(compat::autocast_state(), before);
}

// d/d(inputs, parameters of m) of sum(f(inputs) * w): the forward under `autocast`, backward
// after it has ended.
Grads grads_of(const CheckpointFn& f, const std::vector<torch::Tensor>& inputs,
               torch::nn::Module& m, const torch::Tensor& w, const AutocastState& autocast) {
  m.zero_grad();
  std::vector<torch::Tensor> in;
  for (const auto& t : inputs) in.push_back(t.clone().requires_grad_(true));
  torch::Tensor y;
  {
    AutocastStateGuard ac(autocast);
    y = f(in);
  }
  (y.to(torch::kFloat) * w).sum().backward();
  Grads g;
  for (size_t i = 0; i < in.size(); ++i) g["<input " + std::to_string(i) + ">"] = in[i].grad();
  // Parameters the function does not read have no gradient in either run.
  for (const auto& p : m.named_parameters())
    if (p.value().grad().defined()) g[p.key()] = p.value().grad().clone();
  return g;
}

// Whether CPU autocast can run GroupNorm and LayerNorm on bf16 activations with float32 weights.
// LibTorch 1.13 cannot: autocast leaves both alone and their CPU kernels want one dtype.
// Real UNet layers: the tiny SD1.5 UNet's mid-block BasicTransformerBlock, checkpointed as
// Transformer2DModel does it, against the same without checkpointing. `body(block, h, ctx)` is
// what is checkpointed. Float32 and CPU bf16 autocast: 1e-6 relative to max |grad|; recomputed
// outside autocast (the old behaviour): clearly different.
using BlockBody = std::function<torch::Tensor(BasicTransformerBlock&, const torch::Tensor&,
                                              const torch::Tensor&)>;
void check_transformer_block(const BlockBody& body, const std::string& what) {
  auto unet = models::load_unet(test::fixtures() / "tiny-sd15" / "unet");
  BasicTransformerBlock b(
      unet->mid_block->attentions.at(0)->transformer_blocks->ptr<BasicTransformerBlockImpl>(0));
  auto gen = at::detail::createCPUGenerator(5);
  const int64_t dim = b->options.dim, ctx_dim = b->options.cross_attention_dim;
  const torch::Tensor h = torch::randn({2, 16, dim}, gen);       // [B, H*W, C]
  const torch::Tensor ctx = torch::randn({2, 7, ctx_dim}, gen);  // [B, S, D]
  const torch::Tensor w = torch::randn({2, 16, dim}, gen);
  auto plain = [b, body](const std::vector<torch::Tensor>& in) mutable {
    return body(b, in[0], in[1]);
  };
  auto ckpt = [b, body](const std::vector<torch::Tensor>& in) {
    return checkpoint(
        [b, body](const std::vector<torch::Tensor>& a) mutable { return body(b, a[0], a[1]); },
        {in[0], in[1]}, b->parameters());
  };
  auto old = [b, body](const std::vector<torch::Tensor>& in) {
    return checkpoint(
        [b, body](const std::vector<torch::Tensor>& a) mutable {
          OldBehaviour old;
          return body(b, a[0], a[1]);
        },
        {in[0], in[1]}, b->parameters());
  };
  const AutocastState off = compat::autocast_state();
  compare(grads_of(ckpt, {h, ctx}, *b, w, off), grads_of(plain, {h, ctx}, *b, w, off), 1e-6,
          what + " float32");
  const Grads reference = grads_of(plain, {h, ctx}, *b, w, cpu_bf16());
  const double same = compare(grads_of(ckpt, {h, ctx}, *b, w, cpu_bf16()), reference, 1e-6,
                              what + " bf16 autocast");
  const double outside = worst_relative(grads_of(old, {h, ctx}, *b, w, cpu_bf16()), reference);
  std::cout << "[ ckpt     ] " << what
            << " bf16 autocast, recomputed outside autocast (old behaviour): largest relative "
               "gradient difference "
            << outside << "\n";
  EXPECT_GT(outside, 1e-3);
  EXPECT_GT(outside, 100 * std::max(same, 1e-6));
}

// The block's attention and GEGLU feed-forward with their residuals, without the LayerNorms
// (the whole block, norms included, follows).
TEST(Checkpoint, UnetAttentionAndFeedForwardUnderBf16Autocast) {
  DRO_REQUIRE_FIXTURES();
  check_transformer_block(
      [](BasicTransformerBlock& b, const torch::Tensor& x, const torch::Tensor& ctx) {
        torch::Tensor h = b->attn1(x) + x;
        h = b->attn2(h, ctx) + h;
        return b->ff(h) + h;
      },
      "unet attention + feed-forward");
}

// The whole block, where CPU autocast can run LayerNorm on bf16.
TEST(Checkpoint, UnetTransformerBlockUnderBf16Autocast) {
  DRO_REQUIRE_FIXTURES();
  check_transformer_block([](BasicTransformerBlock& b, const torch::Tensor& x,
                             const torch::Tensor& ctx) { return b->forward(x, ctx); },
                          "unet transformer block");
}

// The tiny SD1.5 UNet with every resnet and transformer block checkpointed (what the trainer's
// gradient_checkpointing switches on) against the same UNet without. `autocast` as in the trainer:
// around the forward only.
Grads unet_grads(models::UNet2DConditionModel& unet, bool checkpointing,
                 const AutocastState& autocast) {
  auto gen = at::detail::createCPUGenerator(11);
  const torch::Tensor x0 = torch::randn({2, 4, 8, 8}, gen);
  const torch::Tensor ctx0 = torch::randn({2, 7, 8}, gen);
  const torch::Tensor w = torch::randn({2, 4, 8, 8}, gen);
  const torch::Tensor t = torch::tensor({10, 700});
  unet->zero_grad();
  unet->set_gradient_checkpointing(checkpointing);
  torch::Tensor x = x0.clone().requires_grad_(true);
  torch::Tensor ctx = ctx0.clone().requires_grad_(true);
  torch::Tensor out;
  {
    AutocastStateGuard ac(autocast);
    out = unet->forward(x, t, ctx);
  }
  (out.to(torch::kFloat) * w).sum().backward();
  unet->set_gradient_checkpointing(false);
  Grads g{{"<sample>", x.grad()}, {"<context>", ctx.grad()}};
  for (const auto& p : unet->named_parameters()) g[p.key()] = p.value().grad().clone();
  return g;
}

// 1e-5 relative, as UnetCheckpointing.SameGradientsAsWithout: the gradients of inputs several
// blocks share (temb, the text context) are summed in another order.
TEST(Checkpoint, TinyUnetFloat32) {
  DRO_REQUIRE_FIXTURES();
  auto unet = models::load_unet(test::fixtures() / "tiny-sd15" / "unet");
  const AutocastState off = compat::autocast_state();
  compare(unet_grads(unet, true, off), unet_grads(unet, false, off), 1e-5, "tiny unet float32");
}

// Under CPU bf16 autocast. Every block alone is exact (the transformer-block and MLP tests
// above); over the whole UNet the gradients of bf16 tensors that many blocks read (the time
// embedding, the skip activations) are summed in another order and round in bf16 (2^-8) each
// time, which compounds towards the input: measured at most 1.96e-2 of max |grad| per tensor with
// LibTorch 1.13, so 3e-2.
TEST(Checkpoint, TinyUnetBf16Autocast) {
  DRO_REQUIRE_FIXTURES();
  auto unet = models::load_unet(test::fixtures() / "tiny-sd15" / "unet");
  compare(unet_grads(unet, true, cpu_bf16()), unet_grads(unet, false, cpu_bf16()), 3e-2,
          "tiny unet bf16 autocast");
}

}  // namespace
}  // namespace dro::nn
