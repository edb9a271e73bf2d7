#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <string>

#include "commands.h"
#include "dro/core/error.h"
#include "dro/core/device.h"
#include "dro/core/progress.h"
#include "dro/dist/process_group.h"
#include "dro/io/atomic_file.h"
#include "dro/io/image.h"
#include "dro/io/safetensors.h"
#include "dro/pipeline/stable_diffusion.h"
#include "dro/sched/scheduler.h"

namespace dro::app {
namespace fs = std::filesystem;

namespace {

struct SampleOpts {
  std::string model, unet, unet_variant, unet_subfolder, vae, variant, prompt, prompts_file, prompts_dir,
      negative_prompt, out, mixed_precision;
  std::vector<std::string> loras;
  int64_t num_workers = 0;
  bool sdxl = false;
  std::string init_latents, save_latents, device = "auto", dtype = "fp32";
  std::string scheduler = "ddpm";
  int64_t steps = 50, height = 0, width = 0, images_per_prompt = 1, batch_size = 4;
  double guidance = 7.5, eta = 0.0;
  uint64_t seed = 0;
  bool overwrite = false, quiet = false;
};

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  const auto e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<std::string> read_prompts(const SampleOpts& o) {
  std::vector<std::string> prompts;
  if (!o.prompt.empty()) prompts.push_back(o.prompt);
  if (!o.prompts_file.empty()) {
    std::ifstream in(o.prompts_file);
    if (!in) throw IoError(cat("[sample] cannot read --prompts file ", o.prompts_file));
    std::string line;
    while (std::getline(in, line))
      if (!trim(line).empty()) prompts.push_back(trim(line));
  }
  if (!o.prompts_dir.empty()) {
    // Official test-set layout: DIR/<id>/caption.txt, in sorted order.
    if (!fs::is_directory(o.prompts_dir))
      throw IoError(cat("[sample] --prompts-dir ", o.prompts_dir, " is not a folder"));
    std::vector<fs::path> caps;
    for (const auto& e : fs::directory_iterator(o.prompts_dir))
      if (fs::exists(e.path() / "caption.txt")) caps.push_back(e.path() / "caption.txt");
    std::sort(caps.begin(), caps.end());
    for (const auto& c : caps) prompts.push_back(trim(io::read_file(c)));
  }
  if (prompts.empty()) throw UsageError("[sample] no prompts: give --prompt, --prompts or --prompts-dir");
  return prompts;
}

}  // namespace

Action register_sample(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "sample", "Generate images from prompts with a Stable Diffusion 1.5 / SDXL model folder "
                "(diffusers layout). Output: OUT/<prompt index>/<seed>.png + caption.txt, the "
                "official layout; images already present are kept (the run resumes). The official "
                "inference.py option names (--pretrained_model_name_or_path, --test_dataset, "
                "--num_inference_steps, ...) are accepted too. Under a launcher's environment (RANK, "
                "WORLD_SIZE, LOCAL_RANK: dro launch, torchrun, srun) each process generates its share "
                "of the prompts (prompt n on rank n mod WORLD_SIZE, on cuda:LOCAL_RANK); seeds do not "
                "depend on the sharding.");
  auto o = std::make_shared<SampleOpts>();
  cmd->add_option("--model,--pretrained_model_name_or_path", o->model,
                  "diffusers model folder (model_index.json, unet/, vae/ ...)")->required();
  cmd->add_option("--unet", o->unet, "UNet folder replacing the model's, e.g. LOGDIR/ckpt-N/unet");
  cmd->add_option("--lora", o->loras,
                  "LoRA file merged into the UNet, FILE or FILE:SCALE (scale 1 by default); repeatable. Reads "
                  "the diffusers / peft layout (pytorch_lora_weights.safetensors) and the webui / kohya layout "
                  "(lora_unet_* keys with alpha)");
  cmd->add_option("--unet-variant,--unet_variant", o->unet_variant, "weights variant of the --unet folder");
  cmd->add_option("--unet-subfolder,--unet_subfolder", o->unet_subfolder,
                  "sub-folder of --unet holding the UNet (e.g. unet when --unet is a whole model)");
  cmd->add_option("--vae", o->vae,
                  "VAE folder replacing the model's (the official SDXL inference uses madebyollin/sdxl-vae-fp16-fix)");
  cmd->add_option("--variant", o->variant, "weights variant of the model, e.g. fp16");
  auto* sdxl_flag = cmd->add_flag("--sdxl,!--no-sdxl", o->sdxl,
                "official flag: the model is SDXL. dro reads it from the model folder; given, it is checked");
  auto* p1 = cmd->add_option("--prompt", o->prompt, "one prompt");
  auto* p2 = cmd->add_option("--prompts", o->prompts_file, "text file with one prompt per line");
  auto* p3 = cmd->add_option("--prompts-dir,--test_dataset", o->prompts_dir,
                             "official test-set layout: DIR/<id>/caption.txt (sorted by folder name)");
  p1->excludes(p2)->excludes(p3);
  p2->excludes(p3);
  cmd->add_option("--negative-prompt", o->negative_prompt,
                  "negative prompt for every image (default none: SD1.5 uses \"\", SDXL zeros)");
  cmd->add_option("--scheduler", o->scheduler,
                  "sampler: ddpm | ddim | dpmsolver++ | euler (any case; the official SDXL choice means euler)")
      ->transform([](std::string v) {
        std::transform(v.begin(), v.end(), v.begin(), ::tolower);
        return v == "sdxl" ? std::string("euler") : v;
      })
      ->check(CLI::IsMember({"ddpm", "ddim", "dpmsolver++", "euler"}))
      ->capture_default_str();
  cmd->add_option("--steps,--num_inference_steps", o->steps, "number of inference steps")
      ->check(CLI::Range(1, 1000))->capture_default_str();
  cmd->add_option("--guidance,--guidance_scale", o->guidance, "classifier-free guidance scale (<= 1 disables it)")
      ->capture_default_str();
  cmd->add_option("--eta", o->eta, "DDIM eta (0 = deterministic)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "base seed: image i of prompt n uses seed + n + i * num_prompts")->capture_default_str();
  cmd->add_option("--height", o->height, "image height (default: UNet sample_size x VAE scale)");
  cmd->add_option("--width", o->width, "image width (default: UNet sample_size x VAE scale)");
  cmd->add_option("--images-per-prompt,--num_images_per_prompt", o->images_per_prompt, "images per prompt")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--batch-size,--batch_size", o->batch_size, "images per UNet batch")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--init-latents", o->init_latents,
                  "safetensors with key 'latents' [N, C, h, w]: the initial unit-variance noise of the N "
                  "images in output order (prompt-major, then image index)");
  cmd->add_option("--save-latents", o->save_latents,
                  "write the final latents (before VAE decode) to this safetensors file, key 'latents'");
  cmd->add_option("--device", o->device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  auto* dtype = cmd->add_option("--dtype", o->dtype, "model weights: fp32 | bf16 | fp16 (fp16 on CUDA only)")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}))->capture_default_str();
  cmd->add_option("--mixed_precision,--mixed-precision", o->mixed_precision,
                  "the official name of --dtype: no (fp32) | fp16 | bf16 (the official default is bf16)")
      ->check(CLI::IsMember({"no", "fp16", "bf16"}))
      ->excludes(dtype);
  cmd->add_option("--num_workers,--num-workers", o->num_workers,
                  "official option, accepted for its command lines: prompts are read up front here, so it "
                  "has no effect");
  cmd->add_option("--out,--output", o->out, "output folder")->required();
  cmd->add_flag("--overwrite", o->overwrite, "regenerate images that already exist");
  cmd->add_flag("--quiet", o->quiet, "no progress display");
  return [o, sdxl_flag]() {
    if (!o->mixed_precision.empty())
      o->dtype = o->mixed_precision == "no" ? "fp32" : o->mixed_precision;
    if (o->num_workers != 0)
      std::cerr << "[sample] note: --num_workers has no effect (prompts are read up front)\n";
    // Data-parallel generation: this process's share of the prompts, on its own GPU.
    const auto env = dist::Env::from_environment();
    const int rank = env.rank, world = env.world_size;
    torch::Device device = resolve_device(o->device);
    if (env.distributed() && device.is_cuda() && !device.has_index())
      device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
    if (rank != 0) o->quiet = true;
    if (world > 1 && !o->save_latents.empty())
      throw UsageError("[sample] --save-latents writes one file for all images: run it as a single process");
    // LibTorch's CPU kernels lack float16 for some of the models' operations (layer norm in
    // LibTorch 1.13); say so here rather than with a LibTorch error after the models have loaded.
    // bfloat16 runs on the CPU.
    if (o->dtype == "fp16" && !device.is_cuda())
      throw UsageError(cat("[sample] --dtype fp16 needs a CUDA device (--device is ", device,
                           "); on the CPU use --dtype fp32 or bf16"));
    const auto prompts = read_prompts(*o);
    const int64_t P = static_cast<int64_t>(prompts.size());
    const int64_t K = o->images_per_prompt;
    const int64_t N = P * K;
    torch::Tensor init;
    if (!o->init_latents.empty()) {
      auto f = io::SafetensorsFile::open(o->init_latents);
      if (!f->contains("latents"))
        throw IoError(cat("[sample] ", o->init_latents, ": no tensor 'latents'"));
      init = f->get("latents", torch::kFloat32);
      if (init.dim() != 4 || init.size(0) != N)
        throw UsageError(cat("[sample] ", o->init_latents, ": 'latents' has shape ", init.sizes(),
                             ", expected [", N, ", C, h, w] (", P, " prompts x ", K, " images)"));
    }
    pipeline::LoadSpec spec;
    spec.model = o->model;
    spec.unet = o->unet.empty() || o->unet_subfolder.empty() ? fs::path(o->unet) : fs::path(o->unet) / o->unet_subfolder;
    if (o->unet.empty() && !o->unet_subfolder.empty())
      throw UsageError("[sample] --unet-subfolder needs --unet");
    spec.unet_variant = o->unet_variant;
    for (const auto& l : o->loras) {
      spec.loras.push_back(models::parse_lora_spec(l));
      if (!fs::is_regular_file(spec.loras.back().file))
        throw UsageError(cat("[sample] --lora ", l, ": no such file (expected a LoRA safetensors file)"));
    }
    spec.vae = o->vae;
    spec.variant = o->variant;
    spec.device = device;
    spec.dtype = dtype_named(o->dtype);
    const auto t_load = std::chrono::steady_clock::now();
    if (rank == 0)
      std::cerr << "[sample] loading " << o->model << (o->unet.empty() ? "" : " with UNet " + spec.unet.string())
                << " onto " << device << " in " << o->dtype << " ..." << std::endl;
    auto sd = pipeline::StableDiffusion::load(spec);
    if (rank == 0)
      std::cerr << "[sample] loaded (" << (sd.sdxl() ? "SDXL" : "SD1.5 layout") << ") in "
                << std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count() << " s\n";
    if (sdxl_flag->count() > 0 && o->sdxl != sd.sdxl())
      throw UsageError(cat("[sample] --", o->sdxl ? "sdxl" : "no-sdxl", " was given but ", o->model, " is ",
                           sd.sdxl() ? "an SDXL model" : "not an SDXL model (one text encoder)"));
    pipeline::GenerateOptions g;
    g.scheduler = o->scheduler;
    g.steps = o->steps;
    g.guidance_scale = o->guidance;
    g.eta = o->eta;
    g.height = o->height;
    g.width = o->width;

    const int digits = static_cast<int>(std::to_string(std::max<int64_t>(P - 1, 0)).size());
    auto dir_of = [&](int64_t n) {
      std::string idx = std::to_string(n);
      return fs::path(o->out) / (std::string(std::max<int>(0, digits - int(idx.size())), '0') + idx);
    };
    // Output order: prompt-major, then image index.
    struct Job {
      int64_t n, i, order;
      uint64_t seed;
    };
    std::vector<Job> jobs;
    auto mine = [&](int64_t n) { return n % world == rank; };
    for (int64_t n = 0; n < P; ++n)
      for (int64_t i = 0; i < K && mine(n); ++i) {
        Job j{n, i, n * K + i, o->seed + static_cast<uint64_t>(n + i * P)};
        const auto png = dir_of(n) / (std::to_string(j.seed) + ".png");
        if (o->overwrite || !o->save_latents.empty() || !fs::exists(png)) jobs.push_back(j);
      }
    for (int64_t n = 0; n < P; ++n) {
      if (!mine(n)) continue;
      const auto cap = dir_of(n) / "caption.txt";
      if (fs::exists(cap) && trim(io::read_file(cap)) != prompts[n] && !o->overwrite)
        throw UsageError(cat("[sample] ", cap.string(), " holds another prompt; choose another --out ",
                             "or pass --overwrite"));
      io::write_file_atomically(cap, prompts[n]);
    }
    std::cerr << "[sample] " << (world > 1 ? cat("rank ", rank, "/", world, ": ") : std::string()) << P
              << " prompts x " << K << " images, " << jobs.size() << " to generate here, " << o->scheduler << " " << o->steps << " steps, guidance "
              << o->guidance << ", device " << spec.device << "\n";
    std::vector<torch::Tensor> all_latents(N);
    const int64_t batches = (static_cast<int64_t>(jobs.size()) + o->batch_size - 1) / o->batch_size;
    Progress progress("sample", batches * o->steps, o->quiet);
    for (size_t s = 0; s < jobs.size(); s += o->batch_size) {
      std::vector<pipeline::ImageRequest> batch;
      const size_t e = std::min(jobs.size(), s + static_cast<size_t>(o->batch_size));
      for (size_t k = s; k < e; ++k) {
        pipeline::ImageRequest r{prompts[jobs[k].n], o->negative_prompt, jobs[k].seed, {}};
        if (init.defined()) r.init_latents = init[jobs[k].order];
        batch.push_back(r);
      }
      auto res = pipeline::generate(sd, batch, g, {}, &progress);
      for (size_t k = s; k < e; ++k) {
        const auto& j = jobs[k];
        all_latents[j.order] = res.latents[k - s].to(torch::kCPU, torch::kFloat32);
        io::write_png(dir_of(j.n) / (std::to_string(j.seed) + ".png"),
                      io::from_tensor(res.images[k - s], io::PixelRange::kZeroOne));
      }
    }
    progress.finish();
    if (!o->save_latents.empty()) {
      io::save_safetensors(o->save_latents, {{"latents", torch::stack(all_latents)}});
      std::cerr << "[sample] latents written to " << o->save_latents << "\n";
    }
    std::cerr << "[sample] images in " << o->out << "\n";
    return 0;
  };
}

}  // namespace dro::app
