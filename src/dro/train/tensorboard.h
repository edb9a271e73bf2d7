// TensorBoard event files (scalars only): TFRecord framing with masked CRC-32C around
// hand-encoded `Event` protocol buffers, readable by TensorBoard and tensorboardX readers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace dro::train {

class TensorBoardWriter {
 public:
  // Creates `dir/events.out.tfevents.<time>.<host>` and writes the file-version record.
  explicit TensorBoardWriter(const std::filesystem::path& dir);
  void add_scalar(const std::string& tag, double value, int64_t step);
  void add_text(const std::string& tag, const std::string& text, int64_t step);
  // SessionLog START at `step`: TensorBoard then drops the events of earlier files with a larger
  // step (what a resumed run logs again), as torch's SummaryWriter(purge_step=step) does.
  void add_session_start(int64_t step);
  void flush();
  const std::filesystem::path& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::filesystem::path path_;
  std::ofstream out_;
};

// CRC-32C (Castagnoli) and TFRecord's masked form; exposed for tests.
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);

}  // namespace dro::train
