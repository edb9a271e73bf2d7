#include "dro/serve/server.h"

#include <httplib.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <random>
#include <set>

#include "dro/core/error.h"
#include "dro/serve/page.h"

namespace dro::serve {

namespace {

using Json = io::OrderedJson;

// A request the caller got wrong: answered with `status` and {"error": message}.
struct HttpError : Error {
  int status;
  HttpError(int s, const std::string& m) : Error(m), status(s) {}
};

void send_json(httplib::Response& res, const Json& j, int status = 200) {
  res.status = status;
  res.set_content(j.dump(), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, {{"error", message}}, status);
}

// The body of a POST: a JSON object whose keys are all in `allowed`.
Json parse_body(const httplib::Request& req, const std::set<std::string>& allowed) {
  const std::string type = req.get_header_value("Content-Type");
  // Requiring JSON makes a cross-site form post (which cannot set this type without a CORS
  // preflight this server never answers) fail, so another page cannot write feedback.
  if (type.rfind("application/json", 0) != 0)
    throw HttpError(415, "send the body as Content-Type: application/json");
  Json j;
  try {
    j = Json::parse(req.body);
  } catch (const nlohmann::json::parse_error& e) {
    throw HttpError(400, cat("the body is not valid JSON (error at byte ", e.byte, ")"));
  }
  if (!j.is_object()) throw HttpError(400, "the body must be a JSON object");
  for (const auto& [k, v] : j.items())
    if (!allowed.count(k)) {
      std::string names;
      for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
      throw HttpError(400, cat("unknown field '", k.substr(0, 40), "' (accepted: ", names, ")"));
    }
  return j;
}

std::string get_string(const Json& j, const std::string& key, const std::string& fallback, size_t max_bytes) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_string()) throw HttpError(400, cat("field '", key, "' must be a string"));
  const auto s = it->get<std::string>();
  if (s.size() > max_bytes) throw HttpError(400, cat("field '", key, "' is longer than ", max_bytes, " bytes"));
  return s;
}

int64_t get_int(const Json& j, const std::string& key, int64_t fallback, int64_t lo, int64_t hi) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (d != std::floor(d)) throw HttpError(400, cat("field '", key, "' must be an integer (found ", it->dump(), ")"));
  } else if (!it->is_number()) {
    throw HttpError(400, cat("field '", key, "' must be an integer (found ", it->type_name(), ")"));
  }
  const double d = it->get<double>();
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
    throw HttpError(400, cat("field '", key, "' must be in ", lo, "..", hi, " (found ", it->dump(), ")"));
  return it->is_number_unsigned() ? static_cast<int64_t>(it->get<uint64_t>()) : it->get<int64_t>();
}

double get_double(const Json& j, const std::string& key, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) throw HttpError(400, cat("field '", key, "' must be a number"));
  return it->get<double>();
}

bool get_bool(const Json& j, const std::string& key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw HttpError(400, cat("field '", key, "' must be true or false"));
  return it->get<bool>();
}

// Image urls are "/images/<id>.png"; the bare id is accepted too. Anything else is refused
// before it reaches a lookup, and a lookup is by id in memory only.
std::string image_id(const std::string& url, const std::string& field) {
  std::string s = url;
  const std::string prefix = "/images/", suffix = ".png";
  const auto at = s.find(prefix);
  if (at != std::string::npos) s = s.substr(at + prefix.size());
  if (s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0)
    s = s.substr(0, s.size() - suffix.size());
  if (!is_id(s)) throw HttpError(400, cat("field '", field, "' is not an image url of this server"));
  return s;
}

// Session ids come from the page: up to 64 letters, digits, '-' or '_'.
std::string session_id(const Json& j) {
  const std::string s = get_string(j, "session", "", 64);
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_')
      throw HttpError(400, "field 'session' may hold only letters, digits, '-' and '_'");
  return s;
}

Json image_json(const ImageInfo& i) {
  return {{"model", i.model}, {"seed", i.seed}, {"url", "/images/" + i.id + ".png"}, {"id", i.id}};
}

Json job_json(const JobStatus& s) {
  Json j{{"job", s.id},
         {"state", s.state},
         {"steps_done", s.steps_done},
         {"steps_total", s.steps_total},
         {"queue_position", s.queue_position},
         {"seconds", s.seconds}};
  if (!s.error.empty()) j["error"] = s.error;
  if (s.state == "done") {
    j["images"] = Json::array();
    for (const auto& i : s.images) j["images"].push_back(image_json(i));
  }
  return j;
}

bool loopback(const std::string& host) { return host == "127.0.0.1" || host == "localhost" || host == "::1"; }

}  // namespace

struct Server::Impl {
  Engine& engine;
  FeedbackStore& feedback;
  StudyLog& study;
  ServerOptions options;
  httplib::Server http;
  std::mt19937_64 pair_rng{std::random_device{}()};
  std::mutex pair_mutex;

  Impl(Engine& e, FeedbackStore& f, StudyLog& s, ServerOptions o)
      : engine(e), feedback(f), study(s), options(std::move(o)) {}

  // Runs a handler, turning its exceptions into JSON errors; the server keeps serving.
  template <typename F>
  httplib::Server::Handler wrap(F f) {
    return [this, f](const httplib::Request& req, httplib::Response& res) {
      try {
        if (loopback(options.host)) check_host(req);
        f(req, res);
      } catch (const HttpError& e) {
        send_error(res, e.status, e.what());
      } catch (const QueueFull& e) {
        send_error(res, 503, e.what());
      } catch (const UsageError& e) {
        send_error(res, 400, e.what());
      } catch (const std::exception& e) {
        std::cerr << "[serve] " << req.method << " " << req.path << ": " << e.what() << std::endl;
        send_error(res, 500, e.what());
      }
    };
  }

  // Bound to loopback, the Host header must name it too: a page on another site that points its
  // own name at 127.0.0.1 (DNS rebinding) is refused.
  void check_host(const httplib::Request& req) const {
    std::string h = req.get_header_value("Host");
    if (h.empty()) return;
    if (h.front() == '[') {
      h = h.substr(1, h.find(']') == std::string::npos ? std::string::npos : h.find(']') - 1);
    } else if (const auto colon = h.rfind(':'); colon != std::string::npos) {
      h = h.substr(0, colon);
    }
    if (!loopback(h)) throw HttpError(403, "this server answers only to localhost / 127.0.0.1");
  }

  GenerateRequest generate_request(const Json& j) const {
    const Limits& l = engine.limits();
    GenerateRequest r;
    r.prompt = get_string(j, "prompt", "", l.max_prompt_bytes);
    r.negative_prompt = get_string(j, "negative_prompt", "", l.max_prompt_bytes);
    r.seed = static_cast<uint64_t>(get_int(j, "seed", 0, 0, (int64_t{1} << 53)));
    r.steps = get_int(j, "steps", 20, 1, l.max_steps);
    r.guidance = get_double(j, "guidance", 3.0);
    r.sampler = get_string(j, "sampler", "ddim", 32);
    r.images_per_model = get_int(j, "images_per_model", 1, 1, l.max_images_per_model);
    r.shuffle = get_bool(j, "shuffle", false);
    if (j.contains("models") && !j["models"].is_null()) {
      if (!j["models"].is_array()) throw HttpError(400, "field 'models' must be a list of model names");
      if (j["models"].size() > 64) throw HttpError(400, "field 'models' lists too many models");
      for (const auto& m : j["models"]) {
        if (!m.is_string()) throw HttpError(400, "field 'models' must be a list of model names");
        r.models.push_back(m.get<std::string>());
      }
    }
    return r;
  }

  void routes() {
    http.Get("/", wrap([](const httplib::Request&, httplib::Response& res) {
      res.set_header("Content-Security-Policy",
                     "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'");
      res.set_content(kPage, "text/html; charset=utf-8");
    }));
    http.Get("/api/models", wrap([this](const httplib::Request&, httplib::Response& res) {
      Json j = engine.describe();
      j["study_models"] = options.study_models;
      send_json(res, j);
    }));
    http.Post("/api/generate", wrap([this](const httplib::Request& req, httplib::Response& res) {
      const Json j = parse_body(req, {"prompt", "negative_prompt", "seed", "steps", "guidance", "sampler", "models",
                                      "images_per_model", "shuffle", "wait"});
      const std::string job = engine.submit(generate_request(j));
      if (!get_bool(j, "wait", true)) {
        Json out = job_json(*engine.status(job));
        out["status_url"] = "/api/jobs/" + job;
        send_json(res, out, 202);
        return;
      }
      const JobStatus s = engine.wait(job);
      if (s.state == "failed") throw std::runtime_error(s.error);
      send_json(res, job_json(s));
    }));
    http.Get(R"(/api/jobs/([0-9a-f]{32}))", wrap([this](const httplib::Request& req, httplib::Response& res) {
      const auto s = engine.status(req.matches[1]);
      if (!s) throw HttpError(404, "unknown job (finished jobs are kept for a while only)");
      send_json(res, job_json(*s));
    }));
    http.Get(R"(/images/([0-9a-f]{32})\.png)", wrap([this](const httplib::Request& req, httplib::Response& res) {
      const std::string id = req.matches[1];
      const auto png = engine.png(id);
      if (!png) throw HttpError(404, "unknown image (images are held in memory while the server runs)");
      // The name says nothing about the model: study images are blind.
      res.set_header("Content-Disposition", "inline; filename=\"dro-" + id.substr(0, 8) + ".png\"");
      res.set_header("Cache-Control", "private, max-age=86400, immutable");
      res.set_content(*png, "image/png");
    }));
    http.Post("/api/feedback", wrap([this](const httplib::Request& req, httplib::Response& res) {
      const Json j = parse_body(req, {"session", "prompt", "shown", "kept", "event", "image"});
      FeedbackEvent e;
      e.session = session_id(j);
      e.prompt = get_string(j, "prompt", "", engine.limits().max_prompt_bytes);
      e.event = get_string(j, "event", j.contains("kept") ? "keep" : "", 16);
      if (e.event != "keep" && e.event != "skip" && e.event != "download")
        throw HttpError(400, "field 'event' must be keep, skip or download (or give 'kept')");
      if (!j.contains("shown") || !j["shown"].is_array() || j["shown"].empty())
        throw HttpError(400, "field 'shown' must be a non-empty list of image urls");
      if (j["shown"].size() > static_cast<size_t>(engine.limits().max_images))
        throw HttpError(400, cat("field 'shown' lists more than ", engine.limits().max_images, " images"));
      std::set<std::string> ids;
      std::vector<std::pair<ImageInfo, std::string>> images;
      for (const auto& u : j["shown"]) {
        if (!u.is_string()) throw HttpError(400, "field 'shown' must be a list of image urls");
        const std::string id = image_id(u.get<std::string>(), "shown");
        if (!ids.insert(id).second) throw HttpError(400, "field 'shown' lists an image twice");
        const auto info = engine.info(id);
        const auto png = engine.png(id);
        if (!info || !png) throw HttpError(404, "an image in 'shown' is unknown here (generate again)");
        if (info->prompt != e.prompt) throw HttpError(400, "field 'prompt' is not the prompt these images were made for");
        images.emplace_back(*info, *png);
      }
      if (e.event == "keep") {
        e.kept = image_id(get_string(j, "kept", "", 256), "kept");
        if (!ids.count(e.kept)) throw HttpError(400, "field 'kept' is not one of the images in 'shown'");
      } else if (j.contains("kept") && !j["kept"].is_null()) {
        throw HttpError(400, "field 'kept' goes with event keep only");
      }
      if (e.event == "download") {
        e.image = image_id(get_string(j, "image", "", 256), "image");
        if (!ids.count(e.image)) throw HttpError(400, "field 'image' is not one of the images in 'shown'");
      }
      for (const auto& [info, png] : images) {
        feedback.save_image(info.id, png);
        e.shown.push_back({info.id, info.model, info.seed});
        e.settings = info.settings;
      }
      feedback.record(e);  // returns after the fsync: the answer below acknowledges a durable entry
      send_json(res, {{"ok", true}, {"event", e.event}});
    }));
    http.Post("/api/study/trial", wrap([this](const httplib::Request& req, httplib::Response& res) {
      const Json j = parse_body(req, {"prompt", "seed", "steps", "guidance", "sampler", "session"});
      const auto names = engine.model_names();
      std::vector<std::string> pair = options.study_models;
      if (pair.empty()) {
        if (names.size() < 2) throw HttpError(400, "the study needs two models; this server has one");
        std::lock_guard<std::mutex> lock(pair_mutex);
        const size_t a = pair_rng() % names.size();
        size_t b = pair_rng() % (names.size() - 1);
        if (b >= a) ++b;
        pair = {names[a], names[b]};
      }
      Json gen = j;
      gen.erase("session");
      GenerateRequest r = generate_request(gen);
      r.models = pair;
      r.images_per_model = 1;
      if (!j.contains("seed")) {
        std::lock_guard<std::mutex> lock(pair_mutex);
        r.seed = pair_rng() % 1000000;
      }
      const JobStatus s = engine.wait(engine.submit(r));
      if (s.state == "failed") throw std::runtime_error(s.error);
      Trial t;
      t.id = new_id();
      t.prompt = r.prompt;
      t.seed = r.seed;
      const bool a_left = coin_flip();
      const ImageInfo& ia = s.images[a_left ? 0 : 1];
      const ImageInfo& ib = s.images[a_left ? 1 : 0];
      t.left = ia.model;
      t.right = ib.model;
      t.left_image = ia.id;
      t.right_image = ib.id;
      study.open_trial(t);
      // Nothing here names a model.
      send_json(res, {{"trial", t.id},
                      {"prompt", t.prompt},
                      {"seed", t.seed},
                      {"left", "/images/" + t.left_image + ".png"},
                      {"right", "/images/" + t.right_image + ".png"}});
    }));
    http.Post("/api/study", wrap([this](const httplib::Request& req, httplib::Response& res) {
      const Json j = parse_body(req, {"trial", "choice", "session"});
      const std::string trial = get_string(j, "trial", "", 64);
      if (!is_id(trial)) throw HttpError(400, "field 'trial' is not a trial id");
      const Vote v = study.vote(trial, get_string(j, "choice", "", 16), session_id(j));
      send_json(res, {{"ok", true}, {"votes", static_cast<int64_t>(study.votes().size())}});
    }));
    http.Get("/api/study/results", wrap([this](const httplib::Request&, httplib::Response& res) {
      send_json(res, study_results(study.votes()));
    }));
    http.set_error_handler([this](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 404)
        send_error(res, 404, "no such route (GET / is the page; the README lists the API)");
      else if (res.status == 413)
        send_error(res, 413, cat("the request body is larger than ", options.max_body_bytes, " bytes"));
      else
        send_error(res, res.status, cat("malformed request (HTTP ", res.status, ")"));
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      send_error(res, 500, "internal error");
    });
    if (!options.quiet)
      http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
        if (req.path.rfind("/api/jobs/", 0) == 0 && res.status == 200) return;  // progress polls
        if (req.path.rfind("/images/", 0) == 0 && res.status == 200) return;
        std::cerr << "[serve] " << req.method << " " << req.path.substr(0, 80) << " " << res.status
                  << (res.status >= 400 ? " " + res.body.substr(0, 200) : std::string()) << std::endl;
      });
  }
};

Server::Server(Engine& engine, FeedbackStore& feedback, StudyLog& study, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, feedback, study, std::move(options))) {
  auto& h = impl_->http;
  // More connection threads than queued jobs, so a waiting /api/generate never blocks the page.
  const size_t threads = impl_->engine.limits().max_queue + 16;
  h.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  h.set_payload_max_length(impl_->options.max_body_bytes);
  h.set_read_timeout(10, 0);
  h.set_write_timeout(10, 0);
  h.set_keep_alive_timeout(5);
  h.set_default_headers({{"X-Content-Type-Options", "nosniff"}, {"Referrer-Policy", "no-referrer"},
                         {"X-Frame-Options", "DENY"}});
  impl_->routes();
}

Server::~Server() = default;

void Server::run() {
  auto& o = impl_->options;
  int port = o.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(o.host);
    if (port <= 0) throw IoError(cat("[serve] cannot bind ", o.host, " to a free port"));
  } else if (!impl_->http.bind_to_port(o.host, port)) {
    throw IoError(cat("[serve] cannot listen on ", o.host, ":", port, " (in use? try --port)"));
  }
  const bool v6 = o.host.find(':') != std::string::npos;
  std::cerr << "[serve] listening on http://" << (v6 ? "[" + o.host + "]" : o.host) << ":" << port << "/"
            << std::endl;
  if (!loopback(o.host))
    std::cerr << "[serve] note: --host " << o.host << " lets other machines use this server and write feedback"
              << std::endl;
  impl_->http.listen_after_bind();
}

void Server::stop() { impl_->http.stop(); }

}  // namespace dro::serve
