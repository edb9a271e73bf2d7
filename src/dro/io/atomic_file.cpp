#include "dro/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "dro/core/error.h"

namespace dro::io {
namespace fs = std::filesystem;

namespace {

// Flushes a written file to the disk; IoError when the kernel reports that it could not (EIO,
// ENOSPC, EDQUOT: the data may be lost, so the caller must not replace a good file with it).
void fsync_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw IoError(cat("[io] cannot reopen ", path, " to flush it: ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw IoError(cat("[io] flushing ", path, " to disk failed: ", std::strerror(err)));
}

fs::path temp_path_for(const fs::path& path) {
  static std::atomic<unsigned> counter{0};
  return path.parent_path() /
         (path.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
          std::to_string(counter++));
}

}  // namespace

void write_atomically(const fs::path& path, const std::function<void(std::ostream&)>& write) {
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(cat("[io] cannot create folder ", dir, ": ", ec.message()));
  const fs::path tmp = temp_path_for(path);
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) throw IoError(cat("[io] cannot open ", tmp, " for writing: ", std::strerror(errno)));
      write(out);
      out.close();
      if (!out) throw IoError(cat("[io] writing ", tmp, " failed (disk full?)"));
    }
    fsync_file(tmp);
    fs::rename(tmp, path, ec);
    if (ec) throw IoError(cat("[io] cannot rename ", tmp, " to ", path, ": ", ec.message()));
    sync_directory(dir);
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
}

void sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot sync a directory (EINVAL); the rename itself has then happened.
  if (rc != 0 && err != EINVAL && err != EROFS)
    throw IoError(cat("[io] flushing folder ", dir, " to disk failed: ", std::strerror(err)));
}

void write_file_atomically(const fs::path& path, const std::string& bytes) {
  write_atomically(path, [&](std::ostream& out) { out.write(bytes.data(), bytes.size()); });
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(cat("[io] cannot read ", path, ": ", std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace dro::io
