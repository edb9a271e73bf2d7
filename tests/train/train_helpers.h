// Training helpers shared by the trainer tests: a small expert folder and a tiny run config.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <map>

#include <torch/torch.h>

#include "dro/io/json.h"
#include "dro/train/train_config.h"

namespace dro::test {

// A small expert folder in the official layout: DIR/<id>/{<id>.png, caption.txt}.
void write_experts(const std::filesystem::path& dir, int n, int size = 40);

// n images of varying width in DIR/images/ and the manifests DIR/pairs.jsonl (image i preferred
// to image i+1) and DIR/labels.jsonl (even images desirable).
void write_manifests(const std::filesystem::path& dir, int n);

// A few micro-steps of DRO on a tiny fixture model at 32 px on CPU (2 x 2 accumulation, a buffer
// of 4 trajectories of 4 steps, state every 2 micro-steps).
train::TrainConfig tiny_config(const std::string& model, const std::filesystem::path& data,
                               const std::filesystem::path& logdir);

// Every tensor of a safetensors file, by name (copies).
std::map<std::string, torch::Tensor> load_tensors(const std::filesystem::path& file);
// Both files exist or neither; when they do, the same names with bitwise equal tensors.
void expect_same_tensors(const std::filesystem::path& a, const std::filesystem::path& b);

// The rows of LOGDIR/metrics.jsonl.
std::vector<io::OrderedJson> metric_rows(const std::filesystem::path& logdir);
// Two runs left the same state: weights, policy, AdamW, EMA, rank 0's buffer and streams, and
// the same metrics.
void expect_same_state(const std::filesystem::path& a, const std::filesystem::path& b);
// Runs `c` straight to c.num_steps in DIR/straight and, in DIR/resumed, to half of it and then
// resumed to the end; both must leave the same state bitwise. Returns the straight run's folder.
std::filesystem::path run_and_resume(train::TrainConfig c, const std::filesystem::path& dir);

}  // namespace dro::test
