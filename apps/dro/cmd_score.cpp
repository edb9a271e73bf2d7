// dro score: the official score.py (PickScore, HPSv2, Aesthetic v1/v2, CLIP score) on test sets in
// the official layout, every image, from local model files.
#include <iostream>

#include "commands.h"
#include "dro/core/device.h"
#include "dro/core/error.h"
#include "dro/dist/process_group.h"
#include "dro/eval/score_run.h"
#include "dro/io/toml.h"

namespace dro::app {

Action register_score(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "score",
      "Score generated images with the paper's preference scorers (PickScore, HPSv2, Aesthetic "
      "v1/v2, CLIP score), as the official score.py does, from local model files. Reads "
      "DIR/<prompt>/<image>.png + caption.txt (the layout dro sample writes), scores every image "
      "and writes one JSON object per image to --out, with a mean/std summary beside it.");
  struct Opts {
    bool pickscore = false, hpsv2 = false, aestheticv1 = false, aestheticv2 = false, clip = false;
    bool imagereward = false;
    std::vector<std::string> dirs;
    int batch_size = 32;
    int workers = 2;
    std::string hps_version = "v2.0";
    std::string out;
    std::string models_file;
    eval::ScorerModels models;
    std::string device = "auto";
    std::string dtype = "fp32";
    bool skip_bad = false, first_png = false, keep_small = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_flag("--pickscore", o->pickscore, "PickScore (needs --pickscore-model)");
  cmd->add_flag("--hpsv2", o->hpsv2,
                "HPSv2 (needs --hpsv2-checkpoint and the open_clip tokenizer files)");
  cmd->add_flag("--aestheticv1", o->aestheticv1,
                "LAION aesthetic predictor v1 (needs --aesthetic-clip-model, --aestheticv1-head)");
  cmd->add_flag("--aestheticv2", o->aestheticv2,
                "LAION aesthetic predictor v2 (needs --aesthetic-clip-model, --aestheticv2-head)");
  cmd->add_flag("--clip", o->clip,
                "CLIP score: cosine of open_clip ViT-H-14 laion2B features (needs --clip-model)");
  cmd->add_flag("--imagereward", o->imagereward,
                "ImageReward (not in this version: refused with a message)");
  cmd->add_option("--dir", o->dirs, "test-set folder DIR/<prompt>/{caption.txt, *.png}; repeatable")
      ->required();
  cmd->add_option("--batch-size", o->batch_size, "images per model batch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--workers", o->workers, "threads decoding and preprocessing images")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--hps-version", o->hps_version,
                  "HPSv2 checkpoint version: v2.0 (JSONL key hpsv2) or v2.1 (key hpsv2.1)")
      ->check(CLI::IsMember({"v2.0", "v2.1"}))
      ->capture_default_str();
  cmd->add_option("--out", o->out,
                  "JSONL of per-image scores (default: DIR/scores.jsonl for one --dir); "
                  "rows already scored with the same weights are kept");
  cmd->add_option(
      "--models", o->models_file,
      "JSON or flat TOML file with the model paths below as keys (pickscore_model = \"...\"); "
      "relative paths are from the file's folder; flags win");
  cmd->add_option("--pickscore-model", o->models.pickscore_model,
                  "CLIPModel folder of PickScore (yuvalkirstain/PickScore_v1)");
  cmd->add_option(
      "--pickscore-processor", o->models.pickscore_processor,
      "folder with preprocessor_config.json + tokenizer files (the official code takes them from "
      "laion/CLIP-ViT-H-14-laion2B-s32B-b79K; default: --pickscore-model)");
  cmd->add_option("--hpsv2-checkpoint", o->models.hpsv2_checkpoint,
                  "HPS_v2_compressed.pt or HPS_v2.1_compressed.pt (xswu/HPSv2)");
  cmd->add_option("--hpsv2-config", o->models.hpsv2_config,
                  "open_clip model config JSON (default: ViT-H-14, built in)");
  cmd->add_option(
      "--open-clip-tokenizer", o->models.open_clip_tokenizer,
      "folder with vocab.json + merges.txt for open_clip's tokenizer (default: --clip-model, "
      "then --pickscore-processor/--pickscore-model: the laion repo holds them)");
  cmd->add_option("--clip-model", o->models.clip_model,
                  "open_clip folder: open_clip_config.json + open_clip_pytorch_model.bin or "
                  "open_clip_model.safetensors "
                  "(laion/CLIP-ViT-H-14-laion2B-s32B-b79K)");
  cmd->add_option("--aesthetic-clip-model", o->models.aesthetic_clip_model,
                  "CLIPModel folder of openai/clip-vit-large-patch14");
  cmd->add_option("--aestheticv1-head", o->models.aestheticv1_head,
                  "sa_0_4_vit_l_14_linear.pth (LAION-AI/aesthetic-predictor)");
  cmd->add_option(
      "--aestheticv2-head", o->models.aestheticv2_head,
      "sac+logos+ava1-l14-linearMSE.pth (christophschuhmann/improved-aesthetic-predictor)");
  cmd->add_option("--device", o->device,
                  "auto | cpu | cuda | cuda:N (under a launcher: cuda:LOCAL_RANK)")
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "model weights: fp32, or bf16 / fp16 on CUDA")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  cmd->add_flag(
      "--skip-bad-images", o->skip_bad,
      "warn about and count unreadable images and empty prompt folders instead of stopping");
  cmd->add_flag("--first-png-only", o->first_png,
                "score only the first .png of each prompt folder, as score.py does (by name here)");
  cmd->add_flag(
      "--keep-small-images", o->keep_small,
      "score images under 10 px as they are (score.py replaces them by a black 512x512 image)");
  cmd->add_flag("--quiet", o->quiet, "no progress display");

  return [o]() {
    if (o->imagereward)
      throw UsageError("[score] --imagereward is not available in this version of dro yet");
    std::vector<eval::ScorerRequest> requests;
    if (o->pickscore) requests.push_back({eval::ScorerKind::kPickScore});
    if (o->hpsv2) requests.push_back({eval::ScorerKind::kHpsv2});
    if (o->aestheticv1 || o->aestheticv2)
      requests.push_back({eval::ScorerKind::kAesthetic, o->aestheticv1, o->aestheticv2});
    if (o->clip) requests.push_back({eval::ScorerKind::kClip});
    if (requests.empty())
      throw UsageError(
          "[score] choose at least one of --pickscore, --hpsv2, --aestheticv1, --aestheticv2, "
          "--clip");

    eval::ScorerModels models = o->models;
    if (!o->models_file.empty()) {
      const std::filesystem::path f = o->models_file;
      const bool toml = f.extension() == ".toml";
      const io::OrderedJson j = toml ? io::read_flat_toml(f, "models") : io::read_json(f);
      models.fill_from(eval::ScorerModels::from_json(j, f.parent_path(), f.string()));
    }
    eval::ScoreRunOptions run;
    run.dirs = o->dirs;
    if (!o->out.empty())
      run.out = o->out;
    else if (o->dirs.size() == 1)
      run.out = std::filesystem::path(o->dirs[0]) / "scores.jsonl";
    else
      throw UsageError("[score] --out is required with several --dir");
    run.batch_size = o->batch_size;
    run.workers = o->workers;
    run.list.first_png_only = o->first_png;
    run.list.skip_bad_images = o->skip_bad;
    run.replace_small_images = !o->keep_small;
    run.quiet = o->quiet;

    const dist::Env env = dist::Env::from_environment();
    eval::ScorerOptions options;
    std::string device = o->device;
    if (env.distributed() && (device == "auto" || device == "cuda") && torch::cuda::is_available())
      device = "cuda:" + std::to_string(env.local_rank);
    options.device = resolve_device(device);
    options.dtype = o->dtype == "bf16"   ? torch::kBFloat16
                    : o->dtype == "fp16" ? torch::kFloat16
                                         : torch::kFloat32;
    options.hps_version = o->hps_version;
    dist::GroupOptions gopts;
    gopts.device = options.device;
    auto group = dist::init_process_group(env, gopts);

    const auto result = eval::run_scores(requests, models, options, run, *group);
    if (group->is_main()) {
      std::cout << eval::format_summary(result);
      std::cout << "scored " << result.scored << " value(s), kept " << result.reused
                << " from earlier runs"
                << (result.bad_images ? cat(", skipped ", result.bad_images, " bad image(s)") : "")
                << "\nwrote " << run.out.string() << ", " << result.summary_md.string() << ", "
                << result.summary_json.string() << "\n";
    }
    return 0;
  };
}

}  // namespace dro::app
