// The precision policy of `dro train`: which tensors are held and computed in which dtype.
//
//   mode        trained UNet   grads, AdamW, EMA   frozen models*       forwards             replay buffer
//   no          fp32           fp32                fp32                 fp32                 fp32
//   bf16        fp32 (master)  fp32                bf16                 bf16 autocast        fp32
//   pure-bf16   bf16           bf16                bf16                 bf16                 bf16
//
// * the frozen reference UNet, the policy snapshot when it is a separate copy, the VAE and the
//   text encoders. "forwards" covers the learner's two and the buffer filler's sampling; under
//   bf16 autocast matmuls and convolutions run in bf16, norms and softmax in fp32. pure-bf16 is
//   the official train.py behaviour.
#pragma once

#include <string>

#include <torch/torch.h>

namespace dro::train {

struct TrainConfig;

struct Precision {
  std::string mode;                          // "no" | "bf16" | "pure-bf16"
  torch::Dtype trained = torch::kFloat32;    // the trained UNet, its gradients, AdamW state, EMA
  torch::Dtype frozen = torch::kFloat32;     // reference, separate policy, VAE, text encoders
  torch::Dtype buffer = torch::kFloat32;     // replay buffer and learner inputs
  bool autocast = false;                     // bf16 autocast around every UNet forward

  // From --mixed-precision (auto: bf16 on CUDA, no on CPU) and --pure-bf16; UsageError for fp16.
  static Precision resolve(const TrainConfig& cfg, const torch::Device& device);
  // One line for the run header, e.g. "bf16 autocast (fp32 master weights, bf16 frozen models)".
  std::string describe() const;
};

// Parameter counts of what training holds (from the loaded models).
struct ModelSizes {
  int64_t unet = 0, vae = 0, text_encoders = 0;
  bool reference = true;         // a frozen reference UNet (objectives with policy samples)
  bool separate_policy = false;  // a third UNet copy: the lagged policy
  bool ema = true;
  bool ema_on_cpu = true;
  int64_t lora = 0;  // > 0: trained LoRA parameters on a frozen UNet (held in `frozen`)
};

// Bytes of weights, gradients, AdamW moments and EMA under `p`: device and host (CPU EMA).
struct MemoryEstimate {
  double trained = 0, gradients = 0, optimizer = 0, ema = 0, frozen_unets = 0, encoders = 0;
  double device_total() const;
  double host_total = 0;  // the EMA when it is offloaded
  bool lora = false;      // trained/gradients/optimizer/ema are the adapters'; frozen_unets includes the base
};
MemoryEstimate estimate_memory(const Precision& p, const ModelSizes& sizes);
// "weights 3.4 GB + grads 3.4 GB + AdamW 6.9 GB + ... = 17.8 GB on the device, EMA 3.4 GB on the host"
std::string describe_memory(const MemoryEstimate& m);

}  // namespace dro::train
