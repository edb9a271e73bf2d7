#include "dro/io/model_folder.h"

namespace dro::io {
namespace fs = std::filesystem;

bool is_unused_component(const std::string& name) {
  return name == "safety_checker" || name == "feature_extractor" || name == "image_encoder";
}

ModelFolder ModelFolder::open(const fs::path& root) {
  const fs::path index_path = root / "model_index.json";
  if (!fs::exists(index_path))
    throw IoError(cat("[model] ", root.string(), ": no model_index.json (expected a diffusers ",
                      "pipeline folder, e.g. one written by save_pretrained)"));
  ModelFolder m;
  m.root = root;
  m.index = read_json(index_path);
  const std::string where = index_path.string();
  if (!m.index.is_object()) throw IoError(cat("[model] ", where, ": must be a JSON object"));
  m.pipeline_class = get_or<std::string>(m.index, "_class_name", "", where);
  for (auto it = m.index.begin(); it != m.index.end(); ++it) {
    if (it.key().empty() || it.key()[0] == '_') continue;
    const auto& v = it.value();
    if (!v.is_array() || v.size() != 2) continue;  // plain settings such as requires_safety_checker
    if (v[0].is_null() || v[1].is_null()) continue;
    if (!v[0].is_string() || !v[1].is_string())
      throw IoError(cat("[model] ", where, ": component '", it.key(),
                        "' must be [library, class], found ", v.dump()));
    ComponentEntry c{it.key(), v[0].get<std::string>(), v[1].get<std::string>(), root / it.key()};
    if (!fs::is_directory(c.dir) && is_unused_component(c.name)) {
      m.absent.push_back(c.name);
      continue;
    }
    if (!fs::is_directory(c.dir))
      throw IoError(cat("[model] ", where, ": lists component '", c.name, "' but folder ",
                        c.dir.string(), " is missing (incomplete download?)"));
    m.components.push_back(std::move(c));
  }
  for (const char* required : {"unet", "scheduler"})
    if (!m.has(required))
      throw IoError(cat("[model] ", where, ": no '", required, "' component"));
  return m;
}

bool ModelFolder::has(const std::string& name) const {
  for (const auto& c : components)
    if (c.name == name) return true;
  return false;
}

const ComponentEntry& ModelFolder::component(const std::string& name) const {
  for (const auto& c : components)
    if (c.name == name) return c;
  throw UsageError(cat("[model] ", root.string(), ": has no component '", name, "'"));
}

PathKind classify_path(const fs::path& path) {
  if (!fs::exists(path)) throw UsageError(cat("[inspect] ", path.string(), ": no such file or folder"));
  if (fs::is_regular_file(path)) return PathKind::kSafetensorsFile;
  if (fs::exists(path / "model_index.json")) return PathKind::kModelFolder;
  return PathKind::kComponentFolder;
}

}  // namespace dro::io
