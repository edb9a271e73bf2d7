// SHA-256 (FIPS 180-4) of bytes and of files, for recording which weights a score came from.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace dro {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::string hex_digest();  // finishes; the object is then spent

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(std::string_view bytes);
// Streams the file; IoError naming it when it cannot be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace dro
