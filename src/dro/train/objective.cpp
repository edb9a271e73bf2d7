#include "dro/train/objective.h"

#include "dro/core/error.h"
#include "dro/train/objectives/dpo.h"
#include "dro/train/objectives/dro.h"
#include "dro/train/objectives/kto.h"
#include "dro/train/objectives/sft.h"
#include "dro/train/train_config.h"

namespace dro::train {

const std::vector<std::string>& objective_names() {
  static const std::vector<std::string> names = {"dro", "sft", "dpo", "kto"};
  return names;
}

std::unique_ptr<Objective> make_objective(const TrainConfig& cfg) {
  const std::string& name = cfg.objective;
  if (name == "dro") return std::make_unique<DroObjective>(cfg.margin);
  if (name == "sft") return std::make_unique<SftObjective>();
  if (name == "dpo") return std::make_unique<DpoObjective>(cfg.beta_dpo);
  if (name == "kto") return std::make_unique<KtoObjective>(cfg.beta_kto, cfg.lambda_desirable, cfg.lambda_undesirable);
  std::string known;
  for (const auto& n : objective_names()) known += cat(known.empty() ? "" : ", ", n);
  throw UsageError(cat("[train] unknown --objective '", name, "' (", known, ")"));
}

}  // namespace dro::train
