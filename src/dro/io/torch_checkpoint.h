// PyTorch checkpoints (torch.save files: .pt, .pth, .bin) read without executing anything.
//
// A torch.save file (torch >= 1.6) is an uncompressed ZIP archive: `<folder>/data.pkl` is a pickle
// of the saved object in which every tensor storage is a persistent id, `<folder>/data/<key>` holds
// the raw bytes of storage <key>, `<folder>/byteorder` (torch >= 2) says "little". <folder> is the
// file stem for torch 1.x and "archive" for torch 2. The pickle runs on a restricted machine that
// knows plain containers, numbers, strings and the few torch globals that rebuild tensors; any
// other global is refused by name, so nothing in a file can run code.
// Not here: the legacy pre-1.6 format, TorchScript archives (torch.jit.save), sparse, quantized and
// big-endian tensors, objects of user classes (Lightning callbacks, argparse.Namespace ...).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <torch/torch.h>

namespace dro::io {

// A dict key of a checkpoint: Python int or str (other key types are refused on load).
using CheckpointKey = std::variant<int64_t, std::string>;

// One value of the unpickled object. Copies are shallow: containers share their items, and one
// node may be reached along several paths (the pickle memo), so a walk of the whole tree can
// visit a node many times. Sets and frozensets read as lists. Tensors view the mapped file.
class CheckpointValue {
 public:
  enum class Kind { None, Bool, Int, Float, String, Bytes, Tensor, List, Tuple, Dict, Global };

  CheckpointValue() = default;  // None
  static CheckpointValue boolean(bool v);
  static CheckpointValue integer(int64_t v);
  static CheckpointValue real(double v);
  static CheckpointValue string(std::string v);
  static CheckpointValue bytes(std::string v);
  static CheckpointValue tensor(torch::Tensor t);

  Kind kind() const { return kind_; }
  bool is(Kind k) const { return kind_ == k; }
  const char* kind_name() const;

  // Accessors throw IoError naming the kind found when the value is of another kind.
  bool as_bool() const;
  int64_t as_int() const;                // Int or Bool
  double as_float() const;               // Float or Int
  const std::string& as_string() const;  // String, Bytes, or the dotted name of a Global
  const torch::Tensor& as_tensor() const;
  // List or Tuple items; Dict entries in insertion order.
  const std::vector<CheckpointValue>& items() const;
  const std::vector<std::pair<CheckpointKey, CheckpointValue>>& entries() const;
  // The entry of a Dict under a string key, or nullptr (also when this is not a Dict).
  const CheckpointValue* find(const std::string& key) const;

 private:
  friend struct CheckpointNodeAccess;
  struct Node;
  Kind kind_ = Kind::None;
  int64_t int_ = 0;
  double float_ = 0.0;
  std::shared_ptr<Node> node_;
};

// Nesting deeper than this is refused (a nesting bomb would otherwise exhaust the stack).
constexpr int kMaxCheckpointDepth = 200;
// data.pkl larger than this is refused: real ones are kilobytes to a few megabytes.
constexpr uint64_t kMaxPickleBytes = 512ull << 20;

// Reads a torch.save file (ZIP format) into a value tree. IoError naming the file on anything it
// cannot read or refuses: a global outside the allow-list, a malformed pickle, an out-of-range
// tensor, a compressed or truncated archive, the legacy format.
CheckpointValue load_torch_checkpoint(const std::filesystem::path& path);

// Runs the restricted pickle machine on `pickle` alone (persistent ids, i.e. storages, are
// refused). Errors are prefixed with `where`. Exposed for tests and fuzzing.
CheckpointValue unpickle_restricted(std::string_view pickle, const std::string& where);

// The state dict of a checkpoint and where in it it was found.
struct TorchStateDict {
  std::map<std::string, torch::Tensor> tensors;
  std::string key;                   // nested key used ("" for the top-level dict)
  std::vector<std::string> skipped;  // non-tensor entries left out, e.g. "epoch"
};

// Finds the state dict in `root`: with `key` given, the dict under that top-level key; else the
// top-level dict when any of its values is a tensor; else the first dict of tensors under
// 'state_dict', 'model', 'module', 'model_state_dict', 'ema' (in that order). Non-tensor entries
// are skipped. IoError naming `where` and listing the top-level keys when there is none.
TorchStateDict find_torch_state_dict(const CheckpointValue& root, const std::string& where,
                                     const std::string& key = "");

// load_torch_checkpoint + find_torch_state_dict.
TorchStateDict read_torch_state_dict(const std::filesystem::path& path,
                                     const std::string& key = "");
std::map<std::string, torch::Tensor> torch_state_dict(const std::filesystem::path& path);

// True when the file starts like a torch.save ZIP archive or a legacy pickle checkpoint (by its
// first bytes, not its name).
bool looks_like_torch_checkpoint(const std::filesystem::path& path);

}  // namespace dro::io
