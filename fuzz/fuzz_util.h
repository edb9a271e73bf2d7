// Helpers shared by the libFuzzer targets: a scratch file per process for the readers that take a
// path, and the abort that turns a broken promise into a finding libFuzzer keeps.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

namespace dro::fuzz {

// A file in TMPDIR (default /tmp) named after the process, so parallel fuzzers do not collide;
// removed when the process exits normally.
inline std::filesystem::path scratch_path(const std::string& name) {
  static std::vector<std::filesystem::path> made;
  if (made.empty())
    std::atexit([] {
      std::error_code ec;
      for (const auto& p : made) std::filesystem::remove(p, ec);
    });
  const char* dir = std::getenv("TMPDIR");
  made.push_back(std::filesystem::path(dir && *dir ? dir : "/tmp") /
                 ("dro-fuzz-" + std::to_string(::getpid()) + "-" + name));
  return made.back();
}

inline void write_bytes(const std::filesystem::path& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out.flush()) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// A property the code under test promises does not hold: report it and stop (libFuzzer saves the
// input as crash-*).
#define DRO_FUZZ_CHECK(cond, ...)                                                         \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                                                  \
      std::fprintf(stderr, "\n");                                                         \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

}  // namespace dro::fuzz
