// libFuzzer target: `dro train --config FILE.toml` (io/toml.h, then train/train_config.h). The
// input is written to a scratch file and read with read_flat_toml(path, "train"), as the CLI does;
// an accepted file then goes through TrainConfig::update_from_json and the JSON the run folder
// saves. Rejections are dro::Error; a crash, a sanitizer report or any other exception escaping
// (nlohmann's type_error for a value it cannot write back ...) is a finding.
#include <cstdint>
#include <string>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/io/toml.h"
#include "dro/train/train_config.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto path = dro::fuzz::scratch_path("config.toml");
  dro::fuzz::write_bytes(path, data, size);
  dro::io::OrderedJson j;
  try {
    j = dro::io::read_flat_toml(path, "train");
  } catch (const dro::Error&) {
    return 0;
  }
  DRO_FUZZ_CHECK(j.is_object(), "read_flat_toml returned a %s", j.type_name());
  // The table is a JSON object: it must be writable as JSON (dro prints and saves options).
  (void)j.dump();
  dro::train::TrainConfig config;
  try {
    (void)config.update_from_json(j, path.string());
  } catch (const dro::Error&) {
    return 0;
  }
  (void)config.to_json().dump(2);
  return 0;
}
