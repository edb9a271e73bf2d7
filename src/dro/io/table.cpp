#include "dro/io/table.h"

#include <algorithm>

#include "dro/core/error.h"
#include "dro/io/atomic_file.h"

namespace dro::io {
namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}

}  // namespace

// RFC 4180 CSV: quoted fields with "" escapes and newlines inside quotes.
std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& where) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
      any = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (any || !field.empty()) {
        row.push_back(field);
        rows.push_back(row);
      }
      row.clear();
      field.clear();
      any = false;
    } else {
      field += c;
      any = true;
    }
  }
  if (quoted) throw IoError(cat(where, ": a quoted field is not closed"));
  if (any || !field.empty()) {
    row.push_back(field);
    rows.push_back(row);
  }
  return rows;
}

std::vector<OrderedJson> read_table(const fs::path& file, const std::string& who) {
  const std::string text = read_file(file);
  std::vector<OrderedJson> out;
  if (lower(file.extension().string()) == ".csv") {
    const auto rows = parse_csv(text, cat("[", who, "] ", file.string()));
    if (rows.empty()) return out;
    const auto& header = rows[0];
    for (size_t r = 1; r < rows.size(); ++r) {
      if (rows[r].size() != header.size())
        throw IoError(cat("[", who, "] ", file.string(), " row ", r + 1, ": ", rows[r].size(), " fields, the header has ",
                          header.size()));
      OrderedJson j;
      for (size_t c = 0; c < header.size(); ++c) j[header[c]] = rows[r][c];
      out.push_back(std::move(j));
    }
    return out;
  }
  size_t start = 0;
  int64_t line_no = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      auto j = OrderedJson::parse(line);
      if (!j.is_object()) throw std::runtime_error("not an object");
      out.push_back(std::move(j));
    } catch (const std::exception& e) {
      throw IoError(cat("[", who, "] ", file.string(), " line ", line_no, ": not a JSON object (", e.what(), ")"));
    }
  }
  return out;
}

}  // namespace dro::io
