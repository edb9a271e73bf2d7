#include "dro/core/crash.h"

#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

namespace dro {
namespace {

const char* g_program = "dro";

void write_str(const char* s) {
  if (::write(STDERR_FILENO, s, ::strlen(s)) < 0) return;
}

void on_fatal_signal(int sig) {
  // Only async-signal-safe calls here: write(2), backtrace (preloaded), backtrace_symbols_fd.
  write_str("\n");
  write_str(g_program);
  write_str(": fatal signal ");
  const char* name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : sig == SIGILL ? "SIGILL"
                     : sig == SIGFPE ? "SIGFPE" : sig == SIGABRT ? "SIGABRT" : "?";
  write_str(name);
  write_str("; stack:\n");
  void* frames[64];
  const int n = ::backtrace(frames, 64);
  ::backtrace_symbols_fd(frames, n, STDERR_FILENO);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void install_crash_handler(const char* program) {
  static bool installed = false;
  if (installed) return;
  installed = true;
  g_program = program;
  void* warm[2];
  ::backtrace(warm, 2);  // loads the unwinder now, not inside the handler
  struct sigaction sa;
  ::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) ::sigaction(sig, &sa, nullptr);
}

}  // namespace dro
