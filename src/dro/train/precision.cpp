#include "dro/train/precision.h"

#include <cstdio>

#include "dro/core/error.h"
#include "dro/train/train_config.h"

namespace dro::train {

Precision Precision::resolve(const TrainConfig& cfg, const torch::Device& device) {
  Precision p;
  const std::string mp = cfg.mixed_precision == "auto" ? (device.is_cuda() ? "bf16" : "no") : cfg.mixed_precision;
  if (mp == "fp16")
    throw UsageError("[train] --mixed-precision fp16 is not supported; use bf16 or no (or --pure-bf16)");
  if (cfg.pure_bf16) {
    p.mode = "pure-bf16";
    p.trained = p.frozen = p.buffer = torch::kBFloat16;
  } else if (mp == "bf16") {
    p.mode = "bf16";
    p.frozen = torch::kBFloat16;
    p.autocast = true;
  } else {
    p.mode = "no";
  }
  return p;
}

std::string Precision::describe() const {
  if (mode == "pure-bf16") return "pure bf16 (weights, gradients, AdamW, EMA and every model in bf16, as train.py)";
  if (mode == "bf16") return "bf16 autocast (fp32 master weights, AdamW and EMA; frozen models held in bf16)";
  return "fp32 everywhere";
}

double MemoryEstimate::device_total() const {
  return trained + gradients + optimizer + ema + frozen_unets + encoders;
}

MemoryEstimate estimate_memory(const Precision& p, const ModelSizes& s) {
  auto bytes = [](torch::Dtype d) { return static_cast<double>(c10::elementSize(d)); };
  MemoryEstimate m;
  const double u = static_cast<double>(s.unet);
  m.lora = s.lora > 0;
  const double t = m.lora ? static_cast<double>(s.lora) : u;  // what is trained
  m.trained = t * bytes(p.trained);
  m.gradients = t * bytes(p.trained);
  m.optimizer = 2 * t * bytes(p.trained);  // exp_avg + exp_avg_sq
  const double ema = s.ema ? t * bytes(p.trained) : 0;
  (s.ema_on_cpu ? m.host_total : m.ema) = ema;
  if (m.lora)  // the frozen base, an own reference if named, and the policy's adapter copy
    m.frozen_unets = (1 + (s.reference ? 1 : 0)) * u * bytes(p.frozen) + (s.separate_policy ? t * bytes(p.trained) : 0);
  else
    m.frozen_unets = ((s.reference ? 1 : 0) + (s.separate_policy ? 1 : 0)) * u * bytes(p.frozen);
  m.encoders = static_cast<double>(s.vae + s.text_encoders) * bytes(p.frozen);
  return m;
}

std::string describe_memory(const MemoryEstimate& m) {
  auto gb = [](double b) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
    return std::string(buf);
  };
  std::string s = (m.lora ? "LoRA " : "UNet ") + gb(m.trained) + " + grads " + gb(m.gradients) + " + AdamW " + gb(m.optimizer);
  if (m.ema > 0) s += " + EMA " + gb(m.ema);
  if (m.frozen_unets > 0) s += (m.lora ? " + frozen UNet " : " + frozen UNets ") + gb(m.frozen_unets);
  s += " + VAE/text " + gb(m.encoders) + " = " + gb(m.device_total()) + " on the device";
  if (m.host_total > 0) s += ", EMA " + gb(m.host_total) + " on the host";
  return s + " (activations not included)";
}

}  // namespace dro::train
