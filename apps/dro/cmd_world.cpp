// `dro world`: the synthetic preference world. build writes a world folder, pretrain trains the
// base model on it, eval scores generated images with the hidden preference, fidelity and
// diversity.
#include <iomanip>
#include <iostream>

#include "commands.h"
#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/world/base_model.h"
#include "dro/world/dataset_writer.h"
#include "dro/world/evaluation.h"

namespace dro::app {
namespace fs = std::filesystem;

namespace {

struct WorldOpts {
  // build
  std::string out;
  world::WorldConfig world;
  // pretrain
  world::PretrainOptions pretrain;
  std::string pretrain_world, pretrain_out, pretrain_logdir;
  uint64_t model_seed = 0;
  // eval
  std::string images, json_out;
};

void print_stats(const char* name, const world::ScoreStats& s) {
  std::cerr << "  " << std::left << std::setw(10) << name << std::right << std::setw(7) << s.count
            << std::fixed << std::setprecision(2) << std::setw(11) << s.mean << std::setw(10) << s.fidelity
            << std::setw(8) << s.size << std::setw(8) << s.saturation << std::setw(8) << s.centring
            << std::setw(8) << s.outline << "\n";
}

}  // namespace

Action register_world(CLI::App& app) {
  auto* cmd = app.add_subcommand("world", "The synthetic preference world of the built-in demo: "
                                          "build it, pretrain its base model, score images");
  cmd->require_subcommand(1);
  auto o = std::make_shared<WorldOpts>();

  auto* build = cmd->add_subcommand(
      "build", "Write a world folder: base/ (pretraining renders), feedback/ (simulated users' keep / "
               "skip choices), expert/ (top-N kept images, official layout), heldout/, prompts/, world.json");
  build->add_option("--out", o->out, "output folder")->required();
  build->add_option("--seed", o->world.seed, "world seed (prompt split, renders, users)")->capture_default_str();
  build->add_option("--image-size", o->world.image_size, "image side in pixels")->capture_default_str();
  build->add_option("--heldout-prompts", o->world.heldout_prompts, "held-out prompt combinations (of 480)")->capture_default_str();
  build->add_option("--base-images-per-prompt", o->world.base_images_per_prompt, "uniform renders per train prompt in base/")->capture_default_str();
  build->add_option("--feedback-rounds", o->world.feedback_rounds, "user sessions per train prompt")->capture_default_str();
  build->add_option("--choices", o->world.feedback.choices, "images shown per session")->capture_default_str();
  build->add_option("--temperature", o->world.feedback.temperature, "users' choice temperature (hidden-score units)")->capture_default_str();
  build->add_option("--top-n", o->world.top_n, "expert images kept (the paper's top-500)")->capture_default_str();
  build->add_option("--ranking-noise", o->world.ranking_noise, "reward model error std when ranking kept images")->capture_default_str();
  build->add_option("--expert-ranking", o->world.expert_ranking,
                    "reward: the top-N kept images by a noisy reward model (the paper's top-500); keep-only: "
                    "N kept images at random, implicit feedback alone")
      ->check(CLI::IsMember({"reward", "keep-only"}))
      ->capture_default_str();
  build->add_flag("--overwrite", o->world.overwrite, "replace an existing non-empty --out");

  auto* pre = cmd->add_subcommand(
      "pretrain", "Create the base model (pixel-space SD1.5 layout: tokenizer, frozen text encoder, "
                  "small UNet) and train its UNet on WORLD/base with the sft objective");
  auto& p = o->pretrain;
  pre->add_option("--world", o->pretrain_world, "world folder (dro world build)")->required();
  pre->add_option("--out", o->pretrain_out, "model folder to write")->required();
  pre->add_option("--logdir", o->pretrain_logdir, "training run folder (default OUT.run)");
  pre->add_option("--seed", o->model_seed, "initialisation and training seed")->capture_default_str();
  pre->add_option("--steps", p.steps, "optimisation steps")->capture_default_str();
  pre->add_option("--batch-size", p.batch_size, "images per step")->capture_default_str();
  pre->add_option("--learning-rate", p.learning_rate, "AdamW learning rate")->capture_default_str();
  pre->add_option("--lr-scheduler", p.lr_scheduler, "learning-rate schedule")->capture_default_str();
  pre->add_option("--lr-warmup-steps", p.warmup_steps, "warm-up steps")->capture_default_str();
  pre->add_option("--ema-decay", p.ema_decay, "EMA decay of the written weights")->capture_default_str();
  pre->add_option("--random-drop-prompt-probability", p.prompt_dropout,
                  "prompt dropout (for classifier-free guidance)")->capture_default_str();
  pre->add_option("--checkpointing-steps", p.checkpointing_steps, "steps between checkpoints")->capture_default_str();
  pre->add_option("--channels", p.model.block_out_channels, "UNet block_out_channels")->capture_default_str();
  pre->add_option("--layers-per-block", p.model.layers_per_block, "UNet layers per block")->capture_default_str();
  pre->add_option("--text-hidden", p.model.text_hidden, "text encoder width (= UNet cross_attention_dim)")->capture_default_str();
  pre->add_option("--dataloader-num-workers", p.dataloader_workers, "image decoding threads")->capture_default_str();
  pre->add_flag("--resume", p.resume, "continue the run in --logdir");
  pre->add_flag("--quiet", p.quiet, "no progress display");

  auto* ev = cmd->add_subcommand(
      "eval", "Score generated images (DIR/<idx>/<seed>.png + caption.txt, the layout dro sample "
              "writes): mean hidden preference, fidelity and diversity, 95% intervals over prompts");
  ev->add_option("--images", o->images, "image folder")->required();
  ev->add_option("--json", o->json_out, "also write the summary as JSON to this file");

  return [o, build, pre, ev]() {
    if (build->parsed()) {
      std::cerr << "[world] writing the world (seed " << o->world.seed << ") to " << o->out << "\n";
      const auto s = world::write_world(o->out, o->world);
      std::cerr << "[world] " << s.train_prompts << " train prompts, " << s.heldout_prompts
                << " held-out prompts\n  set          count  preference  fidelity    size     sat  centre outline\n";
      print_stats("base", s.base);
      print_stats("shown", s.shown);
      print_stats("kept", s.kept);
      print_stats("not kept", s.not_kept);
      print_stats("expert", s.expert);
      print_stats("heldout", s.heldout);
      return 0;
    }
    if (pre->parsed()) {
      o->pretrain.world = o->pretrain_world;
      o->pretrain.out = o->pretrain_out;
      o->pretrain.logdir = o->pretrain_logdir;
      o->pretrain.model.seed = o->model_seed;
      world::pretrain_base_model(o->pretrain);
      return 0;
    }
    if (ev->parsed()) {
      const auto scores = world::score_prompts(world::read_image_folder(o->images));
      const auto m = world::summarise(scores);
      std::cout << std::fixed << std::setprecision(3) << o->images << ": " << m.prompts << " prompts, "
                << m.images << " images\n";
      auto line = [](const char* name, const world::Interval& i) {
        std::cout << "  " << std::left << std::setw(18) << name << std::right << std::setw(8) << i.mean
                  << "  [" << i.ci_low << ", " << i.ci_high << "]\n";
      };
      line("preference", m.preference);
      line("fidelity", m.fidelity);
      line("pixel diversity", m.diversity);
      line("feature diversity", m.feature_diversity);
      std::cout << "  attributes shown  ";
      for (size_t k = 0; k < m.attribute_rate.size(); ++k)
        std::cout << " " << world::kAttributeNames[k] << " " << m.attribute_rate[k];
      std::cout << "\n  quality terms     ";
      for (size_t k = 0; k < m.quality_terms.size(); ++k)
        std::cout << " " << world::kQualityTermNames[k] << " " << m.quality_terms[k];
      std::cout << "\n";
      if (!o->json_out.empty()) io::write_json(o->json_out, m.to_json());
      return 0;
    }
    return 0;
  };
}

}  // namespace dro::app
