// The resumable training state, LOGDIR/state: trained weights, the separate policy copy, AdamW,
// EMA (shared by all ranks), and per rank the replay buffer, the random streams and the data
// position; rank 0 writes and reads every file and exchanges the per-rank parts over the group.
// Saves go to a temporary folder swapped in whole; ckpt-N/unet is a diffusers UNet folder.
#pragma once

#include <filesystem>
#include <string>

#include "dro/data/expert_dataset.h"
#include "dro/train/buffer_filler.h"
#include "dro/train/learner.h"
#include "dro/train/replay_buffer.h"
#include "dro/train/train_models.h"

namespace dro::dist {
class Group;
}

namespace dro::train {

struct TrainConfig;

// The parts of a run that the state covers.
struct StateParts {
  const TrainConfig& cfg;
  dist::Group& group;
  TrainModels& models;
  Learner& learner;
  ReplayBuffer& buffer;
  const data::ExpertDataset* dataset;  // null for random data
  const data::ExpertLoader* loader;    // null for random data
};

// Every rank calls it. Refuses (Error, nothing written) when any rank's weights are not finite
// or the ranks' weights differ. `filler` is this rank's filler state at micro-step `step`.
void save_state(StateParts& parts, int64_t step, const FillerState& filler, bool checkpoint);

// What load_state restored besides the weights, optimiser, EMA and buffer.
struct RestoredState {
  int64_t step = 0;
  // The filler's streams (undefined when this rank did not exist in the saved run) and the data
  // position to continue from (rescaled when the dataset or the number of ranks changed).
  FillerState filler;
};
// Every rank calls it; rank 0 reads LOGDIR/state (or state.old after a crash between renames).
RestoredState load_state(StateParts& parts);

// The LoRA files of a checkpoint, beside each other in ckpt-N/.
inline constexpr const char* kLoraDiffusersFile = "pytorch_lora_weights.safetensors";
inline constexpr const char* kLoraKohyaFile = "lora_kohya.safetensors";

// LOGDIR/ckpt-N.
std::filesystem::path checkpoint_dir(const TrainConfig& cfg, int64_t step);

// Rank 0 only: ckpt-N/unet (full fine-tuning) or ckpt-N's two LoRA files, from the EMA where kept.
void write_checkpoint(StateParts& parts, int64_t step);

// Every rank calls it after a resume: rank 0 writes ckpt-`step` from the restored weights (EMA
// where kept) when a kill between the state swap and the checkpoint left it missing. Returns
// whether it wrote one.
bool complete_checkpoint(StateParts& parts, int64_t step);

// Removes state.tmp.* and ckpt-N/unet.tmp.* that a crashed save left in `logdir`.
void remove_stale_temporaries(const std::filesystem::path& logdir);

}  // namespace dro::train
