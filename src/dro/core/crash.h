// A last word on fatal signals: SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT print the signal and a
// stack trace (function names where the executable exports them) to stderr, then the default
// action runs (core dump, exit status 128 + signal), so a crash on a machine without a debugger
// still says where it happened.
#pragma once

namespace dro {

// Installs the handlers once; later calls do nothing. `program` prefixes the message.
void install_crash_handler(const char* program);

}  // namespace dro
