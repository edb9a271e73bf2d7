#include "dro/io/torch_checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <unordered_map>

#include "dro/core/error.h"
#include "dro/text/unicode.h"

namespace dro::io {
namespace fs = std::filesystem;

namespace {

// One storage record of the archive (`<folder>/data/<key>`), viewed in the mapping.
struct StorageBytes {
  std::string key;
  uint8_t* data = nullptr;
  uint64_t nbytes = 0;  // as declared by the pickle (the record may hold more)
  torch::Dtype dtype = torch::kUInt8;
  bool untyped = false;                // torch.UntypedStorage: numel counts bytes
  std::shared_ptr<void> keep;          // the mapping
  std::map<int, torch::Tensor> views;  // 1-D view per dtype, made once so tied tensors share it
};

}  // namespace

struct CheckpointValue::Node {
  std::string text;                       // String, Bytes, Global (dotted name)
  torch::Tensor tensor;                   // Tensor
  std::shared_ptr<StorageBytes> storage;  // set when the Tensor is a bare storage
  std::vector<CheckpointValue> items;     // List, Tuple
  std::vector<std::pair<CheckpointKey, CheckpointValue>> entries;  // Dict
  std::map<CheckpointKey, size_t> index;  // Dict: key -> position in entries
  bool sealed = false;                    // placed inside another container: no longer modified
  int depth = 0;                          // nesting below this container
};

// Construction and mutation of values, for the unpickler only.
struct CheckpointNodeAccess {
  using Node = CheckpointValue::Node;
  static CheckpointValue make(CheckpointValue::Kind kind) {
    CheckpointValue v;
    v.kind_ = kind;
    v.node_ = std::make_shared<CheckpointValue::Node>();
    return v;
  }
  static CheckpointValue::Node* node(const CheckpointValue& v) { return v.node_.get(); }
};

using Kind = CheckpointValue::Kind;
using Node = CheckpointNodeAccess::Node;

// --- CheckpointValue ---------------------------------------------------------------------------

CheckpointValue CheckpointValue::boolean(bool v) {
  CheckpointValue out;
  out.kind_ = Kind::Bool;
  out.int_ = v ? 1 : 0;
  return out;
}

CheckpointValue CheckpointValue::integer(int64_t v) {
  CheckpointValue out;
  out.kind_ = Kind::Int;
  out.int_ = v;
  return out;
}

CheckpointValue CheckpointValue::real(double v) {
  CheckpointValue out;
  out.kind_ = Kind::Float;
  out.float_ = v;
  return out;
}

CheckpointValue CheckpointValue::string(std::string v) {
  CheckpointValue out = CheckpointNodeAccess::make(Kind::String);
  out.node_->text = std::move(v);
  return out;
}

CheckpointValue CheckpointValue::bytes(std::string v) {
  CheckpointValue out = CheckpointNodeAccess::make(Kind::Bytes);
  out.node_->text = std::move(v);
  return out;
}

CheckpointValue CheckpointValue::tensor(torch::Tensor t) {
  CheckpointValue out = CheckpointNodeAccess::make(Kind::Tensor);
  out.node_->tensor = std::move(t);
  return out;
}

const char* CheckpointValue::kind_name() const {
  switch (kind_) {
    case Kind::None:
      return "None";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::Float:
      return "float";
    case Kind::String:
      return "str";
    case Kind::Bytes:
      return "bytes";
    case Kind::Tensor:
      return node_ && node_->storage ? "storage" : "tensor";
    case Kind::List:
      return "list";
    case Kind::Tuple:
      return "tuple";
    case Kind::Dict:
      return "dict";
    case Kind::Global:
      return "global";
  }
  return "?";
}

namespace {

[[noreturn]] void wrong_kind(const CheckpointValue& v, const char* wanted) {
  throw IoError(cat("[checkpoint] expected a ", wanted, " value, found a ", v.kind_name()));
}

}  // namespace

bool CheckpointValue::as_bool() const {
  if (kind_ != Kind::Bool) wrong_kind(*this, "bool");
  return int_ != 0;
}

int64_t CheckpointValue::as_int() const {
  if (kind_ != Kind::Int && kind_ != Kind::Bool) wrong_kind(*this, "int");
  return int_;
}

double CheckpointValue::as_float() const {
  if (kind_ == Kind::Int) return static_cast<double>(int_);
  if (kind_ != Kind::Float) wrong_kind(*this, "float");
  return float_;
}

const std::string& CheckpointValue::as_string() const {
  if (kind_ != Kind::String && kind_ != Kind::Bytes && kind_ != Kind::Global)
    wrong_kind(*this, "str");
  return node_->text;
}

const torch::Tensor& CheckpointValue::as_tensor() const {
  if (kind_ != Kind::Tensor) wrong_kind(*this, "tensor");
  return node_->tensor;
}

const std::vector<CheckpointValue>& CheckpointValue::items() const {
  if (kind_ != Kind::List && kind_ != Kind::Tuple) wrong_kind(*this, "list or tuple");
  return node_->items;
}

const std::vector<std::pair<CheckpointKey, CheckpointValue>>& CheckpointValue::entries() const {
  if (kind_ != Kind::Dict) wrong_kind(*this, "dict");
  return node_->entries;
}

const CheckpointValue* CheckpointValue::find(const std::string& key) const {
  if (kind_ != Kind::Dict) return nullptr;
  auto it = node_->index.find(CheckpointKey(key));
  return it == node_->index.end() ? nullptr : &node_->entries[it->second].second;
}

namespace {

// --- allowed globals ---------------------------------------------------------------------------

enum class Callee {
  OrderedDict,
  RebuildTensor,     // torch._utils._rebuild_tensor(storage, offset, size, stride)
  RebuildTensorV2,   // (storage, offset, size, stride, requires_grad, hooks[, metadata])
  RebuildTensorV3,   // (..., hooks, dtype[, metadata]): torch 2 dtypes without a storage class
  RebuildParameter,  // (data, requires_grad, hooks[, state])
  Set,               // set / frozenset: read as a list
  Bytes,             // bytes(): how protocol 2 writes b''
  CodecsEncode,      // _codecs.encode(str, 'latin1'): how protocol 2 writes other bytes
  TorchSize,         // torch.Size(tuple)
  StorageType,       // torch.FloatStorage ... (persistent ids only)
  Dtype,             // torch.float32 ... (_rebuild_tensor_v3 only)
};

struct AllowedGlobal {
  Callee callee;
  // StorageType: its element type (none: untyped); Dtype: the type (none: LibTorch lacks it).
  std::optional<torch::Dtype> dtype;
};

const std::map<std::string, AllowedGlobal>& allowed_globals() {
  static const std::map<std::string, AllowedGlobal> table = [] {
    std::map<std::string, AllowedGlobal> t;
    t["collections.OrderedDict"] = {Callee::OrderedDict, std::nullopt};
    t["torch._utils._rebuild_tensor"] = {Callee::RebuildTensor, std::nullopt};
    t["torch._utils._rebuild_tensor_v2"] = {Callee::RebuildTensorV2, std::nullopt};
    t["torch._utils._rebuild_tensor_v3"] = {Callee::RebuildTensorV3, std::nullopt};
    t["torch._utils._rebuild_parameter"] = {Callee::RebuildParameter, std::nullopt};
    t["torch._utils._rebuild_parameter_with_state"] = {Callee::RebuildParameter, std::nullopt};
    for (const char* m : {"builtins", "__builtin__"}) {
      t[cat(m, ".set")] = {Callee::Set, std::nullopt};
      t[cat(m, ".frozenset")] = {Callee::Set, std::nullopt};
      t[cat(m, ".bytes")] = {Callee::Bytes, std::nullopt};
    }
    t["_codecs.encode"] = {Callee::CodecsEncode, std::nullopt};
    t["torch.Size"] = {Callee::TorchSize, std::nullopt};
    const std::pair<const char*, torch::Dtype> storages[] = {
        {"FloatStorage", torch::kFloat32}, {"DoubleStorage", torch::kFloat64},
        {"HalfStorage", torch::kFloat16},  {"BFloat16Storage", torch::kBFloat16},
        {"LongStorage", torch::kInt64},    {"IntStorage", torch::kInt32},
        {"ShortStorage", torch::kInt16},   {"CharStorage", torch::kInt8},
        {"ByteStorage", torch::kUInt8},    {"BoolStorage", torch::kBool},
    };
    for (const auto& [name, dtype] : storages)
      t[cat("torch.", name)] = {Callee::StorageType, dtype};
    t["torch.UntypedStorage"] = {Callee::StorageType, std::nullopt};
    t["torch.storage.UntypedStorage"] = {Callee::StorageType, std::nullopt};
    const std::pair<const char*, torch::Dtype> dtypes[] = {
        {"float32", torch::kFloat32},   {"float64", torch::kFloat64}, {"float16", torch::kFloat16},
        {"bfloat16", torch::kBFloat16}, {"int64", torch::kInt64},     {"int32", torch::kInt32},
        {"int16", torch::kInt16},       {"int8", torch::kInt8},       {"uint8", torch::kUInt8},
        {"bool", torch::kBool},
    };
    for (const auto& [name, dtype] : dtypes) t[cat("torch.", name)] = {Callee::Dtype, dtype};
    // Dtypes torch 2 writes with _rebuild_tensor_v3 that this LibTorch may not hold.
    for (const char* name : {"uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2",
                             "float8_e4m3fnuz", "float8_e5m2fnuz"})
      t[cat("torch.", name)] = {Callee::Dtype, std::nullopt};
    return t;
  }();
  return table;
}

size_t dtype_size(torch::Dtype dtype) {
  return c10::elementSize(dtype);
}

// --- the restricted pickle machine -------------------------------------------------------------

// Bytes the loader may copy beyond what the file holds (misaligned storages, non-contiguous
// tensors made contiguous, bytes decoded from strings): bounds what a small file can make us
// allocate.
struct CopyBudget {
  uint64_t left = 0;
};

using PersistentLoad = std::function<CheckpointValue(const CheckpointValue& pid)>;

class Unpickler {
 public:
  Unpickler(std::string_view data, std::string where, PersistentLoad persistent, CopyBudget* budget)
      : data_(data),
        where_(std::move(where)),
        persistent_(std::move(persistent)),
        budget_(budget) {}

  CheckpointValue run();

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw IoError(cat("[checkpoint] ", where_, ": data.pkl byte ", op_pos_, ": ", what));
  }
  [[noreturn]] void refuse(const std::string& global) const {
    throw IoError(cat("[checkpoint] ", where_, ": refuses to load global '", global,
                      "' (only tensors, storages and plain containers are read; nothing in the ",
                      "file is executed)"));
  }

  std::string_view take(uint64_t n) {
    if (n > data_.size() - pos_)
      fail(cat("pickle ends inside an opcode (needs ", n, " more bytes, ", data_.size() - pos_,
               " left; truncated or corrupt?)"));
    std::string_view out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  uint64_t read_le(int n) {
    const auto b = take(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[i]);
    return v;
  }
  std::string_view read_line() {
    const size_t nl = data_.find('\n', pos_);
    if (nl == std::string_view::npos) fail("text opcode without its closing newline (truncated?)");
    std::string_view out = data_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return out;
  }
  std::string_view read_sized(uint64_t n, const char* what) {
    if (n > data_.size() - pos_)
      fail(cat(what, " of ", n, " bytes runs past the end of the pickle (", data_.size() - pos_,
               " bytes left; truncated or corrupt?)"));
    return take(n);
  }

  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(CheckpointValue v) { stack_.push_back(std::move(v)); }
  CheckpointValue pop() {
    if (stack_.size() <= base()) fail("stack underflow (corrupt pickle?)");
    CheckpointValue v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  CheckpointValue& top() {
    if (stack_.size() <= base()) fail("stack underflow (corrupt pickle?)");
    return stack_.back();
  }
  std::vector<CheckpointValue> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack (corrupt pickle?)");
    const size_t b = marks_.back();
    marks_.pop_back();
    std::vector<CheckpointValue> items(std::make_move_iterator(stack_.begin() + b),
                                       std::make_move_iterator(stack_.end()));
    stack_.resize(b);
    return items;
  }

  static bool is_container(const CheckpointValue& v) {
    return v.is(Kind::List) || v.is(Kind::Tuple) || v.is(Kind::Dict);
  }
  // Records that `child` now lives inside `parent`: it is sealed (a later change to it would be a
  // self-referencing structure) and counts towards the parent's depth.
  void adopt(Node& parent, const CheckpointValue& child) {
    if (!is_container(child)) return;
    Node* c = CheckpointNodeAccess::node(child);
    if (c == &parent) fail("a container that holds itself is not read");
    c->sealed = true;
    parent.depth = std::max(parent.depth, c->depth + 1);
    if (parent.depth > kMaxCheckpointDepth)
      fail(cat("containers nested deeper than ", kMaxCheckpointDepth, " levels (a nesting bomb?)"));
  }
  Node& mutable_node(const CheckpointValue& v, Kind kind, const char* op) {
    if (!v.is(kind))
      fail(cat(op, " needs a ", kind == Kind::Dict ? "dict" : "list", " below it, found a ",
               v.kind_name()));
    Node* n = CheckpointNodeAccess::node(v);
    if (n->sealed)
      fail(cat(op, " changes a ", v.kind_name(), " already placed in another container ",
               "(self-referencing structures are not read)"));
    return *n;
  }
  CheckpointValue make_sequence(Kind kind, std::vector<CheckpointValue> items) {
    CheckpointValue v = CheckpointNodeAccess::make(kind);
    Node& n = *CheckpointNodeAccess::node(v);
    for (const auto& item : items) adopt(n, item);
    n.items = std::move(items);
    return v;
  }
  CheckpointKey dict_key(const CheckpointValue& k) {
    if (k.is(Kind::String)) return k.as_string();
    if (k.is(Kind::Int) || k.is(Kind::Bool)) return k.as_int();
    fail(cat("dict key of type ", k.kind_name(), " is not supported (only str and int keys)"));
  }
  void dict_set(Node& d, const CheckpointValue& k, CheckpointValue v) {
    CheckpointKey key = dict_key(k);
    adopt(d, v);
    auto it = d.index.find(key);
    if (it != d.index.end()) {
      d.entries[it->second].second = std::move(v);
    } else {
      d.index.emplace(key, d.entries.size());
      d.entries.emplace_back(std::move(key), std::move(v));
    }
  }
  void set_items(Node& d, std::vector<CheckpointValue>& items, const char* op) {
    if (items.size() % 2) fail(cat(op, " with an odd number of items (", items.size(), ")"));
    for (size_t i = 0; i < items.size(); i += 2) dict_set(d, items[i], std::move(items[i + 1]));
  }

  CheckpointValue global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    if (!allowed_globals().count(full)) refuse(full);
    CheckpointValue v = CheckpointNodeAccess::make(Kind::Global);
    CheckpointNodeAccess::node(v)->text = full;
    return v;
  }
  const AllowedGlobal& callee_of(const CheckpointValue& v, const char* op) {
    if (!v.is(Kind::Global)) fail(cat(op, " calls a ", v.kind_name(), ", not a global"));
    return allowed_globals().at(v.as_string());
  }

  CheckpointValue call(const CheckpointValue& fn, const CheckpointValue& args);
  CheckpointValue new_object(const CheckpointValue& cls, const CheckpointValue& args);
  CheckpointValue rebuild_tensor(const std::vector<CheckpointValue>& a, const std::string& fn,
                                 std::optional<torch::Dtype> dtype, const std::string& dtype_name);
  std::vector<int64_t> int_list(const CheckpointValue& v, const char* what);
  void memo_put(uint64_t index) {
    const auto& v = top();
    memo_[index] = v;
  }
  const CheckpointValue& memo_get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail(cat("memo has no entry ", index, " (corrupt pickle?)"));
    return it->second;
  }
  int64_t parse_int(std::string_view text, const char* what) {
    int64_t v = 0;
    const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
    if (r.ec != std::errc() || r.ptr != text.data() + text.size())
      fail(cat(what, " '", std::string(text.substr(0, 40)), "' is not a 64-bit integer"));
    return v;
  }
  // Little-endian two's complement of any length, as LONG1 / LONG4 store it.
  int64_t long_bytes(std::string_view b) {
    if (b.empty()) return 0;
    if (b.size() > 8) {
      // Longer encodings fit only when the extra bytes merely extend the sign of byte 7.
      const char fill = (static_cast<uint8_t>(b[7]) & 0x80) ? '\xff' : '\0';
      for (size_t i = 8; i < b.size(); ++i)
        if (b[i] != fill) fail(cat("integer of ", b.size(), " bytes does not fit in 64 bits"));
      b = b.substr(0, 8);
    }
    uint64_t v = 0;
    for (size_t i = b.size(); i-- > 0;) v = (v << 8) | static_cast<uint8_t>(b[i]);
    if (b.size() < 8 && (static_cast<uint8_t>(b.back()) & 0x80))
      v |= ~uint64_t(0) << (8 * b.size());
    return static_cast<int64_t>(v);
  }
  std::string raw_unicode_escape(std::string_view in);
  void spend(uint64_t n, const char* what) {
    if (n > budget_->left)
      fail(cat(what, " would allocate ", n, " bytes, beyond what a file of this size can need"));
    budget_->left -= n;
  }

  std::string_view data_;
  std::string where_;
  PersistentLoad persistent_;
  CopyBudget* budget_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  std::vector<CheckpointValue> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, CheckpointValue> memo_;
};


// Protocol 0 text strings: raw-unicode-escape (latin-1 bytes plus \u and \U escapes of 4 and 8 hex digits).
std::string Unpickler::raw_unicode_escape(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<uint8_t>(in[i]);
    if (c == '\\' && i + 1 < in.size() && (in[i + 1] == 'u' || in[i + 1] == 'U')) {
      const size_t n = in[i + 1] == 'u' ? 4 : 8;
      if (i + 2 + n > in.size()) fail("truncated \\u escape in a UNICODE string");
      uint32_t cp = 0;
      const auto r = std::from_chars(in.data() + i + 2, in.data() + i + 2 + n, cp, 16);
      if (r.ec != std::errc() || r.ptr != in.data() + i + 2 + n || cp > 0x10FFFF)
        fail("bad \\u escape in a UNICODE string");
      text::append_utf8(out, static_cast<char32_t>(cp));
      i += 1 + n;
    } else {
      text::append_utf8(out, static_cast<char32_t>(c));
    }
  }
  return out;
}

std::vector<int64_t> Unpickler::int_list(const CheckpointValue& v, const char* what) {
  if (!v.is(Kind::Tuple) && !v.is(Kind::List))
    fail(cat("tensor ", what, " must be a tuple of ints, found a ", v.kind_name()));
  std::vector<int64_t> out;
  for (const auto& item : v.items()) {
    if (!item.is(Kind::Int))
      fail(cat("tensor ", what, " holds a ", item.kind_name(), ", not an int"));
    out.push_back(item.as_int());
  }
  return out;
}

std::string dims(const std::vector<int64_t>& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

// The 1-D view of a storage's bytes as `dtype` (made once per dtype; copied when misaligned).
torch::Tensor storage_view(StorageBytes& s, torch::Dtype dtype, CopyBudget* budget,
                           const std::function<void(const std::string&)>& fail) {
  auto it = s.views.find(static_cast<int>(dtype));
  if (it != s.views.end()) return it->second;
  const size_t elem = dtype_size(dtype);
  if (s.nbytes % elem)
    fail(cat("storage '", s.key, "' has ", s.nbytes, " bytes, not a whole number of ",
             c10::toString(dtype), " elements"));
  const int64_t numel = static_cast<int64_t>(s.nbytes / elem);
  const auto opts = torch::TensorOptions().dtype(dtype);
  torch::Tensor t;
  if (numel == 0) {
    t = torch::empty({0}, opts);
  } else if (reinterpret_cast<uintptr_t>(s.data) % elem != 0) {
    if (s.nbytes > budget->left) fail(cat("storage '", s.key, "' is too large to copy"));
    budget->left -= s.nbytes;
    t = torch::empty({numel}, opts);
    std::memcpy(t.data_ptr(), s.data, s.nbytes);
  } else {
    auto keep = s.keep;
    t = torch::from_blob(
        s.data, {numel}, [keep](void*) {}, opts);
  }
  s.views.emplace(static_cast<int>(dtype), t);
  return t;
}

CheckpointValue Unpickler::rebuild_tensor(const std::vector<CheckpointValue>& a,
                                          const std::string& fn, std::optional<torch::Dtype> dtype,
                                          const std::string& dtype_name) {
  const CheckpointValue& storage = a[0];
  Node* sn = storage.is(Kind::Tensor) ? CheckpointNodeAccess::node(storage) : nullptr;
  if (!sn || !sn->storage) fail(cat(fn, " expects a storage first, found a ", storage.kind_name()));
  StorageBytes& s = *sn->storage;
  if (!a[1].is(Kind::Int))
    fail(cat(fn, ": storage offset must be an int, found a ", a[1].kind_name()));
  const int64_t offset = a[1].as_int();
  const std::vector<int64_t> size = int_list(a[2], "size");
  const std::vector<int64_t> stride = int_list(a[3], "stride");
  const torch::Dtype dt = dtype ? *dtype : s.dtype;
  if (!dtype && s.untyped && fn != "_rebuild_tensor_v3")
    fail(cat(fn, " on untyped storage '", s.key, "' (no dtype given)"));
  if (dtype_name.size() && !dtype)
    fail(cat("tensor of dtype ", dtype_name, " (storage '", s.key, "') is not supported by this ",
             "LibTorch"));
  auto shape_text = [&] {
    return cat("size ", dims(size), ", stride ", dims(stride), ", offset ", offset);
  };
  const auto where = [&] { return cat("tensor on storage '", s.key, "' (", shape_text(), ")"); };
  if (size.size() != stride.size()) fail(cat(where(), ": size and stride have different lengths"));
  if (size.size() > 64) fail(cat(where(), ": more than 64 dimensions"));
  if (offset < 0) fail(cat(where(), ": negative storage offset"));
  torch::Tensor base = storage_view(s, dt, budget_, [this](const std::string& m) { fail(m); });
  const int64_t storage_numel = base.numel();
  int64_t numel = 1;
  int64_t last = offset;  // index of the last element the view reaches
  for (size_t i = 0; i < size.size(); ++i) {
    if (size[i] < 0) fail(cat(where(), ": negative size"));
    if (stride[i] < 0) fail(cat(where(), ": negative stride"));
    if (__builtin_mul_overflow(numel, size[i], &numel))
      fail(cat(where(), ": element count overflows"));
  }
  if (numel == 0) {
    if (offset > storage_numel)
      fail(cat(where(), ": offset beyond the storage's ", storage_numel, " elements"));
    return CheckpointValue::tensor(torch::empty(size, torch::TensorOptions().dtype(dt)));
  }
  for (size_t i = 0; i < size.size(); ++i) {
    int64_t reach = 0;
    if (__builtin_mul_overflow(size[i] - 1, stride[i], &reach) ||
        __builtin_add_overflow(last, reach, &last))
      fail(cat(where(), ": extent overflows"));
  }
  if (last >= storage_numel)
    fail(cat(where(), " reaches element ", last, " but the storage has ", storage_numel,
             " elements (corrupt file?)"));
  torch::Tensor t = base.as_strided(size, stride, offset);
  if (!t.is_contiguous()) {
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(dt), &nbytes))
      fail(cat(where(), ": byte count overflows"));
    spend(nbytes, cat("making the ", where(), " contiguous").c_str());
    t = t.contiguous();
  }
  return CheckpointValue::tensor(t);
}

CheckpointValue Unpickler::call(const CheckpointValue& fn, const CheckpointValue& args) {
  const AllowedGlobal& g = callee_of(fn, "REDUCE");
  const std::string& name = fn.as_string();
  if (!args.is(Kind::Tuple))
    fail(cat("REDUCE arguments must be a tuple, found a ", args.kind_name()));
  const auto& a = args.items();
  auto want = [&](size_t lo, size_t hi) {
    if (a.size() < lo || a.size() > hi)
      fail(cat(name, " called with ", a.size(), " arguments (expected ", lo,
               lo == hi ? std::string() : cat(" to ", hi), ")"));
  };
  switch (g.callee) {
    case Callee::OrderedDict: {
      want(0, 1);
      CheckpointValue d = CheckpointNodeAccess::make(Kind::Dict);
      if (a.size() == 1) {
        if (!a[0].is(Kind::List) && !a[0].is(Kind::Tuple))
          fail(cat(name, " of a ", a[0].kind_name(), " (expected a list of pairs)"));
        for (const auto& pair : a[0].items()) {
          if ((!pair.is(Kind::Tuple) && !pair.is(Kind::List)) || pair.items().size() != 2)
            fail(cat(name, " item is not a (key, value) pair"));
          dict_set(*CheckpointNodeAccess::node(d), pair.items()[0], pair.items()[1]);
        }
      }
      return d;
    }
    case Callee::RebuildTensor:
      want(4, 4);
      return rebuild_tensor(a, "_rebuild_tensor", std::nullopt, "");
    case Callee::RebuildTensorV2:
      want(6, 7);
      return rebuild_tensor(a, "_rebuild_tensor_v2", std::nullopt, "");
    case Callee::RebuildTensorV3: {
      want(7, 8);
      if (!a[6].is(Kind::Global) || callee_of(a[6], "v3").callee != Callee::Dtype)
        fail(cat("_rebuild_tensor_v3 expects a torch dtype, found a ", a[6].kind_name()));
      return rebuild_tensor(a, "_rebuild_tensor_v3", allowed_globals().at(a[6].as_string()).dtype,
                            a[6].as_string());
    }
    case Callee::RebuildParameter: {
      want(3, 4);
      const auto* n = a[0].is(Kind::Tensor) ? CheckpointNodeAccess::node(a[0]) : nullptr;
      if (!n || n->storage) fail(cat(name, " expects a tensor first, found a ", a[0].kind_name()));
      return a[0];  // requires_grad, hooks and state do not matter for weights
    }
    case Callee::Set: {
      want(0, 1);
      if (a.empty()) return make_sequence(Kind::List, {});
      if (!a[0].is(Kind::List) && !a[0].is(Kind::Tuple))
        fail(cat(name, " of a ", a[0].kind_name(), " (expected a list)"));
      return make_sequence(Kind::List, a[0].items());
    }
    case Callee::Bytes:
      want(0, 0);
      return CheckpointValue::bytes("");
    case Callee::CodecsEncode: {
      want(2, 2);
      if (!a[0].is(Kind::String) || !a[1].is(Kind::String) ||
          (a[1].as_string() != "latin1" && a[1].as_string() != "latin-1"))
        fail("_codecs.encode is read only as encode(str, 'latin1') (how protocol 2 writes bytes)");
      const std::string& s = a[0].as_string();
      spend(s.size(), "_codecs.encode");
      std::string out;
      out.reserve(s.size());
      for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<uint8_t>(s[i]);
        if (c < 0x80) {
          out += static_cast<char>(c);
          i += 1;
        } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size() && c <= 0xC3 &&
                   (static_cast<uint8_t>(s[i + 1]) & 0xC0) == 0x80) {
          out += static_cast<char>(((c & 0x1F) << 6) | (static_cast<uint8_t>(s[i + 1]) & 0x3F));
          i += 2;
        } else {
          fail("_codecs.encode: the string has characters outside latin-1");
        }
      }
      return CheckpointValue::bytes(std::move(out));
    }
    case Callee::TorchSize: {
      want(0, 1);
      if (a.empty()) return make_sequence(Kind::Tuple, {});
      std::vector<CheckpointValue> ints;
      for (int64_t d : int_list(a[0], "torch.Size")) ints.push_back(CheckpointValue::integer(d));
      return make_sequence(Kind::Tuple, std::move(ints));
    }
    case Callee::StorageType:
    case Callee::Dtype:
      fail(cat("global '", name, "' is not callable here"));
  }
  fail("unreachable");
}

CheckpointValue Unpickler::new_object(const CheckpointValue& cls, const CheckpointValue& args) {
  const AllowedGlobal& g = callee_of(cls, "NEWOBJ");
  if (g.callee == Callee::OrderedDict || g.callee == Callee::Set) return call(cls, args);
  fail(cat("NEWOBJ of '", cls.as_string(), "' is not supported"));
}

CheckpointValue Unpickler::run() {
  while (true) {
    op_pos_ = pos_;
    if (pos_ >= data_.size()) fail("pickle ends without STOP (truncated?)");
    const auto op = static_cast<uint8_t>(data_[pos_++]);
    switch (op) {
      case 0x80: {  // PROTO
        const auto v = read_le(1);
        if (v > 5) fail(cat("pickle protocol ", v, " is newer than 5"));
        break;
      }
      case 0x95: {  // FRAME: framing is advisory; check the length and read on
        const uint64_t n = read_le(8);
        if (n > data_.size() - pos_)
          fail(cat("FRAME of ", n, " bytes runs past the end (truncated?)"));
        break;
      }
      case '.': {  // STOP
        CheckpointValue v = pop();
        return v;
      }
      case '(':
        marks_.push_back(stack_.size());
        break;   // MARK
      case '0':  // POP
        if (stack_.size() > base())
          stack_.pop_back();
        else
          pop_mark();
        break;
      case '1':
        pop_mark();
        break;  // POP_MARK
      case '2':
        push(top());
        break;  // DUP
      case 'N':
        push(CheckpointValue());
        break;
      case 0x88:
        push(CheckpointValue::boolean(true));
        break;  // NEWTRUE
      case 0x89:
        push(CheckpointValue::boolean(false));
        break;  // NEWFALSE
      case 'J':
        push(CheckpointValue::integer(static_cast<int32_t>(read_le(4))));
        break;  // BININT
      case 'K':
        push(CheckpointValue::integer(static_cast<int64_t>(read_le(1))));
        break;  // BININT1
      case 'M':
        push(CheckpointValue::integer(static_cast<int64_t>(read_le(2))));
        break;      // BININT2
      case 0x8a: {  // LONG1
        const auto n = read_le(1);
        push(CheckpointValue::integer(long_bytes(read_sized(n, "LONG1"))));
        break;
      }
      case 0x8b: {  // LONG4
        const auto n = static_cast<int32_t>(read_le(4));
        if (n < 0) fail("LONG4 with a negative length");
        push(CheckpointValue::integer(long_bytes(read_sized(n, "LONG4"))));
        break;
      }
      case 'I': {  // INT (text); I01 / I00 are True / False
        const auto line = read_line();
        if (line == "01")
          push(CheckpointValue::boolean(true));
        else if (line == "00")
          push(CheckpointValue::boolean(false));
        else
          push(CheckpointValue::integer(parse_int(line, "INT")));
        break;
      }
      case 'L': {  // LONG (text)
        auto line = read_line();
        if (!line.empty() && line.back() == 'L') line.remove_suffix(1);
        push(CheckpointValue::integer(parse_int(line, "LONG")));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian double
        const auto b = take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<uint8_t>(b[i]);
        double d;
        std::memcpy(&d, &bits, 8);
        push(CheckpointValue::real(d));
        break;
      }
      case 'F': {  // FLOAT (text)
        const auto line = read_line();
        double d = 0;
        const auto r = std::from_chars(line.data(), line.data() + line.size(), d);
        if (r.ec != std::errc() || r.ptr != line.data() + line.size())
          fail("FLOAT is not a number");
        push(CheckpointValue::real(d));
        break;
      }
      case 'X':
        push(CheckpointValue::string(std::string(read_sized(read_le(4), "BINUNICODE"))));
        break;
      case 0x8c:
        push(CheckpointValue::string(std::string(read_sized(read_le(1), "SHORT_BINUNICODE"))));
        break;
      case 0x8d:
        push(CheckpointValue::string(std::string(read_sized(read_le(8), "BINUNICODE8"))));
        break;
      case 'V':
        push(CheckpointValue::string(raw_unicode_escape(read_line())));
        break;     // UNICODE
      case 'T': {  // BINSTRING (Python 2 str)
        const auto n = static_cast<int32_t>(read_le(4));
        if (n < 0) fail("BINSTRING with a negative length");
        push(CheckpointValue::string(std::string(read_sized(n, "BINSTRING"))));
        break;
      }
      case 'U':
        push(CheckpointValue::string(std::string(read_sized(read_le(1), "SHORT_BINSTRING"))));
        break;
      case 'B':
        push(CheckpointValue::bytes(std::string(read_sized(read_le(4), "BINBYTES"))));
        break;
      case 'C':
        push(CheckpointValue::bytes(std::string(read_sized(read_le(1), "SHORT_BINBYTES"))));
        break;
      case 0x8e:
        push(CheckpointValue::bytes(std::string(read_sized(read_le(8), "BINBYTES8"))));
        break;
      case 0x96:
        push(CheckpointValue::bytes(std::string(read_sized(read_le(8), "BYTEARRAY8"))));
        break;
      case ')':
        push(make_sequence(Kind::Tuple, {}));
        break;  // EMPTY_TUPLE
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1/2/3
        const size_t n = op - 0x84;
        std::vector<CheckpointValue> items(n);
        for (size_t i = n; i-- > 0;) items[i] = pop();
        push(make_sequence(Kind::Tuple, std::move(items)));
        break;
      }
      case 't':
        push(make_sequence(Kind::Tuple, pop_mark()));
        break;  // TUPLE
      case ']':
        push(make_sequence(Kind::List, {}));
        break;  // EMPTY_LIST
      case 'l':
        push(make_sequence(Kind::List, pop_mark()));
        break;  // LIST
      case 0x8f:
        push(make_sequence(Kind::List, {}));
        break;  // EMPTY_SET
      case 0x91:
        push(make_sequence(Kind::List, pop_mark()));
        break;  // FROZENSET
      case '}':
        push(CheckpointNodeAccess::make(Kind::Dict));
        break;     // EMPTY_DICT
      case 'd': {  // DICT
        auto items = pop_mark();
        CheckpointValue d = CheckpointNodeAccess::make(Kind::Dict);
        set_items(*CheckpointNodeAccess::node(d), items, "DICT");
        push(std::move(d));
        break;
      }
      case 'a': {  // APPEND
        CheckpointValue v = pop();
        Node& list = mutable_node(top(), Kind::List, "APPEND");
        adopt(list, v);
        list.items.push_back(std::move(v));
        break;
      }
      case 'e':
      case 0x90: {  // APPENDS, ADDITEMS
        auto items = pop_mark();
        Node& list = mutable_node(top(), Kind::List, op == 'e' ? "APPENDS" : "ADDITEMS");
        for (auto& v : items) {
          adopt(list, v);
          list.items.push_back(std::move(v));
        }
        break;
      }
      case 's': {  // SETITEM
        CheckpointValue v = pop();
        CheckpointValue k = pop();
        dict_set(mutable_node(top(), Kind::Dict, "SETITEM"), k, std::move(v));
        break;
      }
      case 'u': {  // SETITEMS
        auto items = pop_mark();
        set_items(mutable_node(top(), Kind::Dict, "SETITEMS"), items, "SETITEMS");
        break;
      }
      case 'p':
        memo_put(static_cast<uint64_t>(parse_int(read_line(), "PUT")));
        break;
      case 'q':
        memo_put(read_le(1));
        break;  // BINPUT
      case 'r':
        memo_put(read_le(4));
        break;  // LONG_BINPUT
      case 0x94:
        memo_put(memo_.size());
        break;  // MEMOIZE
      case 'g':
        push(memo_get(static_cast<uint64_t>(parse_int(read_line(), "GET"))));
        break;
      case 'h':
        push(memo_get(read_le(1)));
        break;  // BINGET
      case 'j':
        push(memo_get(read_le(4)));
        break;     // LONG_BINGET
      case 'c': {  // GLOBAL
        const std::string module(read_line());
        const std::string name(read_line());
        push(global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        CheckpointValue name = pop();
        CheckpointValue module = pop();
        if (!name.is(Kind::String) || !module.is(Kind::String))
          fail("STACK_GLOBAL needs two strings");
        push(global(module.as_string(), name.as_string()));
        break;
      }
      case 'i': {  // INST: instantiates a class
        const std::string module(read_line());
        const std::string name(read_line());
        refuse(module + "." + name);
      }
      case 'o': {  // OBJ
        auto items = pop_mark();
        if (!items.empty() && items[0].is(Kind::Global)) refuse(items[0].as_string());
        fail("OBJ (object instantiation) is not supported");
      }
      case 'R': {  // REDUCE
        CheckpointValue args = pop();
        CheckpointValue fn = pop();
        push(call(fn, args));
        break;
      }
      case 0x81: {  // NEWOBJ
        CheckpointValue args = pop();
        CheckpointValue cls = pop();
        push(new_object(cls, args));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        CheckpointValue kwargs = pop();
        CheckpointValue args = pop();
        CheckpointValue cls = pop();
        if (!kwargs.is(Kind::Dict) || !kwargs.entries().empty())
          fail("NEWOBJ_EX with keyword arguments is not supported");
        push(new_object(cls, args));
        break;
      }
      case 'b': {  // BUILD: the state of an OrderedDict (its _metadata) or tensor is not needed
        CheckpointValue state = pop();
        const CheckpointValue& target = top();
        if (!target.is(Kind::Dict) && !target.is(Kind::Tensor))
          fail(cat("BUILD (setting an object's state) on a ", target.kind_name(),
                   " is not supported"));
        break;
      }
      case 'Q': {  // BINPERSID
        CheckpointValue pid = pop();
        if (!persistent_) fail("persistent id (a tensor storage) outside a checkpoint archive");
        push(persistent_(pid));
        break;
      }
      case 'P':
        fail("text persistent ids (PERSID) are not supported");
      case 'S':
        fail("protocol 0 quoted strings (STRING) are not supported");
      case 0x82:
      case 0x83:
      case 0x84:
        fail("extension registry codes (EXT1/2/4) are not supported");
      case 0x97:
      case 0x98:
        fail("out-of-band buffers (protocol 5) are not supported");
      default: {
        std::ostringstream os;
        os << "unknown opcode 0x" << std::hex << static_cast<int>(op)
           << " (not a pickle, or corrupt?)";
        fail(os.str());
      }
    }
  }
}

// --- the file: mapping and ZIP directory -------------------------------------------------------

struct Mapping {
  void* addr = nullptr;
  size_t length = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) ::munmap(addr, length);
  }
};

std::shared_ptr<Mapping> map_file(const fs::path& path, const std::string& where) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw IoError(cat("[checkpoint] ", where, ": cannot open: ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw IoError(cat("[checkpoint] ", where, ": cannot stat: ", std::strerror(errno)));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw IoError(cat("[checkpoint] ", where, ": is a folder, not a checkpoint file"));
  }
  auto m = std::make_shared<Mapping>();
  m->length = static_cast<size_t>(st.st_size);
  if (m->length > 0) {
    // Private writable mapping as for safetensors: tensors behave as ordinary tensors, pages are
    // copied only when written, and the file is never modified.
    m->addr = ::mmap(nullptr, m->length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  }
  ::close(fd);
  if (m->addr == MAP_FAILED)
    throw IoError(cat("[checkpoint] ", where, ": cannot map: ", std::strerror(errno)));
  return m;
}

struct ZipEntry {
  uint64_t data = 0;  // offset of the first byte in the file
  uint64_t size = 0;
  uint32_t crc = 0;
};

uint64_t le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint32_t crc32(const uint8_t* p, uint64_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (uint64_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// The entries of a ZIP archive of `size` bytes at `base`, every offset checked against the size.
std::map<std::string, ZipEntry> read_zip_directory(const uint8_t* base, uint64_t size,
                                                   const std::string& where) {
  auto fail = [&](const std::string& what) -> void {
    throw IoError(cat("[checkpoint] ", where, ": ", what));
  };
  constexpr uint64_t kEocd = 22;
  if (size < kEocd)
    fail(cat("file has ", size, " bytes, too few for a ZIP archive (truncated download?)"));
  // The end-of-central-directory record sits at the end, before a comment of up to 64 KiB.
  uint64_t eocd = UINT64_MAX;
  const uint64_t lowest = size - kEocd > 0xFFFF ? size - kEocd - 0xFFFF : 0;
  for (uint64_t p = size - kEocd + 1; p-- > lowest;) {
    if (le(base + p, 4) == 0x06054b50 && p + kEocd + le(base + p + 20, 2) <= size) {
      eocd = p;
      break;
    }
  }
  if (eocd == UINT64_MAX)
    fail(
        "no ZIP end-of-central-directory record: the end of the file is missing (truncated "
        "download?)");
  const uint8_t* e = base + eocd;
  if (le(e + 4, 2) != 0 || le(e + 6, 2) != 0) fail("multi-volume ZIP archives are not supported");
  uint64_t count = le(e + 10, 2);
  uint64_t cd_size = le(e + 12, 4);
  uint64_t cd_offset = le(e + 16, 4);
  // ZIP64: a locator just before the record points at the 64-bit record.
  if (eocd >= 20 && le(base + eocd - 20, 4) == 0x07064b50) {
    const uint64_t z = le(base + eocd - 20 + 8, 8);
    if (z > eocd || eocd - z < 56)
      fail(cat("ZIP64 end-of-central-directory record at byte ", z,
               " lies outside the file (corrupt?)"));
    const uint8_t* r = base + z;
    if (le(r, 4) != 0x06064b50) fail("ZIP64 end-of-central-directory record has a bad signature");
    count = le(r + 32, 8);
    cd_size = le(r + 40, 8);
    cd_offset = le(r + 48, 8);
  } else if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    fail("ZIP64 archive without its ZIP64 locator (corrupt?)");
  }
  if (cd_offset > eocd || cd_size > eocd - cd_offset)
    fail(cat("central directory [", cd_offset, ", +", cd_size, ") lies beyond the file's ", size,
             " bytes (truncated download?)"));
  if (count > cd_size / 46)
    fail(cat("central directory claims ", count, " entries in ", cd_size, " bytes"));

  std::map<std::string, ZipEntry> out;
  uint64_t q = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (cd_end - q < 46 || le(base + q, 4) != 0x02014b50)
      fail(cat("central directory entry ", i, " at byte ", q, " is malformed (corrupt?)"));
    const uint8_t* c = base + q;
    const uint64_t flags = le(c + 8, 2);
    const uint64_t method = le(c + 10, 2);
    const uint32_t crc = static_cast<uint32_t>(le(c + 16, 4));
    uint64_t csize = le(c + 20, 4);
    uint64_t usize = le(c + 24, 4);
    const uint64_t name_len = le(c + 28, 2);
    const uint64_t extra_len = le(c + 30, 2);
    const uint64_t comment_len = le(c + 32, 2);
    uint64_t local = le(c + 42, 4);
    if (cd_end - q - 46 < name_len + extra_len + comment_len)
      fail(cat("central directory entry ", i, " runs past the directory (corrupt?)"));
    std::string name(reinterpret_cast<const char*>(c + 46), name_len);
    // ZIP64 extra field: the 64-bit values of the fields saturated in the record, in this order.
    const uint8_t* x = c + 46 + name_len;
    for (uint64_t off = 0; off + 4 <= extra_len;) {
      const uint64_t id = le(x + off, 2);
      const uint64_t len = le(x + off + 2, 2);
      if (off + 4 + len > extra_len) fail(cat("entry '", name, "': extra field runs past its end"));
      if (id == 0x0001) {
        uint64_t at = off + 4;
        auto take64 = [&](uint64_t& field) {
          if (at + 8 > off + 4 + len) fail(cat("entry '", name, "': short ZIP64 extra field"));
          field = le(x + at, 8);
          at += 8;
        };
        if (usize == 0xFFFFFFFF) take64(usize);
        if (csize == 0xFFFFFFFF) take64(csize);
        if (local == 0xFFFFFFFF) take64(local);
      }
      off += 4 + len;
    }
    if (flags & 1) fail(cat("entry '", name, "' is encrypted"));
    if (method != 0)
      fail(cat("entry '", name, "' is compressed (method ", method, "); torch.save writes stored ",
               "entries only: was the archive repacked? Re-save it with torch.save"));
    if (csize != usize) fail(cat("entry '", name, "' is stored but its sizes differ (corrupt?)"));
    if (local > size || size - local < 30 || le(base + local, 4) != 0x04034b50)
      fail(cat("entry '", name, "': local header at byte ", local, " is missing or malformed ",
               "(truncated download?)"));
    const uint64_t lname = le(base + local + 26, 2);
    const uint64_t lextra = le(base + local + 28, 2);
    const uint64_t data = local + 30 + lname + lextra;
    if (data > size || usize > size - data)
      fail(cat("entry '", name, "' ends at byte ", data + usize, " but the file has ", size,
               " bytes (truncated download?)"));
    if (lname != name_len || std::memcmp(base + local + 30, name.data(), name_len) != 0)
      fail(cat("entry '", name, "': local header names another file (corrupt?)"));
    if (!out.emplace(name, ZipEntry{data, usize, crc}).second)
      fail(cat("entry '", name, "' appears twice"));
    q += 46 + name_len + extra_len + comment_len;
  }
  return out;
}

// Detects the first bytes of the file; returns an error hint or "" for a ZIP archive.
std::string not_a_zip_reason(const uint8_t* base, uint64_t size) {
  if (size >= 4 && le(base, 4) == 0x04034b50) return "";
  if (size >= 4 && le(base, 4) == 0x06054b50) return "is an empty ZIP archive";
  if (size >= 2 && base[0] == 0x80 && base[1] <= 5)
    return "is in the legacy PyTorch format (torch.save before 1.6, or "
           "_use_new_zipfile_serialization=False), which is not read; re-save it with a newer "
           "torch: torch.save(torch.load(f), f)";
  if (size >= 9 && base[8] == '{')
    return "looks like a safetensors file, not a PyTorch checkpoint (rename it to .safetensors)";
  if (size == 0) return "is empty (truncated download?)";
  return "is not a PyTorch checkpoint (torch.save writes a ZIP archive; this file starts "
         "otherwise)";
}

}  // namespace

CheckpointValue unpickle_restricted(std::string_view pickle, const std::string& where) {
  CopyBudget budget{2 * pickle.size() + (1u << 20)};
  return Unpickler(pickle, where, nullptr, &budget).run();
}

bool looks_like_torch_checkpoint(const fs::path& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  uint8_t b[4] = {0, 0, 0, 0};
  const size_t n = std::fread(b, 1, 4, f);
  std::fclose(f);
  if (n >= 4 && le(b, 4) == 0x04034b50) return true;
  return n >= 2 && b[0] == 0x80 && b[1] <= 5;
}

CheckpointValue load_torch_checkpoint(const fs::path& path) {
  const std::string where = path.string();
  auto mapping = map_file(path, where);
  auto* base = static_cast<uint8_t*>(mapping->addr);
  const uint64_t size = mapping->length;
  auto fail = [&](const std::string& what) -> void {
    throw IoError(cat("[checkpoint] ", where, ": ", what));
  };
  if (const std::string why = not_a_zip_reason(base, size); !why.empty()) fail(why);
  const auto entries = read_zip_directory(base, size, where);

  std::vector<std::string> pickles;
  bool torchscript = false;
  for (const auto& [name, entry] : entries) {
    const size_t slash = name.find('/');
    if (slash != std::string::npos && name.compare(slash, std::string::npos, "/data.pkl") == 0)
      pickles.push_back(name);
    if (name.find("/constants.pkl") != std::string::npos ||
        name.find("/code/") != std::string::npos)
      torchscript = true;
  }
  if (torchscript)
    fail(
        "is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; save the "
        "module's state_dict() with torch.save instead");
  if (pickles.empty()) fail("no '<folder>/data.pkl' in the archive: not a torch.save checkpoint");
  if (pickles.size() > 1)
    fail(cat("several pickles in the archive ('", pickles[0], "', '", pickles[1], "')"));
  const std::string folder = pickles[0].substr(0, pickles[0].size() - 9);

  if (auto it = entries.find(folder + "/byteorder"); it != entries.end()) {
    std::string order(reinterpret_cast<const char*>(base + it->second.data), it->second.size);
    while (!order.empty() && std::isspace(static_cast<unsigned char>(order.back())))
      order.pop_back();
    if (order != "little")
      fail(cat("storages are '", order.substr(0, 16), "'-endian; only little-endian is read"));
  }

  const ZipEntry& pkl = entries.at(pickles[0]);
  if (pkl.size > kMaxPickleBytes)
    fail(cat(pickles[0], " has ", pkl.size, " bytes, beyond the limit of ", kMaxPickleBytes));
  if (crc32(base + pkl.data, pkl.size) != pkl.crc)
    fail(cat(pickles[0], " fails its CRC check (corrupt download?)"));

  CopyBudget budget{2 * size + (64ull << 20)};
  std::map<std::string, std::shared_ptr<StorageBytes>> storages;
  std::shared_ptr<void> keep = mapping;
  PersistentLoad load_storage = [&](const CheckpointValue& pid) -> CheckpointValue {
    auto bad = [&](const std::string& what) -> void { fail(cat("storage persistent id: ", what)); };
    if (!pid.is(Kind::Tuple) || pid.items().size() != 5)
      bad(cat("expected ('storage', type, key, location, numel), found a ", pid.kind_name(),
              pid.is(Kind::Tuple) ? cat(" of ", pid.items().size()) : std::string()));
    const auto& t = pid.items();
    if (!t[0].is(Kind::String) || t[0].as_string() != "storage")
      bad("the first item is not 'storage' (unsupported torch.save feature?)");
    if (!t[1].is(Kind::Global) ||
        allowed_globals().at(t[1].as_string()).callee != Callee::StorageType)
      bad(cat("the storage type is a ",
              t[1].is(Kind::Global) ? t[1].as_string() : t[1].kind_name()));
    if (!t[2].is(Kind::String)) bad(cat("the key is a ", t[2].kind_name()));
    if (!t[4].is(Kind::Int) || t[4].as_int() < 0)
      bad("the element count is not a non-negative int");
    const auto dtype = allowed_globals().at(t[1].as_string()).dtype;
    const std::string& key = t[2].as_string();
    const uint64_t numel = static_cast<uint64_t>(t[4].as_int());
    const uint64_t elem = dtype ? dtype_size(*dtype) : 1;
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, elem, &nbytes))
      bad(cat("storage '", key, "' is absurdly large"));
    auto cached = storages.find(key);
    if (cached != storages.end()) {
      const StorageBytes& s = *cached->second;
      if (s.nbytes != nbytes || s.untyped != !dtype || (dtype && s.dtype != *dtype))
        bad(cat("storage '", key, "' is declared twice with different types or sizes"));
    } else {
      auto it = entries.find(folder + "/data/" + key);
      if (it == entries.end())
        fail(cat("storage '", key, "' (", folder, "/data/", key,
                 ") is missing from the archive (truncated or corrupt?)"));
      if (it->second.size < nbytes)
        fail(cat("storage '", key, "' holds ", it->second.size, " bytes but is declared with ",
                 numel, " elements of ", dtype ? c10::toString(*dtype) : "bytes", " (", nbytes,
                 " bytes; corrupt file?)"));
      auto s = std::make_shared<StorageBytes>();
      s->key = key;
      s->data = base + it->second.data;
      s->nbytes = nbytes;
      s->dtype = dtype ? *dtype : torch::kUInt8;
      s->untyped = !dtype;
      s->keep = keep;
      cached = storages.emplace(key, std::move(s)).first;
    }
    CheckpointValue v = CheckpointNodeAccess::make(Kind::Tensor);
    Node* n = CheckpointNodeAccess::node(v);
    n->storage = cached->second;
    n->tensor = storage_view(*n->storage, n->storage->dtype, &budget,
                             [&](const std::string& m) { fail(m); });
    return v;
  };
  const std::string_view pickle(reinterpret_cast<const char*>(base + pkl.data), pkl.size);
  return Unpickler(pickle, where, load_storage, &budget).run();
}

// --- the state dict ----------------------------------------------------------------------------

namespace {

bool holds_tensors(const CheckpointValue& v) {
  if (!v.is(Kind::Dict)) return false;
  for (const auto& [k, value] : v.entries())
    if (value.is(Kind::Tensor) && std::holds_alternative<std::string>(k)) return true;
  return false;
}

std::string key_text(const CheckpointKey& k) {
  if (const auto* s = std::get_if<std::string>(&k)) return *s;
  return std::to_string(std::get<int64_t>(k));
}

std::string list_keys(const CheckpointValue& v, size_t limit = 12) {
  std::ostringstream os;
  size_t i = 0;
  for (const auto& [k, value] : v.entries()) {
    if (i == limit) {
      os << " and " << v.entries().size() - limit << " more";
      break;
    }
    os << (i++ ? ", " : "") << "'" << key_text(k) << "' (" << value.kind_name() << ")";
  }
  return i ? os.str() : "none";
}

TorchStateDict collect(const CheckpointValue& dict, std::string key) {
  TorchStateDict out;
  out.key = std::move(key);
  for (const auto& [k, value] : dict.entries()) {
    const auto* name = std::get_if<std::string>(&k);
    if (name && value.is(Kind::Tensor))
      out.tensors[*name] = value.as_tensor();
    else
      out.skipped.push_back(key_text(k));
  }
  return out;
}

}  // namespace

TorchStateDict find_torch_state_dict(const CheckpointValue& root, const std::string& where,
                                     const std::string& key) {
  if (!root.is(Kind::Dict))
    throw IoError(cat("[checkpoint] ", where, ": holds a ", root.kind_name(),
                      ", not a dict: no state dict in it"));
  if (!key.empty()) {
    const CheckpointValue* v = root.find(key);
    if (!v)
      throw IoError(cat("[checkpoint] ", where, ": no top-level key '", key,
                        "' (keys: ", list_keys(root), ")"));
    if (!holds_tensors(*v))
      throw IoError(cat("[checkpoint] ", where, ": '", key, "' holds a ", v->kind_name(),
                        v->is(Kind::Dict) ? " without tensors" : "", ", not a state dict"));
    return collect(*v, key);
  }
  if (holds_tensors(root)) return collect(root, "");
  for (const char* k : {"state_dict", "model", "module", "model_state_dict", "ema"})
    if (const CheckpointValue* v = root.find(k); v && holds_tensors(*v)) return collect(*v, k);
  throw IoError(cat("[checkpoint] ", where, ": no state dict found: the top-level dict holds no ",
                    "tensors and none of 'state_dict', 'model', 'module', 'model_state_dict', ",
                    "'ema' is a dict of tensors (top-level keys: ", list_keys(root),
                    "); name the key explicitly"));
}

TorchStateDict read_torch_state_dict(const fs::path& path, const std::string& key) {
  return find_torch_state_dict(load_torch_checkpoint(path), path.string(), key);
}

std::map<std::string, torch::Tensor> torch_state_dict(const fs::path& path) {
  return read_torch_state_dict(path).tensors;
}

}  // namespace dro::io
