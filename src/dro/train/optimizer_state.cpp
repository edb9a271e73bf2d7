#include "dro/train/optimizer_state.h"

#include <sstream>
#include <type_traits>

#include "dro/core/error.h"

namespace dro::train {
namespace {
// LibTorch 1.x keys optimizer state by the TensorImpl address as a string, 2.x by the address.
using StateKey = std::decay_t<decltype(std::declval<torch::optim::AdamW&>().state())>::key_type;
template <typename Key = StateKey>
Key key_of(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream os;  // as c10::guts::to_string printed the address in 1.x
    os << p.unsafeGetTensorImpl();
    return os.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}
}  // namespace

io::NamedTensors adamw_state(torch::optim::AdamW& opt, const std::vector<torch::Tensor>& params) {
  io::NamedTensors out;
  auto& state = opt.state();
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = state.find(key_of(params[i]));
    if (it == state.end()) continue;
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    const std::string n = std::to_string(i);
    out.emplace_back("exp_avg." + n, s.exp_avg());
    out.emplace_back("exp_avg_sq." + n, s.exp_avg_sq());
    out.emplace_back("step." + n, torch::tensor(s.step(), torch::kInt64));
  }
  return out;
}

void set_adamw_state(torch::optim::AdamW& opt, const std::vector<torch::Tensor>& params,
                     const std::map<std::string, torch::Tensor>& tensors, const std::string& where) {
  auto& state = opt.state();
  state.clear();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string n = std::to_string(i);
    auto a = tensors.find("exp_avg." + n);
    if (a == tensors.end()) continue;
    auto b = tensors.find("exp_avg_sq." + n);
    auto s = tensors.find("step." + n);
    if (b == tensors.end() || s == tensors.end())
      throw IoError(cat("[state] ", where, ": incomplete optimiser state for parameter ", i));
    if (a->second.sizes() != params[i].sizes())
      throw IoError(cat("[state] ", where, ": optimiser state ", i, " has shape ", a->second.sizes(),
                        " but the parameter has ", params[i].sizes(), " (another model?)"));
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(s->second.item<int64_t>());
    st->exp_avg(a->second.to(params[i].device(), params[i].scalar_type()).clone());
    st->exp_avg_sq(b->second.to(params[i].device(), params[i].scalar_type()).clone());
    state[key_of(params[i])] = std::move(st);
  }
}

}  // namespace dro::train
