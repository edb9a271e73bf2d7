// The HTTP side of `dro serve`: the page and the JSON API over an Engine, a FeedbackStore and a
// StudyLog (cpp-httplib; its headers stay in server.cpp). Routes (README, "dro serve"):
//   GET  /                      the page (every asset inline; nothing from elsewhere)
//   GET  /api/models            models, samplers, limits
//   POST /api/generate          {"prompt", "seed", "steps", "guidance", "sampler", "models",
//                                "images_per_model", "shuffle", "wait"} -> {"job", "images": [...]}
//   GET  /api/jobs/<id>         a job's state, progress and (when done) images
//   GET  /images/<id>.png       an image made here
//   POST /api/feedback          {"session", "prompt", "shown": [urls], "kept": url} (keep), or
//                                "event": "skip" | "download" (+ "image": url)
//   POST /api/study/trial       two models' images, same prompt and seed, random order, unnamed
//   POST /api/study             {"trial", "choice": "left" | "right", "session"}
//   GET  /api/study/results     win rate with 95% interval, votes per prompt
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dro/serve/engine.h"
#include "dro/serve/feedback_log.h"
#include "dro/serve/study.h"

namespace dro::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 7860;
  size_t max_body_bytes = 64 * 1024;
  std::vector<std::string> study_models;  // the two models of the study (default: a random pair)
  bool quiet = false;                     // no request log
};

class Server {
 public:
  Server(Engine& engine, FeedbackStore& feedback, StudyLog& study, ServerOptions options);
  ~Server();
  // Binds and serves until stop(); IoError when the address cannot be bound.
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dro::serve
