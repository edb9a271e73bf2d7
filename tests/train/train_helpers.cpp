#include "train/train_helpers.h"

#include <fstream>

#include "dro/core/error.h"
#include "dro/io/image.h"
#include "dro/io/safetensors.h"
#include "dro/train/trainer.h"
#include "test_util.h"

namespace dro::test {
namespace fs = std::filesystem;

void write_experts(const fs::path& dir, int n, int size) {
  const char* captions[] = {"a red circle", "a blue square on a dark background", "two cats", "a yellow star"};
  auto gen = at::detail::createCPUGenerator(5);
  for (int i = 0; i < n; ++i) {
    const fs::path d = dir / cat("00", i);
    fs::create_directories(d);
    auto img = torch::rand({3, size, size + 8 * (i % 2)}, gen) * 2 - 1;
    io::write_png(d / cat("00", i, ".png"), io::from_tensor(img));
    std::ofstream(d / "caption.txt") << captions[i % 4];
  }
}

void write_manifests(const fs::path& dir, int n) {
  const char* captions[] = {"a red circle", "a blue square on a dark background", "two cats"};
  auto gen = at::detail::createCPUGenerator(11);
  fs::create_directories(dir / "images");
  for (int i = 0; i < n; ++i) {
    auto img = torch::rand({3, 36, 36 + 6 * (i % 3)}, gen) * 2 - 1;
    io::write_png(dir / "images" / cat(i, ".png"), io::from_tensor(img));
  }
  std::ofstream pairs(dir / "pairs.jsonl"), labels(dir / "labels.jsonl");
  for (int i = 0; i < n; ++i) {
    pairs << R"({"caption": ")" << captions[i % 3] << R"(", "chosen": "images/)" << i << R"(.png", "rejected": "images/)"
          << (i + 1) % n << ".png\"}\n";
    labels << R"({"caption": ")" << captions[i % 3] << R"(", "image": "images/)" << i << R"(.png", "label": )"
           << (i % 2 == 0 ? 1 : 0) << "}\n";
  }
}

train::TrainConfig tiny_config(const std::string& model, const fs::path& data, const fs::path& logdir) {
  train::TrainConfig c;
  c.pretrained_model_name_or_path = (test::fixtures() / model).string();
  c.train_dataset = data.string();
  c.logdir = logdir.string();
  c.resolution = 32;
  c.batch_size = 2;
  c.gradient_accumulation_steps = 2;
  c.num_steps = 4;
  c.buffer_size = 4;
  c.buffer_batch_size = 2;
  c.buffer_num_inference_steps = 4;
  c.buffer_update_steps = 2;
  c.checkpointing_steps = 2;
  c.learning_rate = 1e-3;
  c.quiet = true;
  c.device = "cpu";
  c.dataloader_num_workers = 2;
  return c;
}

std::map<std::string, torch::Tensor> load_tensors(const fs::path& file) {
  std::map<std::string, torch::Tensor> out;
  for (auto& [k, v] : io::load_safetensors(file)) out[k] = v.clone();
  return out;
}

void expect_same_tensors(const fs::path& a, const fs::path& b) {
  ASSERT_EQ(fs::exists(a), fs::exists(b)) << a << " / " << b;
  if (!fs::exists(a)) return;
  const auto ta = load_tensors(a), tb = load_tensors(b);
  ASSERT_EQ(ta.size(), tb.size()) << a;
  for (const auto& [k, v] : ta) {
    ASSERT_TRUE(tb.count(k)) << b << ": " << k;
    EXPECT_TRUE(torch::equal(v, tb.at(k))) << a.filename() << ": " << k;
  }
}

std::vector<io::OrderedJson> metric_rows(const fs::path& logdir) {
  std::vector<io::OrderedJson> rows;
  std::ifstream in(logdir / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(io::OrderedJson::parse(line));
  return rows;
}

void expect_same_state(const fs::path& a, const fs::path& b) {
  for (const char* f : {"unet", "policy", "optimizer", "ema", "rank-0"})
    expect_same_tensors(a / "state" / (std::string(f) + ".safetensors"), b / "state" / (std::string(f) + ".safetensors"));
  const auto ra = metric_rows(a), rb = metric_rows(b);
  ASSERT_EQ(ra.size(), rb.size());
  for (size_t i = 0; i < ra.size(); ++i) EXPECT_EQ(ra[i].dump(), rb[i].dump()) << "metrics row " << i;
}

fs::path run_and_resume(train::TrainConfig c, const fs::path& dir) {
  c.logdir = (dir / "straight").string();
  {
    train::Trainer t(c);
    t.run();
    EXPECT_EQ(t.step(), c.num_steps);
  }
  auto half = c;
  half.logdir = (dir / "resumed").string();
  half.num_steps = c.num_steps / 2;
  train::Trainer(half).run();
  auto rest = c;
  rest.logdir = half.logdir;
  rest.resume = true;
  train::Trainer(rest).run();
  expect_same_state(dir / "straight", dir / "resumed");
  return dir / "straight";
}

}  // namespace dro::test
