// libFuzzer target: `dro train --config FILE.json` (io/json.h, train/train_config.h). The input is
// written to a scratch file and read with io::read_json, as the CLI does; an accepted object goes
// through TrainConfig::update_from_json, validate, and the save / --resume round trip of the run
// folder's config. Rejections are dro::Error; a crash, a sanitizer report or any other exception
// (nlohmann's type_error / out_of_range ...) escaping is a finding.
#include <cstdint>
#include <string>

#include "dro/core/error.h"
#include "dro/io/json.h"
#include "dro/train/train_config.h"
#include "fuzz_util.h"

using dro::io::OrderedJson;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto path = dro::fuzz::scratch_path("config.json");
  dro::fuzz::write_bytes(path, data, size);
  OrderedJson j;
  dro::train::TrainConfig config;
  try {
    j = dro::io::read_json(path);
    const auto unused = config.update_from_json(j, path.string());
    (void)dro::train::unused_options_warning(unused, path.string());
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
