// Training configs: JSON/TOML values are type-checked (no silent truncation of 4.7 to 4), every
// numeric option is range-checked with the file and key (or the flag) named, official train.py
// options that dro does not use are reported, unknown keys are errors.
#include <algorithm>
#include <cmath>
#include <fstream>

#include "dro/core/error.h"
#include "dro/io/toml.h"
#include "dro/train/train_config.h"
#include "test_util.h"

namespace dro::train {
namespace {

// The UsageError message of `f`, or "no error".
template <typename F>
std::string usage_error(F&& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "no error";
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string from_json(const std::string& json) {
  return usage_error([&] {
    TrainConfig c;
    c.update_from_json(io::OrderedJson::parse(json), "runs/cfg.json");
  });
}

TEST(TrainConfig, WrongJsonTypesNameTheFileAndKey) {
  TrainConfig c;
  std::string m = usage_error(
      [&] { c.update_from_json(io::OrderedJson::parse(R"({"batch_size": 4.7})"), "cfg.json"); });
  EXPECT_EQ(m, "[config] cfg.json: 'batch_size' must be an integer, got 4.7");
  EXPECT_EQ(c.batch_size, 4);  // unchanged, not truncated
  EXPECT_EQ(from_json(R"({"num_steps": 1e4})"),
            "[config] runs/cfg.json: 'num_steps' must be an integer, got 10000.0");
  EXPECT_EQ(from_json(R"({"random_flip": "false"})"),
            "[config] runs/cfg.json: 'random_flip' must be true or false, got \"false\"");
  EXPECT_EQ(from_json(R"({"use_ema": 1})"),
            "[config] runs/cfg.json: 'use_ema' must be true or false, got 1");
  EXPECT_EQ(from_json(R"({"lr_scheduler": 3})"),
            "[config] runs/cfg.json: 'lr_scheduler' must be a string, got 3");
  EXPECT_EQ(from_json(R"({"learning_rate": "1e-4"})"),
            "[config] runs/cfg.json: 'learning_rate' must be a number, got \"1e-4\"");
  EXPECT_EQ(from_json(R"({"seed": 18446744073709551615})"),
            "[config] runs/cfg.json: 'seed' is out of range, got 18446744073709551615");
  // A kebab-case key is the same option, named in snake_case.
  EXPECT_EQ(from_json(R"({"batch-size": true})"),
            "[config] runs/cfg.json: 'batch_size' must be an integer, got true");
}

TEST(TrainConfig, ValidJsonValuesAreRead) {
  TrainConfig c;
  const auto unused = c.update_from_json(io::OrderedJson::parse(R"({
      "batch_size": 2, "learning_rate": 1, "adam_beta1": 0, "random_drop_prompt_probability": 1,
      "margin": 0, "max_grad_norm": 0, "random-flip": false, "variant": null, "seed": -3,
      "lr_scheduler": "cosine"})"),
                                         "cfg.json");
  EXPECT_TRUE(unused.empty());
  EXPECT_EQ(c.batch_size, 2);
  EXPECT_DOUBLE_EQ(c.learning_rate, 1.0);  // an integer is a number
  EXPECT_DOUBLE_EQ(c.adam_beta1, 0.0);
  EXPECT_DOUBLE_EQ(c.random_drop_prompt_probability, 1.0);
  EXPECT_DOUBLE_EQ(c.margin, 0.0);
  EXPECT_DOUBLE_EQ(c.max_grad_norm, 0.0);
  EXPECT_FALSE(c.random_flip);
  EXPECT_EQ(c.variant, "");  // null keeps the default
  EXPECT_EQ(c.seed, -3);
  EXPECT_EQ(c.lr_scheduler, "cosine");
}

TEST(TrainConfig, WrittenConfigReadsBackUnchanged) {
  TrainConfig a;
  a.pretrained_model_name_or_path = "model";
  a.train_dataset = "data";
  a.learning_rate = 3e-5;
  a.margin = 0.0;
  a.max_grad_norm = 0.0;
  a.num_steps = 320;
  TrainConfig b;
  EXPECT_TRUE(b.update_from_json(io::OrderedJson::parse(a.to_json().dump()), "training_config.json")
                  .empty());
  EXPECT_EQ(b.to_json().dump(), a.to_json().dump());
}

struct BadValue {
  const char* key;
  const char* value;
  const char* allowed;
};

// Out-of-range values of every numeric option: each names the file and key (or the flag) and the
// allowed range.
const BadValue kBad[] = {
    {"resolution", "0", ">= 1"},
    {"random_drop_prompt_probability", "1.5", "in [0, 1]"},
    {"random_drop_prompt_probability", "-0.1", "in [0, 1]"},
    {"dataloader_num_workers", "-1", ">= 0"},
    {"batch_size", "0", ">= 1"},
    {"num_steps", "-5", ">= 1"},
    {"gradient_accumulation_steps", "0", ">= 1"},
    {"learning_rate", "0", "> 0"},
    {"learning_rate", "-0.0001", "> 0"},
    {"lr_warmup_steps", "-1", ">= 0"},
    {"adam_beta1", "1", "in [0, 1)"},
    {"adam_beta2", "-0.5", "in [0, 1)"},
    {"adam_weight_decay", "-0.01", ">= 0"},
    {"adam_epsilon", "0", "> 0"},
    {"max_grad_norm", "-1", ">= 0"},
    {"margin", "-0.001", ">= 0"},
    {"ema_decay", "1", "in (0, 1)"},
    {"buffer_size", "0", ">= 1"},
    {"buffer_batch_size", "0", ">= 1"},
    {"buffer_batch_accumulation", "0", ">= 1"},
    {"buffer_num_inference_steps", "1001", "in [1, 1000]"},
    {"buffer_guidance_scale", "-1", ">= 0"},
    {"buffer_sample_steps", "0", ">= 1"},
    {"buffer_update_steps", "0", ">= 1"},
    {"checkpointing_steps", "0", ">= 1"},
    {"log_every", "0", ">= 1"},
    {"dist_timeout", "0", "> 0"},
};

std::string kebab(std::string k) {
  std::replace(k.begin(), k.end(), '_', '-');
  return k;
}

TEST(TrainConfig, OutOfRangeValuesNameTheKeyAndTheRange) {
  for (const auto& b : kBad) {
    const auto j = io::OrderedJson::parse(cat("{\"", b.key, "\": ", b.value, "}"));
    // From a config file: the file and the key.
    const std::string m = from_json(j.dump());
    EXPECT_TRUE(has(m, cat("[config] runs/cfg.json: '", b.key, "' must be ", b.allowed, ", got ")))
        << m;
    // From the command line: the flag.
    const std::string f = usage_error([&] {
      TrainConfig c;
      c.update_from_flags(j);
    });
    EXPECT_TRUE(has(f, cat("[train] --", kebab(b.key), " must be ", b.allowed, ", got "))) << f;
  }
  EXPECT_EQ(from_json(R"({"adam_beta1": 1.0})"),
            "[config] runs/cfg.json: 'adam_beta1' must be in [0, 1), got 1");
  EXPECT_EQ(from_json(R"({"batch_size": 0})"),
            "[config] runs/cfg.json: 'batch_size' must be >= 1, got 0");
}

TEST(TrainConfig, ValidateChecksFieldsSetInCode) {
  TrainConfig ok;
  ok.pretrained_model_name_or_path = "model";
  ok.train_dataset = "data";
  EXPECT_EQ(usage_error([&] { ok.validate(); }), "no error");
  struct Case {
    void (*set)(TrainConfig&);
    const char* message;
  };
  const Case cases[] = {
      {[](TrainConfig& c) { c.learning_rate = 0; }, "[train] --learning-rate must be > 0, got 0"},
      {[](TrainConfig& c) { c.adam_beta1 = 1; }, "[train] --adam-beta1 must be in [0, 1), got 1"},
      {[](TrainConfig& c) { c.adam_beta2 = 1.5; },
       "[train] --adam-beta2 must be in [0, 1), got 1.5"},
      {[](TrainConfig& c) { c.adam_epsilon = 0; }, "[train] --adam-epsilon must be > 0, got 0"},
      {[](TrainConfig& c) { c.adam_weight_decay = -1; },
       "[train] --adam-weight-decay must be >= 0, got -1"},
      {[](TrainConfig& c) { c.batch_size = 0; }, "[train] --batch-size must be >= 1, got 0"},
      {[](TrainConfig& c) { c.margin = -0.5; }, "[train] --margin must be >= 0, got -0.5"},
      {[](TrainConfig& c) { c.max_grad_norm = -1; },
       "[train] --max-grad-norm must be >= 0, got -1"},
      {[](TrainConfig& c) { c.random_drop_prompt_probability = 2; },
       "[train] --random-drop-prompt-probability must be in [0, 1], got 2"},
      {[](TrainConfig& c) { c.random_drop_prompt_probability = std::nan(""); },
       "[train] --random-drop-prompt-probability must be in [0, 1], got nan"},
      {[](TrainConfig& c) { c.learning_rate = HUGE_VAL; },
       "[train] --learning-rate must be > 0, got inf"},
      {[](TrainConfig& c) { c.num_steps = 3; },
       "[train] --num-steps (3) is smaller than --gradient-accumulation-steps (16): no "
       "optimisation step would run"},
      {[](TrainConfig& c) { c.lr_scheduler = "step"; }, "[lr] unknown --lr-scheduler 'step'"},
      {[](TrainConfig& c) { c.pretrained_model_name_or_path = ""; }, "--model) is required"},
  };
  for (const auto& k : cases) {
    TrainConfig c = ok;
    k.set(c);
    const std::string m = usage_error([&] { c.validate(); });
    EXPECT_TRUE(has(m, k.message)) << m;
  }
  // A polynomial schedule whose warmup is the whole run is valid (and finite: lr_schedule_test).
  TrainConfig p = ok;
  p.lr_scheduler = "polynomial";
  p.num_steps = 64;
  p.lr_warmup_steps = 64;
  EXPECT_EQ(usage_error([&] { p.validate(); }), "no error");
}

TEST(TrainConfig, OfficialOptionsDroDoesNotUseAreReturnedForAWarning) {
  TrainConfig c;
  const auto unused = c.update_from_json(io::OrderedJson::parse(R"({
      "validation_dataset": "./data/pickapicv2_test", "batch_size": 2, "score": null,
      "validation-scheduler": "DDPM", "buffer_sync": false, "sdxl": false})"),
                                         "official.json");
  EXPECT_EQ(unused, (std::vector<std::string>{"validation_dataset", "score", "validation_scheduler",
                                              "buffer_sync", "sdxl"}));
  EXPECT_EQ(c.batch_size, 2);  // the rest is read
  const std::string w = unused_options_warning(unused, "official.json");
  EXPECT_TRUE(has(
      w,
      "[config] official.json: warning: ignoring official train.py options that dro train does not "
      "use: validation_dataset, score, validation_scheduler, buffer_sync, sdxl"))
      << w;
  EXPECT_TRUE(has(w, "dro sample, dro score")) << w;
  EXPECT_TRUE(has(w, "SDXL from the model folder")) << w;
  EXPECT_EQ(unused_options_warning({}, "x.json"), "");
}

TEST(TrainConfig, UnknownKeysAreErrorsWithASuggestion) {
  EXPECT_EQ(from_json(R"({"batch_sise": 2})"),
            "[config] runs/cfg.json: unknown option 'batch_sise' (did you mean 'batch_size'?)");
  EXPECT_EQ(from_json(R"({"zzz": 1, "yyy": 2})"),
            "[config] runs/cfg.json: unknown options 'zzz', 'yyy'");
  EXPECT_EQ(from_json(R"({"batch-size": 2, "batch_size": 3})"),
            "[config] runs/cfg.json: 'batch_size' is given twice ('batch-size' and 'batch_size')");
  EXPECT_EQ(from_json("[1, 2]"), "[config] runs/cfg.json: must be a JSON object");
}

TEST(TrainConfig, TomlValuesAreTypeCheckedToo) {
  test::TempDir tmp;
  const auto path = tmp / "train.toml";
  std::ofstream(path) << "[train]\nbatch_size = 4.7\n";
  const std::string m = usage_error([&] {
    TrainConfig c;
    c.update_from_json(io::read_flat_toml(path, "train"), path.string());
  });
  EXPECT_EQ(m, cat("[config] ", path.string(), ": 'batch_size' must be an integer, got 4.7"));
  std::ofstream(path)
      << "[train]\nbatch_size = 3\nlearning_rate = 2e-5\nrandom_flip = false\nscore = \"hpsv2\"\n";
  TrainConfig c;
  const auto unused = c.update_from_json(io::read_flat_toml(path, "train"), path.string());
  EXPECT_EQ(unused, std::vector<std::string>{"score"});
  EXPECT_EQ(c.batch_size, 3);
  EXPECT_DOUBLE_EQ(c.learning_rate, 2e-5);
  EXPECT_FALSE(c.random_flip);
}

}  // namespace
}  // namespace dro::train
