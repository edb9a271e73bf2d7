// Exceptions used across dro. Every message carries the component in brackets, the file or key,
// what was expected and what was found: "[safetensors] unet/x.safetensors: tensor 'a' ...".
// Caller mistakes (bad flag, bad config value) and input/output faults are distinct types so the
// program can answer them differently (usage hint vs. file problem). The library never exits.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace dro {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The caller asked for something invalid: a bad flag, an inconsistent config, an unknown name.
class UsageError : public Error {
 public:
  using Error::Error;
};

// A file is missing, unreadable, malformed or inconsistent with what it claims to be.
class IoError : public Error {
 public:
  using Error::Error;
};

// Concatenates anything streamable into one string: cat("[x] ", n, " bytes").
template <typename... Args>
std::string cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

}  // namespace dro
