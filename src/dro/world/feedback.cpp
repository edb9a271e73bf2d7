#include "dro/world/feedback.h"

#include <algorithm>
#include <cmath>

#include "dro/core/error.h"
#include "dro/world/preference.h"

namespace dro::world {

namespace {
constexpr uint64_t kSessionStream = 0xfeedbac4;
}

std::vector<double> choice_probabilities(const std::vector<double>& scores, double temperature) {
  std::vector<double> p(scores.size(), 0.0);
  if (scores.empty()) return p;
  const size_t best = std::max_element(scores.begin(), scores.end()) - scores.begin();
  if (temperature <= 0.0) {
    p[best] = 1.0;
    return p;
  }
  double total = 0.0;
  for (size_t i = 0; i < scores.size(); ++i)
    total += p[i] = std::exp((scores[i] - scores[best]) / temperature);
  for (double& v : p) v /= total;
  return p;
}

int sample_choice(const std::vector<double>& probabilities, Rng& rng) {
  const double u = rng.uniform();
  double acc = 0.0;
  for (size_t i = 0; i < probabilities.size(); ++i) {
    acc += probabilities[i];
    if (u < acc) return static_cast<int>(i);
  }
  // u landed in the rounding gap above the last cumulative sum: the last non-zero choice.
  for (size_t i = probabilities.size(); i-- > 0;)
    if (probabilities[i] > 0) return static_cast<int>(i);
  return 0;
}

Session simulate_session(const Prompt& prompt, const FeedbackConfig& config, uint64_t seed,
                         uint64_t id) {
  if (config.choices < 2)
    throw UsageError(
        cat("[world] feedback: a session shows at least 2 images, got ", config.choices));
  Session s;
  s.id = id;
  s.prompt = prompt;
  Rng rng = Rng::derive(seed, {kSessionStream, id});
  for (int k = 0; k < config.choices; ++k) {
    s.nuisances.push_back(sample_nuisance(rng));
    s.images.push_back(render(prompt, s.nuisances.back(), config.image_size));
    s.scores.push_back(preference_score(s.images.back(), prompt));
  }
  s.kept = sample_choice(choice_probabilities(s.scores, config.temperature), rng);
  return s;
}

}  // namespace dro::world
