// `dro serve`: the web playground (compare models side by side, collect implicit feedback, run a
// blind A/B study) and `dro serve export`, which turns the collected feedback into the layouts
// `dro train` reads. The server itself lives in dro/serve/.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <iostream>
#include <regex>
#include <thread>

#include "commands.h"
#include "dro/core/error.h"
#include "dro/serve/engine.h"
#include "dro/serve/feedback_log.h"
#include "dro/serve/study.h"
#include "dro/world/demo.h"
#ifdef DRO_WITH_SERVE
#include "dro/serve/server.h"
#endif

namespace dro::app {
namespace fs = std::filesystem;

namespace {

int g_stop_pipe[2] = {-1, -1};

struct ServeOpts {
  std::string model, base_name = "base", demo_report = "demo-report", host = "127.0.0.1", feedback = "feedback",
                     device = "auto";
  std::vector<std::string> unets, loras, study_models;
  int port = 7860;
  serve::Limits limits;
  bool quiet = false;
};

// DEMO/train/dro/ckpt-N/unet with the highest N, or empty.
[[maybe_unused]] fs::path latest_demo_unet(const fs::path& demo) {
  std::error_code ec;
  fs::path best;
  long best_n = -1;
  const fs::path dir = demo / "train" / "dro";
  if (!fs::is_directory(dir, ec)) return best;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("ckpt-", 0) != 0 || !fs::exists(e.path() / "unet" / "config.json")) continue;
    char* end = nullptr;
    const long n = std::strtol(name.c_str() + 5, &end, 10);
    if (end && *end == '\0' && n > best_n) best_n = n, best = e.path() / "unet";
  }
  return best;
}

[[maybe_unused]] std::vector<serve::ModelSpec> model_specs(const ServeOpts& o) {
  std::vector<serve::ModelSpec> specs;
  fs::path base = o.model;
  if (base.empty()) {
    base = world::find_default_base_model(executable_path());
    if (base.empty())
      throw UsageError("[serve] the shipped base model (assets/world-base) was not found next to the program or in "
                       "its source tree; pass --model DIR");
  }
  if (!fs::exists(base / "model_index.json"))
    throw UsageError(cat("[serve] --model ", base.string(), ": no model_index.json (expected a diffusers model folder)"));
  specs.push_back({o.base_name, base, {}, {}});
  const std::regex name_re("[A-Za-z0-9_.-]{1,32}");
  for (const auto& u : o.unets) {
    const auto eq = u.find('=');
    if (eq == std::string::npos || !std::regex_match(u.substr(0, eq), name_re))
      throw UsageError(cat("[serve] --unet '", u, "': expected NAME=DIR, NAME of 1-32 letters, digits, '.', '_' or '-'"));
    const fs::path dir = u.substr(eq + 1);
    if (!fs::exists(dir / "config.json"))
      throw UsageError(cat("[serve] --unet ", u, ": ", dir.string(), " has no config.json (expected a UNet folder, "
                           "e.g. LOGDIR/ckpt-N/unet)"));
    specs.push_back({u.substr(0, eq), base, dir, {}});
  }
  for (const auto& l : o.loras) {
    const auto eq = l.find('=');
    if (eq == std::string::npos || !std::regex_match(l.substr(0, eq), name_re))
      throw UsageError(cat("[serve] --lora '", l, "': expected NAME=FILE[:SCALE], NAME of 1-32 letters, digits, '.', "
                           "'_' or '-'"));
    const auto spec = models::parse_lora_spec(l.substr(eq + 1));
    if (!fs::is_regular_file(spec.file))
      throw UsageError(cat("[serve] --lora ", l, ": ", spec.file.string(), " is not a file (expected a LoRA "
                           "safetensors file, e.g. LOGDIR/ckpt-N/pytorch_lora_weights.safetensors)"));
    specs.push_back({l.substr(0, eq), base, {}, {spec}});
  }
  // The embedded default: the shipped base, and the demo's tuned model when `dro demo` has run.
  if (o.model.empty() && o.unets.empty() && o.loras.empty()) {
    const fs::path tuned = latest_demo_unet(o.demo_report);
    if (!tuned.empty())
      specs.push_back({"dro", base, tuned, {}});
    else
      std::cerr << "[serve] no " << (fs::path(o.demo_report) / "train/dro/ckpt-*/unet").string()
                << " found: serving the base model alone (run `dro demo` for base vs DRO)" << std::endl;
  }
  return specs;
}

}  // namespace

Action register_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve", "A web playground in the program: compare models side by side from the same seeds, collect implicit "
               "feedback (which of K images a user keeps) and run blind A/B votes as the paper's user study. "
               "Feedback is appended durably under --feedback; `dro serve export` writes the expert folder, "
               "pairs.jsonl and labels.jsonl that `dro train` reads. With no --model: the shipped world base "
               "model and, after `dro demo`, its DRO model.");
  auto o = std::make_shared<ServeOpts>();
  cmd->add_option("--model", o->model, "diffusers model folder (default: the shipped assets/world-base)");
  cmd->add_option("--unet", o->unets,
                  "NAME=DIR: also serve --model with this UNet (e.g. dro=LOGDIR/ckpt-N/unet); repeatable");
  cmd->add_option("--lora", o->loras,
                  "NAME=FILE[:SCALE]: also serve --model with this LoRA merged into its UNet (either layout, e.g. "
                  "dro=LOGDIR/ckpt-N/pytorch_lora_weights.safetensors); repeatable");
  cmd->add_option("--base-name", o->base_name, "name of --model with its own UNet")->capture_default_str();
  cmd->add_option("--demo-report", o->demo_report,
                  "without --model: take the DRO model from this `dro demo` report (train/dro/ckpt-N/unet, highest N)")
      ->capture_default_str();
  cmd->add_option("--port", o->port, "TCP port (0: any free port, printed)")->check(CLI::Range(0, 65535))->capture_default_str();
  cmd->add_option("--host", o->host, "address to listen on (other than loopback lets other machines in)")
      ->capture_default_str();
  cmd->add_option("--feedback", o->feedback, "folder the feedback and study votes are appended to")->capture_default_str();
  cmd->add_option("--device", o->device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--study-models", o->study_models, "the two models of the blind study, comma-separated (default: a random pair per trial)")
      ->delimiter(',');
  cmd->add_option("--max-steps", o->limits.max_steps, "largest steps a request may ask for")
      ->check(CLI::Range(1, 1000))->capture_default_str();
  cmd->add_option("--max-images", o->limits.max_images, "most images per request")->check(CLI::Range(1, 256))->capture_default_str();
  cmd->add_option("--max-job-seconds", o->limits.max_job_seconds,
                  "refuse a request whose estimated time (from the step time measured at load) is longer")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--max-queue", o->limits.max_queue, "most jobs queued or running")->check(CLI::Range(1, 256))->capture_default_str();
  cmd->add_flag("--quiet", o->quiet, "no request log");

  auto* exp = cmd->add_subcommand("export", "Write the collected feedback as training data: OUT/expert/ (kept images, "
                                            "for --objective dro or sft), OUT/pairs.jsonl (kept vs not kept, dpo) and "
                                            "OUT/labels.jsonl (kept 1 / passed over 0, kto), image paths relative to OUT");
  auto efb = std::make_shared<std::string>();
  auto eout = std::make_shared<std::string>();
  auto eover = std::make_shared<bool>(false);
  exp->add_option("--feedback", *efb, "the folder `dro serve --feedback` wrote")->required();
  exp->add_option("--out", *eout, "output folder")->required();
  exp->add_flag("--overwrite", *eover, "replace a non-empty --out");

  return [o, exp, efb, eout, eover]() {
    if (exp->parsed()) {
      const auto s = serve::export_feedback(*efb, *eout, *eover);
      std::cerr << "[serve export] " << s.events << " events (" << s.keeps << " keeps, " << s.skips << " skips, "
                << s.downloads << " downloads) -> " << s.expert << " expert images, " << s.pairs << " pairs, "
                << s.desirable << " + " << s.undesirable << " labels in " << *eout << "\n";
      if (s.bad_lines || s.bad_events || s.missing_images)
        std::cerr << "[serve export] left out: " << s.bad_lines << " torn or malformed lines, " << s.bad_events
                  << " invalid events, " << s.missing_images << " events with a missing image\n";
      return 0;
    }
#ifdef DRO_WITH_SERVE
    if (o->host.empty()) throw UsageError("[serve] --host is empty");
    if (!o->study_models.empty() && o->study_models.size() != 2)
      throw UsageError("[serve] --study-models takes two model names, comma-separated");
    const auto specs = model_specs(*o);
    for (const auto& m : o->study_models) {
      bool found = false;
      for (const auto& s : specs) found = found || s.name == m;
      if (!found) throw UsageError(cat("[serve] --study-models: no model named '", m, "'"));
    }
    serve::FeedbackStore feedback(o->feedback);
    serve::StudyLog study(fs::path(o->feedback) / "study.jsonl");
    std::cerr << "[serve] feedback appended to " << feedback.log_path().string() << ", study votes to "
              << study.path().string() << " (" << study.votes().size() << " so far)" << std::endl;
    serve::Engine engine(specs, o->device, o->limits);
    serve::ServerOptions so;
    so.host = o->host;
    so.port = o->port;
    so.study_models = o->study_models;
    so.quiet = o->quiet;
    serve::Server server(engine, feedback, study, so);
    // SIGINT / SIGTERM write a byte to a pipe (all a signal handler may safely do, in whichever
    // thread it lands); a thread reading it stops the server, and the program ends normally.
    if (::pipe(g_stop_pipe) != 0) throw IoError("[serve] cannot create a pipe");
    struct sigaction sa {};
    sa.sa_handler = [](int) {
      const char b = 1;
      [[maybe_unused]] const ssize_t n = ::write(g_stop_pipe[1], &b, 1);
    };
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    std::thread stopper([&] {
      char b = 0;
      while (::read(g_stop_pipe[0], &b, 1) < 0 && errno == EINTR) {
      }
      if (b == 1) std::cerr << "[serve] stopping" << std::endl;
      server.stop();
    });
    auto end_stopper = [&] {
      const char b = 2;
      [[maybe_unused]] const ssize_t n = ::write(g_stop_pipe[1], &b, 1);
      stopper.join();
    };
    try {
      server.run();
    } catch (...) {
      end_stopper();
      throw;
    }
    end_stopper();
    return 0;
#else
    (void)o;
    throw UsageError("[serve] this dro was built without cpp-httplib (install libcpp-httplib-dev and rebuild); "
                     "`dro serve export` works");
#endif
  };
}

}  // namespace dro::app
