#include "dro/serve/study.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "dro/core/error.h"
#include "dro/eval/protocol.h"

namespace dro::serve {
namespace fs = std::filesystem;

io::OrderedJson Vote::to_json() const {
  return {{"v", 1},         {"time", time},       {"trial", trial}, {"session", session}, {"prompt", prompt},
          {"seed", seed},   {"left", left},       {"right", right}, {"winner", winner}};
}

Vote Vote::from_json(const io::OrderedJson& j, const std::string& where) {
  Vote v;
  v.trial = io::get_or<std::string>(j, "trial", "", where);
  v.session = io::get_or<std::string>(j, "session", "", where);
  v.prompt = io::get_required<std::string>(j, "prompt", where);
  v.seed = io::get_or<uint64_t>(j, "seed", 0, where);
  v.left = io::get_required<std::string>(j, "left", where);
  v.right = io::get_required<std::string>(j, "right", where);
  v.winner = io::get_required<std::string>(j, "winner", where);
  v.time = io::get_or<int64_t>(j, "time", 0, where);
  if (v.winner != v.left && v.winner != v.right)
    throw UsageError(cat("[study] ", where, ": winner '", v.winner, "' is neither left nor right"));
  return v;
}

bool coin_flip() {
  static std::mutex m;
  static std::random_device rd;
  std::lock_guard<std::mutex> lock(m);
  return (rd() & 1u) != 0;
}

StudyLog::StudyLog(const fs::path& file) : log_(file) {
  const LogContents c = read_log(file);
  for (size_t i = 0; i < c.records.size(); ++i) {
    try {
      votes_.push_back(Vote::from_json(c.records[i], cat(file.string(), " record ", i + 1)));
    } catch (const Error&) {
      // A record of a future format, or edited by hand: left out of the results.
    }
  }
}

void StudyLog::open_trial(const Trial& t, size_t max_open) {
  std::lock_guard<std::mutex> lock(mutex_);
  open_[t.id] = t;
  open_order_.push_back(t.id);
  while (open_order_.size() > max_open) {
    open_.erase(open_order_.front());
    open_order_.erase(open_order_.begin());
  }
}

std::optional<Trial> StudyLog::find_trial(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = open_.find(id);
  if (it == open_.end()) return std::nullopt;
  return it->second;
}

Vote StudyLog::vote(const std::string& trial, const std::string& choice, const std::string& session) {
  if (choice != "left" && choice != "right")
    throw UsageError(cat("[study] field 'choice' must be \"left\" or \"right\" (found \"", choice, "\")"));
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = open_.find(trial);
  if (it == open_.end())
    throw UsageError("[study] unknown or already voted trial (trials are kept until voted on, in memory)");
  Vote v;
  v.trial = trial;
  v.session = session;
  v.prompt = it->second.prompt;
  v.seed = it->second.seed;
  v.left = it->second.left;
  v.right = it->second.right;
  v.winner = choice == "left" ? v.left : v.right;
  v.time = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
               .count();
  log_.append(v.to_json());  // on disk before the trial closes and the vote is acknowledged
  open_.erase(it);
  open_order_.erase(std::remove(open_order_.begin(), open_order_.end(), trial), open_order_.end());
  votes_.push_back(v);
  return v;
}

std::vector<Vote> StudyLog::votes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return votes_;
}

io::OrderedJson study_results(const std::vector<Vote>& votes, int64_t bootstrap, uint64_t seed) {
  struct PairVotes {
    std::vector<double> a, b;  // one unit per vote: 1 for the winner, 0 for the other
    std::vector<std::string> prompts;  // first-vote order
    std::map<std::string, std::pair<int64_t, int64_t>> per_prompt;  // votes, a's wins
  };
  std::map<std::pair<std::string, std::string>, PairVotes> pairs;
  for (const auto& v : votes) {
    const std::string a = std::min(v.left, v.right), b = std::max(v.left, v.right);
    if (a == b) continue;
    auto& p = pairs[{a, b}];
    const bool a_won = v.winner == a;
    p.a.push_back(a_won ? 1 : 0);
    p.b.push_back(a_won ? 0 : 1);
    auto [it, fresh] = p.per_prompt.try_emplace(v.prompt, 0, 0);
    if (fresh) p.prompts.push_back(v.prompt);
    ++it->second.first;
    if (a_won) ++it->second.second;
  }
  eval::ProtocolOptions o;
  o.bootstrap = bootstrap;
  o.seed = seed;
  io::OrderedJson out;
  out["votes"] = static_cast<int64_t>(votes.size());
  out["unit"] = "vote";
  out["pairs"] = io::OrderedJson::array();
  for (const auto& [names, p] : pairs) {
    const eval::WinRate w = eval::win_rate(p.a, p.b, o);
    io::OrderedJson j{{"a", names.first},   {"b", names.second}, {"votes", w.units},      {"a_wins", w.wins},
                      {"b_wins", w.losses}, {"win_rate", w.rate}, {"ci_low", w.ci_low}, {"ci_high", w.ci_high},
                      {"p_value", w.p_value}};
    j["per_prompt"] = io::OrderedJson::array();
    for (const auto& prompt : p.prompts) {
      const auto& [n, wins] = p.per_prompt.at(prompt);
      j["per_prompt"].push_back({{"prompt", prompt}, {"votes", n}, {"a_wins", wins}});
    }
    out["pairs"].push_back(std::move(j));
  }
  return out;
}

}  // namespace dro::serve
