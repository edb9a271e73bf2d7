// Runs the real `dro inspect` program on the fixtures.
#include <array>
#include <cstdio>

#include "dro/io/json.h"
#include "test_util.h"

namespace dro {
namespace {


TEST(CliInspect, ModelFolderListsAllComponents) {
  DRO_REQUIRE_FIXTURES();
  auto [rc, out] = test::run_command(std::string(DRO_BINARY) + " inspect --json " +
                       (test::fixtures() / "tiny-sd15").string());
  ASSERT_EQ(rc, 0) << out;
  auto j = io::OrderedJson::parse(out);
  EXPECT_EQ(j["kind"], "model");
  std::vector<std::string> names;
  for (const auto& c : j["components"]) names.push_back(c["name"]);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"scheduler", "text_encoder", "tokenizer", "unet", "vae"}));
  for (const auto& c : j["components"]) {
    if (c["name"] == "unet") {
      bool found = false;
      for (const auto& t : c["tensors"])
        if (t["name"] == "conv_in.weight") {
          found = true;
          EXPECT_EQ(t["shape"], io::OrderedJson({8, 4, 3, 3}));
          EXPECT_EQ(t["dtype"], "F32");
        }
      EXPECT_TRUE(found);
    }
  }
}

TEST(CliInspect, TextOutputAndErrors) {
  DRO_REQUIRE_FIXTURES();
  auto [rc, out] = test::run_command(std::string(DRO_BINARY) + " inspect " +
                       (test::fixtures() / "tiny-sdxl/unet/diffusion_pytorch_model.safetensors").string());
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("add_embedding.linear_1.weight"), std::string::npos);
  auto [rc2, out2] = test::run_command(std::string(DRO_BINARY) + " inspect /nonexistent/path");
  EXPECT_NE(rc2, 0);
  EXPECT_NE(out2.find("/nonexistent/path"), std::string::npos) << out2;
}

}  // namespace
}  // namespace dro
