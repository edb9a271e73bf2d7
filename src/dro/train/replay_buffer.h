// The replay buffer of Diffusion-DRO: a FIFO of policy trajectories, each stored with its prompt
// embedding `c` (after prompt dropout), the expert latent `x0` and, per sampler step k, the
// timestep t[k], the latent the UNet saw x_t[k] and its noise prediction eps[k]
// (SDXL adds pooled embeddings and time ids). Sampling draws rows and one step per row, as the
// official buffer does (randperm of rows when the batch fits, else rows with replacement).
#pragma once

#include <deque>
#include <map>
#include <filesystem>
#include <string>

#include <torch/torch.h>

#include "dro/io/safetensors.h"

namespace dro::train {

// A batch of B trajectories of T steps, batch-first.
struct TrajectoryBatch {
  torch::Tensor c;             // [B, S, D]
  torch::Tensor x0;            // [B, C, H, W]
  torch::Tensor t;             // [B, T] int64
  torch::Tensor xt;            // [B, T, C, H, W]
  torch::Tensor eps;           // [B, T, C, H, W]
  torch::Tensor c_pooled;      // [B, P] (SDXL) or undefined
  torch::Tensor add_time_ids;  // [B, 6] (SDXL) or undefined
};

// One learning batch drawn from the buffer.
struct BufferSample {
  torch::Tensor t;             // [b] int64
  torch::Tensor c;             // [b, S, D]
  torch::Tensor x0;            // [b, C, H, W]
  torch::Tensor xt;            // [b, C, H, W]
  torch::Tensor eps;           // [b, C, H, W]
  torch::Tensor c_pooled;      // [b, P] or undefined
  torch::Tensor add_time_ids;  // [b, 6] or undefined
  torch::Tensor rows, steps;   // [b] the indices drawn (for logs and tests)
  // Expert batches of the preference baselines (never from the buffer): the pairs' rejected
  // latents [b, C, H, W] (DPO) and the images' labels [b], +1 desirable / -1 undesirable (KTO).
  torch::Tensor x0_rejected, labels;
};

class ReplayBuffer {
 public:
  // `capacity` trajectories; rows are stored on `device` in `dtype` (floating tensors only).
  explicit ReplayBuffer(int64_t capacity, torch::Device device = torch::kCPU,
                        torch::Dtype dtype = torch::kFloat32);

  // Appends the batch's trajectories, then drops the oldest beyond capacity.
  void commit(const TrajectoryBatch& batch);
  int64_t size() const { return static_cast<int64_t>(rows_.size()); }
  int64_t capacity() const { return capacity_; }
  void clear() { rows_.clear(); }

  // Draws `batch` rows and one step per row with `gen`, moved to `device`.
  BufferSample sample(int64_t batch, at::Generator& gen, torch::Device device) const;
  // The rows/steps given explicitly (golden tests replay fixed indices).
  BufferSample gather(const torch::Tensor& rows, const torch::Tensor& steps, torch::Device device) const;

  // Whole buffer as named tensors (rows stacked in FIFO order; none when empty) and back.
  io::NamedTensors to_tensors() const;
  void from_tensors(const std::map<std::string, torch::Tensor>& tensors, const std::string& where);
  // Whole buffer as safetensors (rows stacked in FIFO order) + capacity in the metadata; atomic.
  void save(const std::filesystem::path& path) const;
  // Replaces the content with a saved buffer; IoError naming the file when it does not fit.
  void load(const std::filesystem::path& path);

 private:
  struct Row {
    torch::Tensor c, x0, t, xt, eps, c_pooled, add_time_ids;
  };
  int64_t capacity_;
  torch::Device device_;
  torch::Dtype dtype_;
  std::deque<Row> rows_;
};

}  // namespace dro::train
