// Simulated implicit feedback, as in Pick-a-Pic: a user is shown K images for a prompt (uniform
// base renders) and keeps one. Choice noise follows the Bradley-Terry / Luce model: the user keeps
// image i with probability softmax(score / temperature)_i, where score is the hidden preference.
// A session yields the kept image, K - 1 (kept, not kept) pairs and K keep / skip labels.
#pragma once

#include <cstdint>
#include <vector>

#include "dro/io/image.h"
#include "dro/world/prompt.h"
#include "dro/world/random.h"
#include "dro/world/renderer.h"

namespace dro::world {

struct FeedbackConfig {
  int choices = 4;           // K images shown per session
  double temperature = 1.0;  // in hidden-score units; <= 0 keeps the best image every time
  int image_size = 32;
};

struct Session {
  uint64_t id = 0;
  Prompt prompt;
  std::vector<io::Image> images;    // the K images shown
  std::vector<Nuisance> nuisances;  // how each was drawn (for analysis, not for training)
  std::vector<double> scores;       // hidden scores (for analysis, not for training)
  int kept = -1;                    // index of the kept image
};

// softmax(scores / temperature); a one-hot on the first maximum when temperature <= 0.
std::vector<double> choice_probabilities(const std::vector<double>& scores, double temperature);

// Index drawn from `probabilities` (which sum to 1) with one uniform draw.
int sample_choice(const std::vector<double>& probabilities, Rng& rng);

// One session; images and choice come from Rng::derive(seed, {stream tag, id}), so a session is
// reproducible on its own. UsageError for choices < 2.
Session simulate_session(const Prompt& prompt, const FeedbackConfig& config, uint64_t seed,
                         uint64_t id);

}  // namespace dro::world
