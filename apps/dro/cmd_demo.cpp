// `dro demo`: Diffusion-DRO and the baselines end to end on the built-in preference world (see world/demo.h).
#include "commands.h"
#include "dro/core/error.h"
#include "dro/world/demo.h"

namespace dro::app {
namespace fs = std::filesystem;

Action register_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "demo", "Diffusion-DRO and the paper's baselines end to end on the built-in preference world: build the "
              "world, fine-tune the shipped base model with SFT and DRO on its expert images, DPO on its "
              "kept-vs-not-kept pairs and KTO on its keep/skip labels (same steps and batch), compare the five "
              "models on held-out prompts (hidden preference, fidelity, diversity, DRO's win rates) and write a report");
  auto o = std::make_shared<world::DemoOptions>();
  auto model = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>("demo-report");
  cmd->add_option("--out", *out, "report folder")->capture_default_str();
  cmd->add_option("--seed", o->seed, "world seed (held-out prompts, expert images) and training seed")->capture_default_str();
  cmd->add_flag("--quick", o->quick, "a short smoke run (under 2 minutes on 2 cores); too short to measure");
  cmd->add_option("--model", *model, "base model folder (default: the shipped assets/world-base)");
  cmd->add_option("--models", o->models, "models fine-tuned beside the base, comma-separated (default: sft,dpo,kto,dro)")
      ->delimiter(',');
  cmd->add_option("--steps", o->train_steps, "optimizer updates of every fine-tuned model (default: preset)");
  cmd->add_option("--learning-rate", o->learning_rate, "DRO learning rate (default: preset)");
  cmd->add_option("--sft-learning-rate", o->sft_learning_rate, "SFT learning rate (default: preset)");
  cmd->add_option("--dpo-learning-rate", o->dpo_learning_rate, "DPO learning rate (default: preset)");
  cmd->add_option("--kto-learning-rate", o->kto_learning_rate, "KTO learning rate (default: preset)");
  cmd->add_option("--beta-dpo", o->beta_dpo, "DPO beta (default: preset)");
  cmd->add_option("--beta-kto", o->beta_kto, "KTO beta (default: preset)");
  cmd->add_option("--expert-ranking", o->expert_ranking,
                  "how the expert set is chosen among kept images: reward (top-N by a noisy reward model, as the "
                  "paper's top-500) or keep-only (kept images at random: implicit feedback alone)")
      ->check(CLI::IsMember({"reward", "keep-only"}))
      ->capture_default_str();
  cmd->add_option("--ablation", o->ablation,
                  "also train SFT and DRO on expert sets of these sizes K, comma-separated (the paper's Figure 3; "
                  "a K equal to the expert set's size reuses the main run's SFT and DRO; about 4 minutes per other K "
                  "on 2 cores): table and ablation.png")
      ->delimiter(',');
  cmd->add_option("--margin", o->margin, "DRO hinge margin (default: preset)");
  cmd->add_option("--guidance", o->guidance, "evaluation guidance scale (default: preset)");
  cmd->add_option("--eval-prompts", o->eval_prompts, "held-out prompts to evaluate (default: preset)");
  cmd->add_option("--eval-seeds", o->eval_seeds, "seeds per prompt (default: preset)");
  cmd->add_option("--eval-steps", o->eval_steps, "DDIM steps for evaluation (default: preset)");
  cmd->add_flag("--quiet", o->quiet, "no progress bars");
  return [o, model, out]() {
    o->out = *out;
    o->model = model->empty() ? world::find_default_base_model(executable_path()) : fs::path(*model);
    if (o->model.empty())
      throw UsageError("[demo] the shipped base model (assets/world-base) was not found next to the program "
                       "or in its source tree; pass --model DIR");
    world::run_demo(*o);
    return 0;
  };
}

}  // namespace dro::app
