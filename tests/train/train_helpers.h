// Training helpers shared by the trainer tests: a small expert folder and a tiny run config.
#pragma once

#include <filesystem>
#include <string>

#include <map>

#include <torch/torch.h>

#include "dro/train/train_config.h"

namespace dro::test {

// A small expert folder in the official layout: DIR/<id>/{<id>.png, caption.txt}.
void write_experts(const std::filesystem::path& dir, int n, int size = 40);

// A few micro-steps of DRO on a tiny fixture model at 32 px on CPU (2 x 2 accumulation, a buffer
// of 4 trajectories of 4 steps, state every 2 micro-steps).
train::TrainConfig tiny_config(const std::string& model, const std::filesystem::path& data,
                               const std::filesystem::path& logdir);

// Every tensor of a safetensors file, by name (copies).
std::map<std::string, torch::Tensor> load_tensors(const std::filesystem::path& file);
// Both files exist or neither; when they do, the same names with bitwise equal tensors.
void expect_same_tensors(const std::filesystem::path& a, const std::filesystem::path& b);

}  // namespace dro::test
