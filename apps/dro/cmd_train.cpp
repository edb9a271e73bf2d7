#include <iostream>

#include "commands.h"
#include "dro/dist/process_group.h"
#include "dro/train/trainer.h"
#include "train_options.h"

namespace dro::app {

Action register_train(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train", "Fine-tune a Stable Diffusion 1.5 / SDXL UNet with Diffusion-DRO on a folder of expert "
               "images (the official train.py, with the same options in --kebab-case). Writes "
               "LOGDIR/ckpt-N/unet (diffusers layout, EMA weights), LOGDIR/state (exact resume), "
               "TensorBoard events and metrics.jsonl.");
  auto flags = std::make_shared<TrainFlags>();
  add_train_flags(cmd, *flags);
  return [cmd, flags]() {
    auto cfg = resolve_train_config(cmd, *flags);
    train::Trainer trainer(cfg);
    trainer.run();
    if (trainer.group().is_main())
      std::cerr << "[train] done: " << trainer.step() << " micro-steps; checkpoints in " << cfg.logdir << "\n";
    return 0;
  };
}

}  // namespace dro::app
