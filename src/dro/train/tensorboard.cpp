#include "dro/train/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <cstring>

#include "dro/core/error.h"

namespace dro::train {
namespace {

// Protocol-buffer wire encoding of the few fields we need.
void put_varint(std::string& s, uint64_t v) {
  while (v >= 0x80) {
    s.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  s.push_back(static_cast<char>(v));
}
void put_tag(std::string& s, int field, int wire) { put_varint(s, (uint64_t(field) << 3) | wire); }
void put_bytes(std::string& s, int field, const std::string& b) {
  put_tag(s, field, 2);
  put_varint(s, b.size());
  s += b;
}
void put_double(std::string& s, int field, double v) {
  put_tag(s, field, 1);
  char b[8];
  std::memcpy(b, &v, 8);
  s.append(b, 8);
}
void put_float(std::string& s, int field, float v) {
  put_tag(s, field, 5);
  char b[4];
  std::memcpy(b, &v, 4);
  s.append(b, 4);
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
std::string event(int64_t step, const std::string* file_version, const std::string* summary) {
  std::string e;
  put_double(e, 1, now_seconds());
  put_tag(e, 2, 0);
  put_varint(e, static_cast<uint64_t>(step));
  if (file_version) put_bytes(e, 3, *file_version);
  if (summary) put_bytes(e, 5, *summary);
  return e;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  static uint32_t table[256];
  static bool init = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)init;
  uint32_t crc = 0xFFFFFFFFu;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  path_ = dir / ("events.out.tfevents." + std::to_string(static_cast<int64_t>(now_seconds())) + "." +
                 host + "." + std::to_string(::getpid()));
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw IoError(cat("[tensorboard] cannot create ", path_.string()));
  const std::string version = "brain.Event:2";
  write_record(event(0, &version, nullptr));
  flush();
}

void TensorBoardWriter::write_record(const std::string& data) {
  const uint64_t len = data.size();
  char header[12];
  std::memcpy(header, &len, 8);
  const uint32_t len_crc = masked_crc32c(header, 8);
  std::memcpy(header + 8, &len_crc, 4);
  const uint32_t data_crc = masked_crc32c(data.data(), data.size());
  out_.write(header, 12);
  out_.write(data.data(), data.size());
  out_.write(reinterpret_cast<const char*>(&data_crc), 4);
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  // Summary { repeated Value value = 1; }  Value { string tag = 1; float simple_value = 2; }
  std::string v;
  put_bytes(v, 1, tag);
  put_float(v, 2, static_cast<float>(value));
  std::string summary;
  put_bytes(summary, 1, v);
  write_record(event(step, nullptr, &summary));
}

void TensorBoardWriter::add_session_start(int64_t step) {
  // Event.session_log = 7: SessionLog { SessionStatus status = 1 (START = 1) }
  std::string e;
  put_double(e, 1, now_seconds());
  put_tag(e, 2, 0);
  put_varint(e, static_cast<uint64_t>(step));
  std::string log;
  put_tag(log, 1, 0);
  put_varint(log, 1);
  put_bytes(e, 7, log);
  write_record(e);
  out_.flush();
}

void TensorBoardWriter::add_text(const std::string& tag, const std::string& text, int64_t step) {
  // Value { tag = 1; metadata = 9 { plugin_data = 1 { plugin_name = 1: "text" } }; tensor = 8 }
  // TensorProto { dtype = 1: DT_STRING (7); tensor_shape = 2 {}; string_val = 8 }
  std::string plugin;
  put_bytes(plugin, 1, "text");
  std::string meta;
  put_bytes(meta, 1, plugin);
  std::string tensor;
  put_tag(tensor, 1, 0);
  put_varint(tensor, 7);
  put_bytes(tensor, 2, std::string());
  put_bytes(tensor, 8, text);
  std::string v;
  put_bytes(v, 1, tag);
  put_bytes(v, 9, meta);
  put_bytes(v, 8, tensor);
  std::string summary;
  put_bytes(summary, 1, v);
  write_record(event(step, nullptr, &summary));
}

void TensorBoardWriter::flush() { out_.flush(); }

}  // namespace dro::train
