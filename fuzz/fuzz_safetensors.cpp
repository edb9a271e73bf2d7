// libFuzzer target: the safetensors reader (io/safetensors.h). The input is a whole file (8-byte
// length, JSON header, data section), opened from a scratch file as dro opens weights, and also the
// input alone as header text for parse_safetensors_header. Rejections are dro::Error; a crash, a
// sanitizer report, another exception escaping, or an accepted file whose tensors do not fit the
// promises below is a finding.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dro/core/error.h"
#include "dro/io/safetensors.h"
#include "fuzz_util.h"

namespace {

using dro::io::TensorInfo;

// What a validated header promises: names sorted and unique, known dtypes, every byte range of
// the size shape x dtype inside the data section, and no two non-empty ranges sharing a byte.
void check_accepted(const std::vector<TensorInfo>& tensors, uint64_t data_size) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    if (i > 0)
      DRO_FUZZ_CHECK(tensors[i - 1].name < t.name, "tensors not sorted/unique at '%s'",
                     t.name.c_str());
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      DRO_FUZZ_CHECK(d >= 0, "tensor '%s' has a negative dimension %lld", t.name.c_str(),
                     static_cast<long long>(d));
      numel *= static_cast<uint64_t>(d);
    }
    DRO_FUZZ_CHECK(t.numel() >= 0 && static_cast<uint64_t>(t.numel()) == numel,
                   "tensor '%s': numel() %lld", t.name.c_str(), static_cast<long long>(t.numel()));
    const size_t elem = dro::io::safetensors_dtype_size(t.dtype);
    DRO_FUZZ_CHECK(t.begin <= t.end && t.end - t.begin == numel * elem,
                   "tensor '%s': range [%llu, %llu) for %llu elements", t.name.c_str(),
                   static_cast<unsigned long long>(t.begin), static_cast<unsigned long long>(t.end),
                   static_cast<unsigned long long>(numel));
    DRO_FUZZ_CHECK(t.end <= data_size, "tensor '%s' ends at %llu past %llu data bytes",
                   t.name.c_str(), static_cast<unsigned long long>(t.end),
                   static_cast<unsigned long long>(data_size));
  }
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : tensors)
    if (t.end > t.begin) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  uint64_t covered = 0;  // end of the ranges so far
  const TensorInfo* last = nullptr;
  for (const TensorInfo* t : by_offset) {
    DRO_FUZZ_CHECK(t->begin >= covered, "tensors '%s' and '%s' overlap", last->name.c_str(),
                   t->name.c_str());
    covered = t->end;
    last = t;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto path = dro::fuzz::scratch_path("model.safetensors");

  // The whole file through SafetensorsFile::open, then every tensor read back.
  dro::fuzz::write_bytes(path, data, size);
  try {
    auto file = dro::io::SafetensorsFile::open(path);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
    check_accepted(file->tensors(), size - 8 - header_len);
    for (const auto& info : file->tensors()) {
      torch::Tensor t = file->get(info.name);
      DRO_FUZZ_CHECK(t.numel() == info.numel() && t.nbytes() == info.end - info.begin,
                     "tensor '%s': get() returned %lld elements", info.name.c_str(),
                     static_cast<long long>(t.numel()));
      DRO_FUZZ_CHECK(t.scalar_type() == dro::io::safetensors_dtype_to_torch(info.dtype),
                     "tensor '%s': dtype", info.name.c_str());
      if (t.numel() > 0) {
        // Touch every byte (a range outside the mapping faults here).
        std::vector<uint8_t> copy(t.nbytes());
        std::memcpy(copy.data(), t.data_ptr(), copy.size());
        if (info.dtype != "F32") (void)file->get(info.name, torch::kFloat32);
      }
    }
  } catch (const dro::Error&) {
  }

  // The input as header text alone, against a data section as long as the input.
  try {
    std::map<std::string, std::string> metadata;
    const std::string text(reinterpret_cast<const char*>(data), size);
    check_accepted(dro::io::parse_safetensors_header(text, size, "fuzz", &metadata), size);
  } catch (const dro::Error&) {
  }
  return 0;
}
