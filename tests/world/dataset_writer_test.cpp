// The world on disk: the official folder layout, captions and PNGs readable back, feedback files
// consistent with the expert set, held-out prompts kept out, and identical bytes for one seed.
#include "dro/world/dataset_writer.h"

#include <map>
#include <set>
#include <sstream>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "test_util.h"

namespace dro::world {
namespace {
namespace fs = std::filesystem;

WorldConfig small_config(uint64_t seed) {
  WorldConfig c;
  c.seed = seed;
  c.heldout_prompts = 30;
  c.base_images_per_prompt = 1;
  c.feedback_rounds = 1;
  c.top_n = 120;
  return c;
}

std::vector<io::OrderedJson> read_jsonl(const fs::path& path) {
  std::istringstream in(io::read_file(path));
  std::vector<io::OrderedJson> out;
  for (std::string line; std::getline(in, line);) out.push_back(io::OrderedJson::parse(line));
  return out;
}

// Every file under `root` with its bytes, by relative path.
std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) files[fs::relative(e.path(), root).string()] = io::read_file(e.path());
  return files;
}

TEST(WorldDatasetWriter, WritesTheOfficialLayout) {
  test::TempDir dir;
  const fs::path out = dir / "world";
  const WorldSummary s = write_world(out, small_config(1));
  std::cout << "[ world    ] mean hidden score: base " << s.base.mean << ", shown " << s.shown.mean
            << ", kept " << s.kept.mean << ", not kept " << s.not_kept.mean << ", expert (top "
            << s.expert.count << ") " << s.expert.mean << "; expert terms size " << s.expert.size
            << " saturation " << s.expert.saturation << " centring " << s.expert.centring
            << " outline " << s.expert.outline << " (base " << s.base.size << " "
            << s.base.saturation << " " << s.base.centring << " " << s.base.outline << ")\n";
  EXPECT_EQ(s.train_prompts, 450u);
  EXPECT_EQ(s.heldout_prompts, 30u);
  EXPECT_EQ(s.base.count, 450u);
  EXPECT_EQ(s.shown.count, 450u * 4);
  EXPECT_EQ(s.kept.count, 450u);
  EXPECT_EQ(s.expert.count, 120u);
  EXPECT_GT(s.kept.mean, s.shown.mean + 0.5);
  EXPECT_GT(s.expert.mean, s.kept.mean + 0.5);
  EXPECT_GT(s.expert.fidelity, 0.99);

  // Expert folder: 000 .. 119, each with NNN.png and caption.txt (no trailing newline).
  const auto held = read_prompt_list(out / "prompts" / "heldout.txt");
  const auto train = read_prompt_list(out / "prompts" / "train.txt");
  ASSERT_EQ(held.size(), 30u);
  ASSERT_EQ(train.size(), 450u);
  std::set<std::string> held_captions;
  for (const auto& p : held) held_captions.insert(p.caption());
  size_t folders = 0;
  for (const auto& e : fs::directory_iterator(out / "expert")) {
    ASSERT_TRUE(e.is_directory()) << e.path();
    const std::string id = e.path().filename().string();
    ASSERT_EQ(id.size(), 3u) << id;
    const std::string caption = io::read_file(e.path() / "caption.txt");
    EXPECT_EQ(caption, Prompt::parse(caption).caption());
    EXPECT_EQ(held_captions.count(caption), 0u) << "held-out prompt in the expert set: " << caption;
    const io::Image image = io::read_image(e.path() / (id + ".png"));
    EXPECT_EQ(image.width, 32);
    EXPECT_EQ(image.channels, 3);
    ++folders;
  }
  EXPECT_EQ(folders, 120u);
  EXPECT_TRUE(fs::exists(out / "expert" / "000" / "000.png"));
  EXPECT_TRUE(fs::exists(out / "expert" / "119" / "caption.txt"));
  EXPECT_TRUE(fs::exists(out / "base" / "449" / "449.png"));
  EXPECT_TRUE(fs::exists(out / "heldout" / "29" / "29.png"));
  for (const auto& e : fs::directory_iterator(out / "base"))
    EXPECT_EQ(held_captions.count(io::read_file(e.path() / "caption.txt")), 0u);

  // Feedback: K - 1 pairs and K labels per session, one kept image each, files exist.
  const auto pairs = read_jsonl(out / "feedback" / "pairs.jsonl");
  const auto labels = read_jsonl(out / "feedback" / "labels.jsonl");
  EXPECT_EQ(pairs.size(), 450u * 3);
  EXPECT_EQ(labels.size(), 450u * 4);
  std::map<uint64_t, std::string> kept_image;
  for (const auto& l : labels) {
    EXPECT_TRUE(fs::exists(out / "feedback" / l["image"].get<std::string>()));
    EXPECT_EQ(held_captions.count(l["caption"].get<std::string>()), 0u);
    if (l["label"].get<int>() == 1) {
      EXPECT_EQ(kept_image.count(l["session"].get<uint64_t>()), 0u);
      kept_image[l["session"].get<uint64_t>()] = l["image"].get<std::string>();
    }
  }
  EXPECT_EQ(kept_image.size(), 450u);
  for (const auto& p : pairs) {
    EXPECT_EQ(p["chosen"].get<std::string>(), kept_image.at(p["session"].get<uint64_t>()));
    EXPECT_NE(p["rejected"], p["chosen"]);
  }
  // The expert images are kept images, byte for byte.
  const auto index = read_jsonl(out / "feedback" / "expert.jsonl");
  ASSERT_EQ(index.size(), 120u);
  for (const auto& x : {index.front(), index.back()}) {
    const std::string id = x["expert"].get<std::string>();
    EXPECT_EQ(io::read_image(out / "expert" / id / (id + ".png")),
              io::read_image(out / "feedback" / x["image"].get<std::string>()));
    EXPECT_EQ(x["image"].get<std::string>(), kept_image.at(x["session"].get<uint64_t>()));
  }

  const io::OrderedJson world = io::read_json(out / "world.json");
  EXPECT_EQ(world["seed"], 1);
  EXPECT_EQ(world["image_size"], 32);
  EXPECT_EQ(world["attributes"]["shapes"].size(), 4u);
  EXPECT_EQ(world["prompts"]["heldout"].size(), 30u);
  EXPECT_EQ(world["summary"]["expert"]["count"], 120);
  // Nothing is left beside the world.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator{}), 1);
}

// keep-only experts: N kept images at random (no reward model), so their mean hidden score is the
// kept images' mean up to sampling noise, well below the reward model's top-N; the same feedback.
TEST(WorldDatasetWriter, KeepOnlyExpertsAreRandomKeptImages) {
  test::TempDir dir;
  auto c = small_config(3);
  c.base_images_per_prompt = 0;
  const WorldSummary reward = write_world(dir / "reward", c);
  c.expert_ranking = "keep-only";
  const WorldSummary keep = write_world(dir / "keep", c);
  std::cout << "[ world    ] expert mean: reward model " << reward.expert.mean << ", keep-only " << keep.expert.mean
            << " (kept " << keep.kept.mean << ")\n";
  EXPECT_EQ(keep.expert.count, 120u);
  EXPECT_EQ(keep.kept.mean, reward.kept.mean);
  EXPECT_EQ(io::read_file(dir / "keep/feedback/pairs.jsonl"), io::read_file(dir / "reward/feedback/pairs.jsonl"));
  EXPECT_NEAR(keep.expert.mean, keep.kept.mean, 0.6);
  EXPECT_GT(reward.expert.mean, keep.expert.mean + 0.5);
  // Every keep-only expert is a kept image.
  std::set<std::string> kept;
  for (const auto& l : read_jsonl(dir / "keep/feedback/labels.jsonl"))
    if (l["label"] == 1) kept.insert(l["image"].get<std::string>());
  for (const auto& e : read_jsonl(dir / "keep/feedback/expert.jsonl"))
    EXPECT_TRUE(kept.count(e["image"].get<std::string>())) << e.dump();
  c.expert_ranking = "oracle";
  EXPECT_THROW(c.validate(), UsageError);
}

TEST(WorldDatasetWriter, SameSeedSameBytesAndRefusesToOverwrite) {
  test::TempDir dir;
  WorldConfig c = small_config(3);
  c.heldout_prompts = 10;
  c.top_n = 20;
  write_world(dir / "a", c);
  write_world(dir / "b", c);
  const auto a = snapshot(dir / "a"), b = snapshot(dir / "b");
  EXPECT_EQ(a.size(), b.size());
  EXPECT_TRUE(a == b) << "two worlds written from one seed differ";
  EXPECT_THROW(write_world(dir / "a", c), UsageError);
  c.seed = 4;
  c.overwrite = true;
  write_world(dir / "a", c);
  EXPECT_NE(io::read_file(dir / "a" / "prompts" / "heldout.txt"),
            io::read_file(dir / "b" / "prompts" / "heldout.txt"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator{}), 2);
  c.top_n = 0;
  EXPECT_THROW(write_world(dir / "c", c), UsageError);
}

}  // namespace
}  // namespace dro::world
