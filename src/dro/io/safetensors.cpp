#include "dro/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"

namespace dro::io {
namespace fs = std::filesystem;

namespace {

struct DtypeEntry {
  const char* name;
  size_t size;
  torch::Dtype dtype;
};

const DtypeEntry kDtypes[] = {
    {"F64", 8, torch::kFloat64}, {"F32", 4, torch::kFloat32}, {"F16", 2, torch::kFloat16},
    {"BF16", 2, torch::kBFloat16}, {"I64", 8, torch::kInt64}, {"I32", 4, torch::kInt32},
    {"I16", 2, torch::kInt16},   {"I8", 1, torch::kInt8},     {"U8", 1, torch::kUInt8},
    {"BOOL", 1, torch::kBool},
};

const DtypeEntry* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

bool is_known_unsupported(const std::string& name) {
  return name == "U16" || name == "U32" || name == "U64" || name == "F8_E4M3" ||
         name == "F8_E5M2";
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

torch::Dtype safetensors_dtype_to_torch(const std::string& name) {
  if (const auto* d = find_dtype(name)) return d->dtype;
  throw IoError(cat("[safetensors] dtype '", name, "' is not supported by this LibTorch"));
}

size_t safetensors_dtype_size(const std::string& name) {
  if (const auto* d = find_dtype(name)) return d->size;
  throw IoError(cat("[safetensors] unknown dtype '", name, "'"));
}

std::string torch_dtype_to_safetensors(torch::Dtype dtype) {
  for (const auto& d : kDtypes)
    if (d.dtype == dtype) return d.name;
  throw UsageError(cat("[safetensors] cannot store tensors of dtype ", c10::toString(dtype)));
}

std::vector<TensorInfo> parse_safetensors_header(const std::string& json_text, uint64_t data_size,
                                                 const std::string& where,
                                                 std::map<std::string, std::string>* metadata) {
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e400
    throw IoError(cat("[safetensors] ", where, ": header is not valid JSON (", e.what(),
                      "); not a safetensors file or a corrupt download?"));
  }
  if (!header.is_object())
    throw IoError(cat("[safetensors] ", where, ": header must be a JSON object, found ",
                      header.type_name()));

  std::vector<TensorInfo> out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object())
        throw IoError(cat("[safetensors] ", where, ": __metadata__ must be an object of strings"));
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          throw IoError(cat("[safetensors] ", where, ": __metadata__ value for '", m.key(),
                            "' must be a string, found ", m.value().type_name()));
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string ctx = cat("[safetensors] ", where, ": tensor '", name, "'");
    if (!v.is_object()) throw IoError(cat(ctx, ": entry must be an object"));
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!v.contains(field)) throw IoError(cat(ctx, ": missing field '", field, "'"));
    if (!v["dtype"].is_string()) throw IoError(cat(ctx, ": dtype must be a string"));
    TensorInfo info;
    info.name = name;
    info.dtype = v["dtype"].get<std::string>();
    const DtypeEntry* d = find_dtype(info.dtype);
    if (!d) {
      if (is_known_unsupported(info.dtype))
        throw IoError(cat(ctx, ": dtype ", info.dtype, " is valid safetensors but LibTorch ",
                          "cannot hold it; convert the file to F32/F16/BF16"));
      throw IoError(cat(ctx, ": unknown dtype '", info.dtype,
                        "' (expected one of F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)"));
    }
    if (!v["shape"].is_array()) throw IoError(cat(ctx, ": shape must be an array"));
    uint64_t numel = 1;
    uint64_t nonzero = 1;  // product of the non-zero dims: bounded also when a 0 makes numel 0
    for (const auto& s : v["shape"]) {
      if (!s.is_number_unsigned())
        throw IoError(cat(ctx, ": shape entries must be non-negative integers, found ", s.dump()));
      const uint64_t dim = s.get<uint64_t>();
      if (dim != 0 && nonzero > std::numeric_limits<uint64_t>::max() / 16 / dim)
        throw IoError(cat(ctx, ": shape ", v["shape"].dump(), " is too large"));
      if (dim != 0) nonzero *= dim;
      numel *= dim;
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw IoError(cat(ctx, ": data_offsets must be two non-negative integers, found ", off.dump()));
    info.begin = off[0].get<uint64_t>();
    info.end = off[1].get<uint64_t>();
    if (info.end < info.begin)
      throw IoError(cat(ctx, ": data_offsets [", info.begin, ", ", info.end, "] end before they begin"));
    const uint64_t expected = numel * d->size;
    if (info.end - info.begin != expected)
      throw IoError(cat(ctx, ": shape ", v["shape"].dump(), " x ", info.dtype, " needs ", expected,
                        " bytes but data_offsets [", info.begin, ", ", info.end, "] span ",
                        info.end - info.begin));
    if (info.end > data_size)
      throw IoError(cat(ctx, ": ends at data byte ", info.end, " but the file has only ", data_size,
                        " data bytes (truncated download?)"));
    out.push_back(std::move(info));
  }
  // Ranges must not overlap. Empty tensors hold no bytes and are left out: one between two
  // ranges would hide their overlap from the check of neighbours.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : out)
    if (t.end > t.begin) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo* a = by_offset[i - 1];
    const TensorInfo* b = by_offset[i];
    if (b->begin < a->end && b->end > b->begin)
      throw IoError(cat("[safetensors] ", where, ": tensors '", a->name, "' [", a->begin, ", ",
                        a->end, ") and '", b->name, "' [", b->begin, ", ", b->end,
                        ") overlap (corrupt file?)"));
  }
  std::sort(out.begin(), out.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  return out;
}

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t length = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) ::munmap(addr, length);
  }
};

SafetensorsFile::~SafetensorsFile() = default;

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const fs::path& path) {
  const std::string where = path.string();
  const std::string ext = path.extension().string();
  if (ext == ".bin" || ext == ".ckpt" || ext == ".pt" || ext == ".pth")
    throw IoError(cat("[safetensors] ", where, ": this is a PyTorch checkpoint, not a safetensors file; ",
                      "dro reads it through its safe checkpoint reader (io/torch_checkpoint.h), or ",
                      "convert it once with `dro convert ", where, " --out FILE.safetensors`"));
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw IoError(cat("[safetensors] ", where, ": cannot open: ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw IoError(cat("[safetensors] ", where, ": cannot stat: ", std::strerror(errno)));
  }
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = static_cast<uint64_t>(st.st_size);
  if (file->size_ < 8) {
    ::close(fd);
    throw IoError(cat("[safetensors] ", where, ": file has ", file->size_,
                      " bytes, fewer than the 8-byte header length (empty or truncated download?)"));
  }
  file->mapping_ = std::make_shared<Mapping>();
  file->mapping_->length = file->size_;
  // Private writable mapping: tensors can be used as ordinary tensors; pages are copied only if
  // someone writes to them, and the file itself is never modified.
  file->mapping_->addr =
      ::mmap(nullptr, file->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (file->mapping_->addr == MAP_FAILED)
    throw IoError(cat("[safetensors] ", where, ": cannot map: ", std::strerror(errno)));

  const auto* bytes = static_cast<const uint8_t*>(file->mapping_->addr);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxSafetensorsHeader)
    throw IoError(cat("[safetensors] ", where, ": header length ", header_len,
                      " exceeds the limit of ", kMaxSafetensorsHeader,
                      " bytes (not a safetensors file, or corrupt?)"));
  if (8 + header_len > file->size_)
    throw IoError(cat("[safetensors] ", where, ": header claims ", header_len,
                      " bytes but the file has only ", file->size_ - 8,
                      " after the length field (truncated download?)"));
  file->data_start_ = 8 + header_len;
  const std::string header(reinterpret_cast<const char*>(bytes + 8), header_len);
  file->tensors_ = parse_safetensors_header(header, file->size_ - file->data_start_, where,
                                            &file->metadata_);
  for (size_t i = 0; i < file->tensors_.size(); ++i) file->index_[file->tensors_[i].name] = i;
  return file;
}

bool SafetensorsFile::contains(const std::string& name) const { return index_.count(name) > 0; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    throw IoError(cat("[safetensors] ", path_.string(), ": no tensor named '", name, "'"));
  return tensors_[it->second];
}

torch::Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorInfo& ti = info(name);
  const auto* d = find_dtype(ti.dtype);
  auto* ptr = static_cast<uint8_t*>(mapping_->addr) + data_start_ + ti.begin;
  auto opts = torch::TensorOptions().dtype(d->dtype);
  if (ti.numel() == 0) return torch::empty(ti.shape, opts);
  if (reinterpret_cast<uintptr_t>(ptr) % d->size != 0) {
    // Misaligned for the element type: copy through an aligned buffer.
    torch::Tensor t = torch::empty(ti.shape, opts);
    std::memcpy(t.data_ptr(), ptr, ti.end - ti.begin);
    return t;
  }
  auto keep = mapping_;
  return torch::from_blob(ptr, ti.shape, [keep](void*) {}, opts);
}

torch::Tensor SafetensorsFile::get(const std::string& name, torch::Dtype dtype) const {
  torch::Tensor t = get(name);
  return t.scalar_type() == dtype ? t : t.to(dtype);
}

std::map<std::string, torch::Tensor> load_safetensors(const fs::path& path) {
  auto file = SafetensorsFile::open(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& ti : file->tensors()) out[ti.name] = file->get(ti.name);
  return out;
}

void save_safetensors(const fs::path& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  struct Entry {
    std::string name;
    torch::Tensor data;  // contiguous CPU
    std::string dtype;
    size_t elem;
  };
  std::vector<Entry> entries;
  std::map<std::string, int> seen;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__" || name.empty())
      throw UsageError(cat("[safetensors] ", path.string(), ": invalid tensor name '", name, "'"));
    if (seen[name]++)
      throw UsageError(cat("[safetensors] ", path.string(), ": tensor '", name, "' given twice"));
    if (!t.defined())
      throw UsageError(cat("[safetensors] ", path.string(), ": tensor '", name, "' is undefined"));
    Entry e;
    e.name = name;
    e.dtype = torch_dtype_to_safetensors(t.scalar_type());
    e.elem = safetensors_dtype_size(e.dtype);
    e.data = t.detach().to(torch::kCPU).contiguous();
    entries.push_back(std::move(e));
  }
  // Reference order: larger element types first (keeps data aligned), then by name.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.elem != b.elem ? a.elem > b.elem : a.name < b.name;
  });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  for (const auto& e : entries) {
    const uint64_t n = e.data.numel() * e.elem;
    header[e.name] = {{"dtype", e.dtype},
                      {"shape", e.data.sizes().vec()},
                      {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  write_atomically(path, [&](std::ostream& out) {
    uint64_t len = text.size();
    char len_bytes[8];
    for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);
    out.write(len_bytes, 8);
    out.write(text.data(), text.size());
    for (const auto& e : entries)
      out.write(static_cast<const char*>(e.data.data_ptr()), e.data.numel() * e.elem);
  });
}

}  // namespace dro::io
