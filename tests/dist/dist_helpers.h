// Helpers of the process-group tests.
#pragma once

#include <algorithm>

#include <gtest/gtest.h>

#include "dro/dist/process_group.h"

// Skips a test that needs the Gloo backend when this build has none.
#define DRO_REQUIRE_GLOO()                                                                  \
  do {                                                                                      \
    const auto b = ::dro::dist::available_backends();                                      \
    if (std::find(b.begin(), b.end(), "gloo") == b.end()) GTEST_SKIP() << "built without Gloo"; \
  } while (0)
