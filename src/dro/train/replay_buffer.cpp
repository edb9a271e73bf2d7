#include "dro/train/replay_buffer.h"

#include "dro/core/error.h"
#include "dro/io/safetensors.h"

namespace dro::train {

ReplayBuffer::ReplayBuffer(int64_t capacity, torch::Device device, torch::Dtype dtype)
    : capacity_(capacity), device_(device), dtype_(dtype) {
  if (capacity <= 0) throw UsageError(cat("[buffer] --buffer-size must be positive, got ", capacity));
}

void ReplayBuffer::commit(const TrajectoryBatch& b) {
  const int64_t B = b.x0.size(0);
  const int64_t T = b.t.size(1);
  auto check = [&](const torch::Tensor& x, const char* name, int64_t dims_with_t) {
    if (!x.defined()) throw UsageError(cat("[buffer] commit without '", name, "'"));
    if (x.size(0) != B) throw UsageError(cat("[buffer] '", name, "' has batch ", x.size(0), ", expected ", B));
    if (dims_with_t && x.size(1) != T)
      throw UsageError(cat("[buffer] '", name, "' has ", x.size(1), " steps, expected ", T));
  };
  check(b.c, "c", 0);
  check(b.xt, "xt", 1);
  check(b.eps, "eps", 1);
  torch::NoGradGuard no_grad;
  auto store = [&](const torch::Tensor& x) -> torch::Tensor {
    if (!x.defined()) return {};
    auto d = torch::isFloatingType(x.scalar_type()) ? x.detach().to(device_, dtype_) : x.detach().to(device_);
    return d.is_same(x) ? d.clone() : d;
  };
  const auto c = store(b.c), x0 = store(b.x0), t = store(b.t), xt = store(b.xt), eps = store(b.eps),
             cp = store(b.c_pooled), ids = store(b.add_time_ids);
  for (int64_t i = 0; i < B; ++i) {
    Row r{c[i], x0[i], t[i], xt[i], eps[i], cp.defined() ? cp[i] : cp, ids.defined() ? ids[i] : ids};
    rows_.push_back(std::move(r));
  }
  while (static_cast<int64_t>(rows_.size()) > capacity_) rows_.pop_front();
}

BufferSample ReplayBuffer::sample(int64_t batch, at::Generator& gen, torch::Device device) const {
  if (rows_.empty()) throw UsageError("[buffer] sample from an empty replay buffer");
  const int64_t N = size();
  const int64_t T = rows_.front().t.size(0);
  torch::Tensor rows = batch <= N ? torch::randperm(N, gen, torch::kLong).slice(0, 0, batch)
                                  : torch::randint(0, N, {batch}, gen, torch::kLong);
  torch::Tensor steps = torch::randint(0, T, {batch}, gen, torch::kLong);
  return gather(rows, steps, device);
}

BufferSample ReplayBuffer::gather(const torch::Tensor& rows, const torch::Tensor& steps,
                                  torch::Device device) const {
  const int64_t b = rows.size(0);
  std::vector<torch::Tensor> c, x0, t, xt, eps, cp, ids;
  auto r_acc = rows.accessor<int64_t, 1>();
  auto s_acc = steps.accessor<int64_t, 1>();
  for (int64_t i = 0; i < b; ++i) {
    const int64_t n = r_acc[i], k = s_acc[i];
    if (n < 0 || n >= size()) throw UsageError(cat("[buffer] row ", n, " out of range"));
    const Row& r = rows_[n];
    c.push_back(r.c);
    x0.push_back(r.x0);
    t.push_back(r.t[k]);
    xt.push_back(r.xt[k]);
    eps.push_back(r.eps[k]);
    if (r.c_pooled.defined()) cp.push_back(r.c_pooled);
    if (r.add_time_ids.defined()) ids.push_back(r.add_time_ids);
  }
  BufferSample s;
  s.c = torch::stack(c).to(device);
  s.x0 = torch::stack(x0).to(device);
  s.t = torch::stack(t).to(device);
  s.xt = torch::stack(xt).to(device);
  s.eps = torch::stack(eps).to(device);
  if (!cp.empty()) s.c_pooled = torch::stack(cp).to(device);
  if (!ids.empty()) s.add_time_ids = torch::stack(ids).to(device);
  s.rows = rows;
  s.steps = steps;
  return s;
}

io::NamedTensors ReplayBuffer::to_tensors() const {
  io::NamedTensors tensors;
  if (rows_.empty()) return tensors;
  auto stack = [&](torch::Tensor Row::*field) {
    std::vector<torch::Tensor> v;
    for (const auto& r : rows_) v.push_back((r.*field).to(torch::kCPU));
    return torch::stack(v);
  };
  tensors = {{"c", stack(&Row::c)}, {"x0", stack(&Row::x0)}, {"t", stack(&Row::t)},
             {"xt", stack(&Row::xt)}, {"eps", stack(&Row::eps)}};
  if (rows_.front().c_pooled.defined()) tensors.emplace_back("c_pooled", stack(&Row::c_pooled));
  if (rows_.front().add_time_ids.defined()) tensors.emplace_back("add_time_ids", stack(&Row::add_time_ids));
  return tensors;
}

void ReplayBuffer::from_tensors(const std::map<std::string, torch::Tensor>& f, const std::string& where) {
  rows_.clear();
  if (f.empty()) return;
  for (const char* k : {"c", "x0", "t", "xt", "eps"})
    if (!f.count(k)) throw IoError(cat("[buffer] ", where, ": no tensor '", k, "'"));
  TrajectoryBatch b;
  b.c = f.at("c");
  b.x0 = f.at("x0");
  b.t = f.at("t");
  b.xt = f.at("xt");
  b.eps = f.at("eps");
  if (f.count("c_pooled")) b.c_pooled = f.at("c_pooled");
  if (f.count("add_time_ids")) b.add_time_ids = f.at("add_time_ids");
  const int64_t saved_capacity = capacity_;
  capacity_ = std::max<int64_t>(capacity_, b.x0.size(0));
  commit(b);
  capacity_ = saved_capacity;
  while (static_cast<int64_t>(rows_.size()) > capacity_) rows_.pop_front();
}

void ReplayBuffer::save(const std::filesystem::path& path) const {
  io::save_safetensors(path, to_tensors(), {{"capacity", std::to_string(capacity_)},
                                            {"rows", std::to_string(rows_.size())}});
}

void ReplayBuffer::load(const std::filesystem::path& path) {
  from_tensors(io::load_safetensors(path), path.string());
}

}  // namespace dro::train
