#include "golden.h"

namespace dro::test {
namespace {

uint32_t crc32(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}

void put32(std::string& s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

void chunk(std::string& png, const std::string& type, const std::string& body) {
  put32(png, static_cast<uint32_t>(body.size()));
  const std::string tb = type + body;
  png += tb;
  put32(png, crc32(tb));
}

// zlib stream of stored deflate blocks.
std::string zlib_stored(const std::string& data) {
  std::string z = "\x78\x01";
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(65535, data.size() - pos);
    const bool last = pos + n == data.size();
    z.push_back(last ? 1 : 0);
    z.push_back(static_cast<char>(n & 0xFF));
    z.push_back(static_cast<char>(n >> 8));
    z.push_back(static_cast<char>(~n & 0xFF));
    z.push_back(static_cast<char>((~n >> 8) & 0xFF));
    z.append(data, pos, n);
    pos += n;
  } while (pos < data.size());
  uint32_t a = 1, b = 0;
  for (unsigned char c : data) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  put32(z, (b << 16) | a);
  return z;
}

}  // namespace

std::string make_png(int width, int height, int bit_depth, int colour_type, const std::string& raw,
                     const std::vector<uint8_t>& plte, const std::vector<uint8_t>& trns) {
  static const int kChannels[] = {1, 0, 3, 1, 2, 0, 4};
  const size_t row_bytes =
      (static_cast<size_t>(width) * kChannels[colour_type] * bit_depth + 7) / 8;
  std::string filtered;
  for (int y = 0; y < height; ++y) {
    filtered.push_back('\0');
    filtered.append(raw, y * row_bytes, row_bytes);
  }
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  put32(ihdr, width);
  put32(ihdr, height);
  ihdr += {static_cast<char>(bit_depth), static_cast<char>(colour_type), 0, 0, 0};
  chunk(png, "IHDR", ihdr);
  if (!plte.empty()) chunk(png, "PLTE", std::string(plte.begin(), plte.end()));
  if (!trns.empty()) chunk(png, "tRNS", std::string(trns.begin(), trns.end()));
  chunk(png, "IDAT", zlib_stored(filtered));
  chunk(png, "IEND", "");
  return png;
}

}  // namespace dro::test
