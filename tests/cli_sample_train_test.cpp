// Runs the real `dro sample` and `dro train` programs on the tiny fixtures.
#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>

#include "dro/io/atomic_file.h"
#include "dro/core/error.h"
#include "dro/io/image.h"
#include "dro/io/safetensors.h"
#include "dro/models/unet.h"
#include "test_util.h"

namespace dro {
namespace {
namespace fs = std::filesystem;


const std::string kDro = DRO_BINARY;

TEST(CliSample, BothFixturesWriteTheOfficialLayout) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  for (const char* model : {"tiny-sd15", "tiny-sdxl"}) {
    const fs::path out = tmp / model;
    auto [rc, log] = test::run_command(kDro + " sample --model " + (test::fixtures() / model).string() +
                         " --prompt 'a red cat' --images-per-prompt 2 --steps 3 --scheduler ddim --seed 7"
                         " --save-latents " + (out / "latents.safetensors").string() + " --out " + out.string());
    ASSERT_EQ(rc, 0) << log;
    // Seeds: image i of prompt n = seed + n + i * num_prompts.
    for (const char* f : {"0/7.png", "0/8.png", "0/caption.txt"}) EXPECT_TRUE(fs::exists(out / f)) << f;
    auto img = io::read_image(out / "0/7.png");
    EXPECT_EQ(img.width, 32);
    auto lat = io::SafetensorsFile::open(out / "latents.safetensors")->get("latents");
    EXPECT_EQ(lat.sizes(), (at::IntArrayRef{2, 4, 8, 8}));
    // Regenerating one image alone with the same seed and its saved initial noise is identical.
  }
  // A single image can be regenerated alone: seed 8 as the first image of a run with base seed 8.
  const fs::path again = tmp / "again";
  auto [rc, log] = test::run_command(kDro + " sample --model " + (test::fixtures() / "tiny-sd15").string() +
                       " --prompt 'a red cat' --steps 3 --scheduler ddim --seed 8 --out " + again.string());
  ASSERT_EQ(rc, 0) << log;
  EXPECT_TRUE(io::read_image(again / "0/8.png") == io::read_image(tmp / "tiny-sd15/0/8.png"));
}

// The official inference.py option names, and a data-parallel run (the launcher's variables set
// by hand, one process after the other): each rank writes its prompts' folders, together the same
// files as one process, with the same seeds.
TEST(CliSample, OfficialOptionNamesAndRankSharding) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  for (int i = 0; i < 3; ++i) {
    fs::create_directories(tmp / "prompts" / cat("00", i));
    std::ofstream(tmp / "prompts" / cat("00", i) / "caption.txt") << (i == 1 ? "a blue dog" : "a red cat");
  }
  const std::string official = " --pretrained_model_name_or_path " + (test::fixtures() / "tiny-sd15").string() +
                               " --test_dataset " + (tmp / "prompts").string() +
                               " --scheduler DDIM --num_inference_steps 3 --guidance_scale 7.5"
                               " --num_images_per_prompt 2 --batch_size 4 --seed 3 --mixed_precision no --no-sdxl";
  for (int r = 0; r < 2; ++r) {
    auto [rc, log] = test::run_command(cat("MASTER_ADDR=127.0.0.1 MASTER_PORT=29561 RANK=", r, " WORLD_SIZE=2 LOCAL_RANK=", r,
                                           " ", kDro, " sample", official, " --output ", (tmp / "sharded").string()));
    ASSERT_EQ(rc, 0) << log;
    EXPECT_NE(log.find(cat("rank ", r, "/2: 3 prompts x 2 images, ", r == 0 ? 4 : 2, " to generate here")),
              std::string::npos) << log;
  }
  auto [rc, log] = test::run_command(kDro + " sample" + official + " --output " + (tmp / "single").string());
  ASSERT_EQ(rc, 0) << log;
  auto files = [](const fs::path& d) {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(d))
      if (e.is_regular_file()) out.push_back(fs::relative(e.path(), d).string());
    std::sort(out.begin(), out.end());
    return out;
  };
  // Seeds: image i of prompt n = 3 + n + 3 i.
  const std::vector<std::string> expected = {"0/3.png", "0/6.png", "0/caption.txt", "1/4.png", "1/7.png",
                                             "1/caption.txt", "2/5.png", "2/8.png", "2/caption.txt"};
  EXPECT_EQ(files(tmp / "sharded"), expected);
  EXPECT_EQ(files(tmp / "single"), expected);
  // The first image of a batch sees the same batch position either way: identical pixels.
  EXPECT_TRUE(io::read_image(tmp / "sharded/0/3.png") == io::read_image(tmp / "single/0/3.png"));
  EXPECT_EQ(io::read_file(tmp / "sharded/1/caption.txt"), "a blue dog");
  // --sdxl is checked against the model.
  auto [rc2, log2] = test::run_command(kDro + " sample --model " + (test::fixtures() / "tiny-sd15").string() +
                                       " --prompt x --sdxl --out " + (tmp / "x").string());
  EXPECT_NE(rc2, 0);
  EXPECT_NE(log2.find("--sdxl was given"), std::string::npos) << log2;
}

// --init-latents gives the initial noise of every image: with a deterministic sampler the seed then
// changes nothing, and a file of the wrong shape is named.
TEST(CliSample, InitLatentsReplaceTheSeededNoise) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  auto gen = at::detail::createCPUGenerator(3);
  io::save_safetensors(tmp / "noise.safetensors", {{"latents", torch::randn({2, 4, 8, 8}, gen)}});
  const std::string base = kDro + " sample --model " + (test::fixtures() / "tiny-sd15").string() +
                           " --prompt 'a red cat' --images-per-prompt 2 --steps 3 --scheduler ddim --quiet";
  const std::string init = " --init-latents " + (tmp / "noise.safetensors").string();
  for (const char* seed : {"1", "50"}) {
    auto [rc, log] = test::run_command(base + init + " --seed " + seed + " --out " + (tmp / seed).string());
    ASSERT_EQ(rc, 0) << log;
  }
  auto [rc, log] = test::run_command(base + " --seed 1 --out " + (tmp / "seeded").string());
  ASSERT_EQ(rc, 0) << log;
  // Seed 1: images 1.png and 2.png; seed 50: 50.png and 51.png, from the same two noises.
  EXPECT_TRUE(io::read_image(tmp / "1/0/1.png") == io::read_image(tmp / "50/0/50.png"));
  EXPECT_TRUE(io::read_image(tmp / "1/0/2.png") == io::read_image(tmp / "50/0/51.png"));
  EXPECT_FALSE(io::read_image(tmp / "1/0/1.png") == io::read_image(tmp / "1/0/2.png"));
  EXPECT_FALSE(io::read_image(tmp / "1/0/1.png") == io::read_image(tmp / "seeded/0/1.png"));
  io::save_safetensors(tmp / "bad.safetensors", {{"latents", torch::zeros({3, 4, 8, 8})}});
  auto [rc2, log2] = test::run_command(base + " --init-latents " + (tmp / "bad.safetensors").string() + " --out " +
                                       (tmp / "bad").string());
  EXPECT_NE(rc2, 0);
  EXPECT_NE(log2.find("bad.safetensors"), std::string::npos) << log2;
  EXPECT_NE(log2.find("expected [2, C, h, w]"), std::string::npos) << log2;
}

TEST(CliSample, BadArgumentsAreNamed) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  const std::string model = (test::fixtures() / "tiny-sd15").string();
  auto [rc1, log1] = test::run_command(kDro + " sample --model " + model + " --prompt x --scheduler nope --out " + tmp.path().string());
  EXPECT_NE(rc1, 0);
  EXPECT_NE(log1.find("--scheduler"), std::string::npos) << log1;
  auto [rc2, log2] = test::run_command(kDro + " sample --model " + model + " --out " + tmp.path().string());
  EXPECT_NE(rc2, 0);
  EXPECT_NE(log2.find("no prompts"), std::string::npos) << log2;
  auto [rc3, log3] = test::run_command(kDro + " sample --model " + model + " --prompt x --height 30 --out " + tmp.path().string());
  EXPECT_NE(rc3, 0);
  EXPECT_NE(log3.find("multiples of 4"), std::string::npos) << log3;
}

TEST(CliTrain, TrainsFromAJsonConfigWithFlagOverrides) {
  DRO_REQUIRE_FIXTURES();
  test::TempDir tmp;
  for (int i = 0; i < 3; ++i) {
    const fs::path d = tmp / "data" / cat("00", i);
    fs::create_directories(d);
    io::write_png(d / "x.png", io::from_tensor(torch::rand({3, 36, 36}) * 2 - 1));
    std::ofstream(d / "caption.txt") << "a photo number " << i;
  }
  // Official-style JSON config (snake_case, official scheduler spelling); flags override it.
  std::ofstream(tmp / "config.json") << R"({"resolution": 32, "batch_size": 2, "num_steps": 100,
      "gradient_accumulation_steps": 2, "buffer_size": 2, "buffer_batch_size": 2,
      "buffer_num_inference_steps": 3, "buffer_scheduler": "DPMSolver++", "checkpointing_steps": 2,
      "mixed_precision": "no", "validation_scheduler": "DDPM"})";
  const fs::path logdir = tmp / "run";
  auto [rc, log] = test::run_command(kDro + " train --config " + (tmp / "config.json").string() + " --model " +
                       (test::fixtures() / "tiny-sd15").string() + " --train-dataset " + (tmp / "data").string() +
                       " --num-steps 4 --buffer-update-steps 2 --logdir " + logdir.string() + " --quiet");
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("Effective batch size    : 4"), std::string::npos) << log;
  EXPECT_NE(log.find("Optimisation steps      : 2"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(logdir / "ckpt-2/unet/config.json"));
  EXPECT_TRUE(fs::exists(logdir / "ckpt-4/unet/diffusion_pytorch_model.safetensors"));
  models::load_unet(logdir / "ckpt-4/unet");  // loads back
  // And the checkpoint samples through `dro sample --unet`.
  auto [rc2, log2] = test::run_command(kDro + " sample --model " + (test::fixtures() / "tiny-sd15").string() + " --unet " +
                         (logdir / "ckpt-4/unet").string() + " --prompt x --steps 2 --out " + (tmp / "s").string());
  EXPECT_EQ(rc2, 0) << log2;
  auto [rc3, log3] = test::run_command(kDro + " train --model " + (test::fixtures() / "tiny-sd15").string() +
                         " --train-dataset " + (tmp / "data").string() + " --lr-scheduler bogus --logdir " +
                         (tmp / "bad").string());
  EXPECT_NE(rc3, 0);
  EXPECT_NE(log3.find("bogus"), std::string::npos) << log3;
}

}  // namespace
}  // namespace dro
