// Typed configs parsed from the fixture folders, and errors that name the offending field.
#include "dro/core/error.h"
#include "dro/models/unet_config.h"
#include "dro/models/vae_config.h"
#include "dro/sched/scheduler_config.h"
#include "dro/text/clip_config.h"
#include "test_util.h"

namespace dro {
namespace {

TEST(Config, Sd15Unet) {
  DRO_REQUIRE_FIXTURES();
  auto c = models::UNetConfig::load(test::fixtures() / "tiny-sd15/unet");
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{8, 8, 16, 16}));
  EXPECT_EQ(c.num_attention_heads, (std::vector<int64_t>{2, 2, 2, 2}));  // from attention_head_dim
  EXPECT_EQ(c.cross_attention_dim, (std::vector<int64_t>{8, 8, 8, 8}));
  EXPECT_EQ(c.layers_per_block, (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(c.norm_num_groups, 4);
  EXPECT_FALSE(c.use_linear_projection);
  EXPECT_EQ(c.addition_embed_type, "");
  EXPECT_EQ(c.time_embed_dim(), 32);
}

TEST(Config, SdxlUnet) {
  DRO_REQUIRE_FIXTURES();
  auto c = models::UNetConfig::load(test::fixtures() / "tiny-sdxl/unet");
  EXPECT_EQ(c.num_attention_heads, (std::vector<int64_t>{2, 2, 4}));
  EXPECT_EQ(c.transformer_layers_per_block, (std::vector<int64_t>{1, 1, 2}));
  EXPECT_EQ(c.addition_embed_type, "text_time");
  EXPECT_EQ(c.addition_time_embed_dim, 8);
  EXPECT_EQ(c.projection_class_embeddings_input_dim, 60);
  EXPECT_TRUE(c.use_linear_projection);
}

TEST(Config, UnetErrorsNameTheField) {
  io::OrderedJson j = {{"down_block_types", {"CrossAttnDownBlock2D", "DownBlock2D"}},
                       {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D"}},
                       {"block_out_channels", {8, 16, 32}}};
  try {
    models::UNetConfig::from_json(j, "cfg.json");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("block_out_channels"), std::string::npos) << e.what();
  }
  j["block_out_channels"] = {8, 16};
  j["class_embed_type"] = "timestep";
  EXPECT_THROW(models::UNetConfig::from_json(j, "cfg.json"), UsageError);
  j.erase("class_embed_type");
  j["norm_eps"] = "small";
  try {
    models::UNetConfig::from_json(j, "cfg.json");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("'norm_eps'"), std::string::npos) << e.what();
  }
}

TEST(Config, VaeTextScheduler) {
  DRO_REQUIRE_FIXTURES();
  auto v = models::VaeConfig::load(test::fixtures() / "tiny-sdxl/vae");
  EXPECT_EQ(v.layers_per_block, 1);
  EXPECT_DOUBLE_EQ(v.scaling_factor, 0.13025);
  EXPECT_EQ(v.scale_factor(), 4);
  auto t = text::ClipTextConfig::load(test::fixtures() / "tiny-sdxl/text_encoder_2");
  EXPECT_TRUE(t.with_projection());
  EXPECT_EQ(t.hidden_act, "gelu");
  EXPECT_EQ(t.projection_dim, 12);
  auto s = sched::SchedulerConfig::load(test::fixtures() / "tiny-sd15/scheduler");
  EXPECT_EQ(s.class_name, "PNDMScheduler");
  EXPECT_EQ(s.beta_schedule, "scaled_linear");
  EXPECT_EQ(s.steps_offset, 1);
  EXPECT_FALSE(s.set_alpha_to_one);
}

}  // namespace
}  // namespace dro
