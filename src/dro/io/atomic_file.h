// Crash-safe file replacement: write to a temporary file in the destination's folder, flush it to
// disk, then rename over the destination. A crash leaves either the old file or the new one.
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>

namespace dro::io {

// Calls `write` with a stream on a temporary file next to `path`, fsyncs and renames it to `path`.
// On any failure the temporary file is removed and IoError is thrown; `path` is left untouched.
void write_atomically(const std::filesystem::path& path,
                      const std::function<void(std::ostream&)>& write);

// Same for raw bytes / text.
void write_file_atomically(const std::filesystem::path& path, const std::string& bytes);

// Whole-file read; IoError naming the file when it cannot be read.
std::string read_file(const std::filesystem::path& path);

// fsync of a folder, so renames in it survive a power loss; IoError when the kernel reports an
// I/O error (file systems that cannot sync folders are accepted).
void sync_directory(const std::filesystem::path& dir);

}  // namespace dro::io
