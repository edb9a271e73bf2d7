// Aesthetic v1 / v2 (LAION aesthetic predictors) as misc/scores.py computes them: the CLIP ViT-L/14
// image embedding (transformers CLIPModel.get_image_features on CLIPImageProcessor pixels),
// divided by its L2 norm, through a linear head (v1: Linear(768, 1), sa_0_4_vit_l_14_linear.pth)
// or the AestheticMLP (v2: five Linear layers `layers.0/2/4/6/7` with dropout between and no
// activation at all, sac+logos+ava1-l14-linearMSE.pth). The prompt is not used. Both heads share
// one embedding pass when both are asked for.
#include <regex>

#include "dro/core/error.h"
#include "dro/core/sha256.h"
#include "dro/eval/scorer_impl.h"
#include "dro/vision/clip_image_processor.h"
#include "dro/vision/decode.h"

namespace dro::eval::detail {

namespace {

namespace fs = std::filesystem;

// A chain of linear layers read from a state dict, applied without activations (dropout is the
// identity at evaluation).
struct LinearChain {
  std::vector<std::pair<torch::Tensor, torch::Tensor>> layers;  // (weight [out, in], bias [out])

  static LinearChain from_state(const std::map<std::string, torch::Tensor>& state,
                                const fs::path& file, int64_t in_features) {
    LinearChain chain;
    static const std::regex layer_key(R"(^layers\.(\d+)\.(weight|bias)$)");
    if (state.count("weight") && state.count("bias") && state.size() == 2) {
      chain.layers.emplace_back(state.at("weight"), state.at("bias"));
    } else {
      std::map<int, std::pair<torch::Tensor, torch::Tensor>> by_index;
      for (const auto& [k, t] : state) {
        std::smatch m;
        if (!std::regex_match(k, m, layer_key))
          throw IoError(cat("[aesthetic] ", file.string(), ": unexpected key '", k,
                            "' (expected 'weight'/'bias' of a Linear, or 'layers.N.weight/bias')"));
        auto& slot = by_index[std::stoi(m[1].str())];
        (m[2] == "weight" ? slot.first : slot.second) = t;
      }
      for (auto& [i, wb] : by_index) {
        if (!wb.first.defined() || !wb.second.defined())
          throw IoError(cat("[aesthetic] ", file.string(), ": layers.", i, " lacks its ",
                            wb.first.defined() ? "bias" : "weight"));
        chain.layers.push_back(wb);
      }
    }
    if (chain.layers.empty()) throw IoError(cat("[aesthetic] ", file.string(), ": no layers"));
    int64_t width = in_features;
    for (size_t i = 0; i < chain.layers.size(); ++i) {
      auto& [w, b] = chain.layers[i];
      if (w.dim() != 2 || b.dim() != 1 || w.size(0) != b.size(0) || w.size(1) != width)
        throw IoError(cat("[aesthetic] ", file.string(), ": layer ", i, " has weight ", w.sizes(),
                          " and bias ", b.sizes(), "; expected [out, ", width, "] and [out]",
                          i == 0 ? " (the head must take the CLIP projection width)" : ""));
      width = w.size(0);
      w = w.to(torch::kFloat32).contiguous();
      b = b.to(torch::kFloat32).contiguous();
    }
    if (width != 1)
      throw IoError(cat("[aesthetic] ", file.string(), ": the head ends with ", width,
                        " outputs; an aesthetic head gives one"));
    return chain;
  }

  torch::Tensor forward(torch::Tensor x) const {
    for (const auto& [w, b] : layers) x = torch::addmm(b.to(x.device()), x, w.to(x.device()).t());
    return x;
  }
};

class AestheticScorer : public Scorer {
 public:
  AestheticScorer(const ScorerModels& m, const ScorerOptions& o, bool v1, bool v2) {
    if (!v1 && !v2) throw UsageError("[aesthetic] neither v1 nor v2 asked for");
    require_path(m.aesthetic_clip_model, "--aesthetic-clip-model", true);
    processor_ = vision::ClipImageProcessor::from_pretrained(m.aesthetic_clip_model /
                                                             "preprocessor_config.json");
    fs::path clip_file;
    model_ = models::load_clip_model(m.aesthetic_clip_model, models::ClipTowers{false, true},
                                     load_options(o), &clip_file);
    const std::string clip_sha = weights_sha256(clip_file);
    const int64_t width = model_->config().projection_dim;
    auto add = [&](const std::string& key, const fs::path& head, const char* flag,
                   const char* version) {
      require_path(head, flag, false);
      heads_.push_back(LinearChain::from_state(read_state_dict(head), head, width));
      ScoreKeyInfo info;
      info.key = key;
      info.name = key == "aestheticv1" ? "Aesthetic v1" : "Aesthetic v2";
      info.version = version;
      info.units =
          "LAION aesthetic rating (about 1-10) of the L2-normalised CLIP ViT-L/14 image "
          "embedding; the prompt is not used";
      info.weight_files = {clip_file, head};
      info.weights_sha256 =
          sha256_hex(cat(clip_file.filename().string(), ":", clip_sha, "\n",
                         head.filename().string(), ":", weights_sha256(head), "\n"));
      keys_.push_back(info);
    };
    if (v1)
      add("aestheticv1", m.aestheticv1_head, "--aestheticv1-head",
          "LAION aesthetic predictor v1 (linear head)");
    if (v2)
      add("aestheticv2", m.aestheticv2_head, "--aestheticv2-head",
          "LAION improved aesthetic predictor v2 (MLP head)");
    device_ = o.device;
  }

  const std::vector<ScoreKeyInfo>& keys() const override { return keys_; }

  torch::Tensor preprocess(const vision::PilImage& image,
                           std::vector<std::string>&) const override {
    return processor_.preprocess(image).pixel_values;
  }

  std::vector<std::vector<double>> score(const torch::Tensor& pixels,
                                         const std::vector<std::string>&) override {
    torch::NoGradGuard no_grad;
    const torch::Tensor embed = l2_normalize(model_->get_image_features(pixels.to(device_)));
    std::vector<std::vector<double>> out;
    for (const auto& head : heads_) {
      const torch::Tensor s =
          head.forward(embed).squeeze(1).to(torch::kCPU, torch::kDouble).contiguous();
      out.emplace_back(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
    }
    return out;
  }

 private:
  vision::ClipImageProcessor processor_;
  models::ClipModel model_{nullptr};
  std::vector<LinearChain> heads_;
  std::vector<ScoreKeyInfo> keys_;
  torch::Device device_ = torch::kCPU;
};

}  // namespace

std::unique_ptr<Scorer> make_aesthetic(const ScorerModels& models, const ScorerOptions& options,
                                       bool v1, bool v2) {
  return std::make_unique<AestheticScorer>(models, options, v1, v2);
}

}  // namespace dro::eval::detail
