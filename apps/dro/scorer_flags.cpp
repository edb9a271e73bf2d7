#include "scorer_flags.h"

#include "dro/core/device.h"
#include "dro/core/error.h"
#include "dro/io/toml.h"

namespace dro::app {

void add_scorer_flags(CLI::App* cmd, ScorerFlags& f) {
  cmd->add_flag("--pickscore", f.pickscore, "PickScore (needs --pickscore-model)");
  cmd->add_flag("--hpsv2", f.hpsv2,
                "HPSv2 (needs --hpsv2-checkpoint and the open_clip tokenizer files)");
  cmd->add_flag("--aestheticv1", f.aestheticv1,
                "LAION aesthetic predictor v1 (needs --aesthetic-clip-model, --aestheticv1-head)");
  cmd->add_flag("--aestheticv2", f.aestheticv2,
                "LAION aesthetic predictor v2 (needs --aesthetic-clip-model, --aestheticv2-head)");
  cmd->add_flag("--clip", f.clip,
                "CLIP score: cosine of open_clip ViT-H-14 laion2B features (needs --clip-model)");
  cmd->add_flag("--imagereward", f.imagereward,
                "ImageReward (needs --imagereward-checkpoint, --bert-tokenizer)");
  cmd->add_option("--batch-size", f.batch_size, "images per model batch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--workers", f.workers, "threads decoding and preprocessing images")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--hps-version", f.hps_version,
                  "HPSv2 checkpoint version: v2.0 (JSONL key hpsv2) or v2.1 (key hpsv2.1)")
      ->check(CLI::IsMember({"v2.0", "v2.1"}))
      ->capture_default_str();
  cmd->add_option(
      "--models", f.models_file,
      "JSON or flat TOML file with the model paths below as keys (pickscore_model = \"...\"); "
      "relative paths are from the file's folder; flags win");
  cmd->add_option("--pickscore-model", f.models.pickscore_model,
                  "CLIPModel folder of PickScore (yuvalkirstain/PickScore_v1)");
  cmd->add_option(
      "--pickscore-processor", f.models.pickscore_processor,
      "folder with preprocessor_config.json + tokenizer files (the official code takes them from "
      "laion/CLIP-ViT-H-14-laion2B-s32B-b79K; default: --pickscore-model)");
  cmd->add_option("--hpsv2-checkpoint", f.models.hpsv2_checkpoint,
                  "HPS_v2_compressed.pt or HPS_v2.1_compressed.pt (xswu/HPSv2)");
  cmd->add_option("--hpsv2-config", f.models.hpsv2_config,
                  "open_clip model config JSON (default: ViT-H-14, built in)");
  cmd->add_option(
      "--open-clip-tokenizer", f.models.open_clip_tokenizer,
      "folder with vocab.json + merges.txt for open_clip's tokenizer (default: --clip-model, "
      "then --pickscore-processor/--pickscore-model: the laion repo holds them)");
  cmd->add_option("--clip-model", f.models.clip_model,
                  "open_clip folder: open_clip_config.json + open_clip_pytorch_model.bin or "
                  "open_clip_model.safetensors "
                  "(laion/CLIP-ViT-H-14-laion2B-s32B-b79K)");
  cmd->add_option("--aesthetic-clip-model", f.models.aesthetic_clip_model,
                  "CLIPModel folder of openai/clip-vit-large-patch14");
  cmd->add_option("--aestheticv1-head", f.models.aestheticv1_head,
                  "sa_0_4_vit_l_14_linear.pth (LAION-AI/aesthetic-predictor)");
  cmd->add_option(
      "--aestheticv2-head", f.models.aestheticv2_head,
      "sac+logos+ava1-l14-linearMSE.pth (christophschuhmann/improved-aesthetic-predictor)");
  cmd->add_option("--imagereward-checkpoint", f.models.imagereward_checkpoint,
                  "ImageReward.pt (THUDM/ImageReward)");
  cmd->add_option("--imagereward-med-config", f.models.imagereward_med_config,
                  "BLIP's BERT config med_config.json (THUDM/ImageReward; default: beside "
                  "--imagereward-checkpoint)");
  cmd->add_option("--imagereward-vit-config", f.models.imagereward_vit_config,
                  "JSON of BLIP ViT sizes (image_size, patch_size, embed_dim, depth, num_heads, "
                  "mlp_ratio, qkv_bias, layer_norm_eps) overriding the official ViT-L/16 at "
                  "224 px");
  cmd->add_option("--bert-tokenizer", f.models.bert_tokenizer,
                  "folder with vocab.txt + tokenizer_config.json of bert-base-uncased "
                  "(ImageReward's tokenizer)");
  cmd->add_option("--device", f.device,
                  "auto | cpu | cuda | cuda:N (under a launcher: cuda:LOCAL_RANK)")
      ->capture_default_str();
  cmd->add_option("--dtype", f.dtype, "model weights: fp32, or bf16 / fp16 on CUDA")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  cmd->add_flag(
      "--skip-bad-images", f.skip_bad,
      "warn about and count unreadable images and empty prompt folders instead of stopping");
  cmd->add_flag("--first-png-only", f.first_png,
                "score only the first .png of each prompt folder, as score.py does (by name here)");
  cmd->add_flag(
      "--keep-small-images", f.keep_small,
      "score images under 10 px as they are (score.py replaces them by a black 512x512 image)");
}

std::vector<eval::ScorerRequest> scorer_requests(const ScorerFlags& f, const std::string& who) {
  std::vector<eval::ScorerRequest> requests;
  if (f.pickscore) requests.push_back({eval::ScorerKind::kPickScore});
  if (f.hpsv2) requests.push_back({eval::ScorerKind::kHpsv2});
  if (f.aestheticv1 || f.aestheticv2) requests.push_back({eval::ScorerKind::kAesthetic, f.aestheticv1, f.aestheticv2});
  if (f.clip) requests.push_back({eval::ScorerKind::kClip});
  if (f.imagereward) requests.push_back({eval::ScorerKind::kImageReward});
  if (requests.empty())
    throw UsageError(cat("[", who,
                         "] choose at least one of --pickscore, --hpsv2, --aestheticv1, "
                         "--aestheticv2, --clip, --imagereward"));
  return requests;
}

eval::ScorerModels scorer_models(const ScorerFlags& f) {
  eval::ScorerModels models = f.models;
  if (!f.models_file.empty()) {
    const std::filesystem::path file = f.models_file;
    const bool toml = file.extension() == ".toml";
    const io::OrderedJson j = toml ? io::read_flat_toml(file, "models") : io::read_json(file);
    models.fill_from(eval::ScorerModels::from_json(j, file.parent_path(), file.string()));
  }
  return models;
}

eval::ScorerOptions scorer_options(const ScorerFlags& f, const dist::Env& env) {
  eval::ScorerOptions options;
  std::string device = f.device;
  if (env.distributed() && (device == "auto" || device == "cuda") && torch::cuda::is_available())
    device = "cuda:" + std::to_string(env.local_rank);
  options.device = resolve_device(device);
  options.dtype = dtype_named(f.dtype);
  options.hps_version = f.hps_version;
  return options;
}

void apply_scorer_flags(const ScorerFlags& f, eval::ScoreRunOptions& run) {
  run.batch_size = f.batch_size;
  run.workers = f.workers;
  run.list.first_png_only = f.first_png;
  run.list.skip_bad_images = f.skip_bad;
  run.replace_small_images = !f.keep_small;
}

eval::ScoreRunResult run_scorers(const ScorerFlags& f, const std::vector<eval::ScorerRequest>& requests,
                                 eval::ScoreRunOptions& run, bool* is_main) {
  apply_scorer_flags(f, run);
  const dist::Env env = dist::Env::from_environment();
  const eval::ScorerOptions options = scorer_options(f, env);
  dist::GroupOptions gopts;
  gopts.device = options.device;
  auto group = dist::init_process_group(env, gopts);
  auto result = eval::run_scores(requests, scorer_models(f), options, run, *group);
  *is_main = group->is_main();
  return result;
}

}  // namespace dro::app
