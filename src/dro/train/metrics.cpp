#include "dro/train/metrics.h"

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"
#include "dro/io/json.h"
#include "dro/train/train_config.h"

namespace dro::train {
namespace fs = std::filesystem;

Metrics::Metrics(const TrainConfig& cfg, int64_t step) {
  fs::create_directories(cfg.logdir);
  tb_ = std::make_unique<TensorBoardWriter>(cfg.logdir);
  const fs::path metrics = fs::path(cfg.logdir) / "metrics.jsonl";
  if (cfg.resume) {
    // The interrupted run may have logged past the state it left; those steps are logged again.
    tb_->add_session_start(step + 1);
    drop_rows_after(metrics, step);
  }
  jsonl_.open(metrics, std::ios::app);
  if (!jsonl_) throw IoError(cat("[train] cannot open ", metrics.string(), " for appending"));
  io::write_json(fs::path(cfg.logdir) / "training_config.json", cfg.to_json());
  if (step == 0) tb_->add_text("training_config.json", cfg.to_json().dump(2), 0);
}

void Metrics::log(int64_t micro_step, const StepRecord& r, int64_t buffer_size) {
  io::OrderedJson j;
  j["step"] = micro_step;
  j["opt_step"] = r.opt_step;
  for (const auto& [k, m] : r.means) {
    j["loss/" + k] = m;
    tb_->add_scalar("loss/" + k, m, micro_step);
  }
  j["lr"] = r.lr;
  j["grad_norm"] = r.grad_norm;
  j["buffer_size"] = buffer_size;
  tb_->add_scalar("params/lr", r.lr, micro_step);
  tb_->add_scalar("params/grad_norm", r.grad_norm, micro_step);
  tb_->add_scalar("params/buffer_size", static_cast<double>(buffer_size), micro_step);
  tb_->flush();
  jsonl_ << j.dump() << "\n";
  jsonl_.flush();
  if (!jsonl_) throw IoError("[train] writing metrics.jsonl failed (disk full?)");
}

void Metrics::drop_rows_after(const fs::path& file, int64_t last) {
  if (!fs::exists(file)) return;
  std::ifstream in(file);
  std::string line, kept;
  int64_t dropped = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    int64_t s = -1;
    try {
      const auto j = io::OrderedJson::parse(line);
      s = j.value("step", int64_t(-1));
    } catch (const std::exception&) {
      ++dropped;  // a line torn by the crash
      continue;
    }
    if (s > last) {
      ++dropped;
      continue;
    }
    kept += line + "\n";
  }
  if (dropped) io::write_file_atomically(file, kept);
}

}  // namespace dro::train
