// libFuzzer target: `dro train --config FILE.json` (train/train_config.h). The input is JSON text
// parsed as io::read_json does (with its Python-constant fallback); inputs that are not JSON are
// skipped, the rest go through TrainConfig::update_from_json, validate, and the save / --resume
// round trip of the run folder's config. Rejections are dro::Error; a crash, a sanitizer report or
// any other exception (nlohmann's type_error / out_of_range ...) escaping is a finding.
#include <cstdint>
#include <string>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/train/train_config.h"
#include "fuzz_util.h"

namespace {

using dro::io::OrderedJson;

OrderedJson parse_like_read_json(const std::string& text) {
  OrderedJson j = OrderedJson::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    const std::string fixed = dro::io::replace_python_constants(text);
    if (fixed != text) j = OrderedJson::parse(fixed, nullptr, false);
  }
  return j;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const OrderedJson j = parse_like_read_json(text);
  if (j.is_discarded()) return 0;
  dro::train::TrainConfig config;
  try {
    const auto unused = config.update_from_json(j, "fuzz.json");
    (void)dro::train::unused_options_warning(unused, "fuzz.json");
  } catch (const dro::Error&) {
    return 0;
  }
  // What the run folder holds, read back as --resume reads it: the same options.
  const std::string saved = config.to_json().dump(2);
  dro::train::TrainConfig back;
  back.update_from_json(OrderedJson::parse(saved), "training_config.json");
  DRO_FUZZ_CHECK(back.to_json() == config.to_json(), "config changed in the round trip:\n%s",
                 saved.c_str());
  try {
    config.validate();
  } catch (const dro::Error&) {
  }
  // The same keys as command-line values (errors name the flag instead of the file).
  try {
    dro::train::TrainConfig flags;
    flags.update_from_flags(j);
  } catch (const dro::Error&) {
  }
  return 0;
}
