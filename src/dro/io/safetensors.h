// safetensors files: a memory-mapped, fully validated reader and an atomic writer.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"__metadata__": {str: str}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}, ...},
// then the tensor bytes (offsets are relative to the end of the header).
// Not here: PyTorch checkpoints (.bin/.pt/.pth), read by io/torch_checkpoint.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace dro::io {

struct TensorInfo {
  std::string name;
  std::string dtype;  // safetensors spelling: "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte range inside the data section
  uint64_t end = 0;
  int64_t numel() const;
};

// Largest header a file may declare; real SDXL UNet headers are ~200 KB.
constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;

// torch dtype for a safetensors dtype name; IoError for names LibTorch cannot hold.
torch::Dtype safetensors_dtype_to_torch(const std::string& name);
std::string torch_dtype_to_safetensors(torch::Dtype dtype);
size_t safetensors_dtype_size(const std::string& name);

class SafetensorsFile {
 public:
  // Maps and validates the whole header; IoError naming the file and the tensor on any problem.
  static std::shared_ptr<SafetensorsFile> open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  uint64_t file_size() const { return size_; }

  // The tensor as stored, viewing the mapped bytes (no copy; copy-on-write if modified). The view
  // keeps the mapping alive. A misaligned tensor is copied.
  torch::Tensor get(const std::string& name) const;
  // Converted to `dtype` (a copy only when the dtype differs).
  torch::Tensor get(const std::string& name, torch::Dtype dtype) const;

 private:
  SafetensorsFile() = default;
  struct Mapping;
  std::filesystem::path path_;
  std::shared_ptr<Mapping> mapping_;
  uint64_t size_ = 0;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Validates a header (the JSON text) against a data section of `data_size` bytes and returns the
// tensors sorted by name; throws IoError prefixed with `where`. Exposed for tests and fuzzing.
std::vector<TensorInfo> parse_safetensors_header(const std::string& json_text, uint64_t data_size,
                                                 const std::string& where,
                                                 std::map<std::string, std::string>* metadata);

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes tensors (any device; copied to CPU as needed) with string metadata, laid out as the
// reference writer does (header padded to 8 bytes with spaces, tensors ordered by dtype size
// descending then name), atomically: temporary file, flush, rename.
void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads every tensor of a file into a name -> tensor map (views of the mapping).
std::map<std::string, torch::Tensor> load_safetensors(const std::filesystem::path& path);

}  // namespace dro::io
