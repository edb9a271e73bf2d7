// Runs the real `dro serve` on a free loopback port with the shipped world base model and talks
// to it over plain sockets: generation, feedback, export, the blind study, malformed and oversized
// requests, a kill -9 while feedback is being written, the page in headless Chromium, and
// `dro train` on the exported feedback.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "dro/core/error.h"
#include "dro/data/expert_dataset.h"
#include "dro/data/preference_data.h"
#include "dro/io/atomic_file.h"
#include "dro/io/image.h"
#include "dro/io/json.h"
#include "dro/models/lora_file.h"
#include "dro/models/unet.h"
#include "dro/core/rng.h"
#include "dro/serve/feedback_log.h"
#include "test_util.h"

namespace dro {
namespace {
namespace fs = std::filesystem;
using Json = io::OrderedJson;

const std::string kDro = DRO_BINARY;
const fs::path kBase = fs::path(DRO_SOURCE_DIR) / "assets" / "world-base";

#ifndef DRO_WITH_SERVE
#define DRO_REQUIRE_SERVE() GTEST_SKIP() << "dro was built without cpp-httplib: no `dro serve` server to test"
#else
#define DRO_REQUIRE_SERVE() \
  do {                      \
  } while (0)
#endif

struct Reply {
  int status = 0;
  std::string headers, body;
  Json json() const { return Json::parse(body); }
};

// One request on a fresh connection, read to the end ("Connection: close").
Reply send_raw(int port, const std::string& bytes, bool read_reply = true) {
  Reply r;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{60, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return r;
  }
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer (413) and close before reading everything
    sent += static_cast<size_t>(n);
  }
  if (!read_reply) {  // a client that goes away mid-request
    ::close(fd);
    return r;
  }
  std::string in;
  char buf[65536];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) in.append(buf, static_cast<size_t>(n));
  ::close(fd);
  const auto end = in.find("\r\n\r\n");
  if (in.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) return r;
  r.status = std::stoi(in.substr(9, 3));
  r.headers = in.substr(0, end);
  r.body = in.substr(end + 4);
  return r;
}

Reply request(int port, const std::string& method, const std::string& path, const std::string& body = "",
              const std::string& type = "application/json") {
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nConnection: close\r\n";
  if (method == "POST")
    req += "Content-Type: " + type + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return send_raw(port, req + "\r\n" + body);
}
Reply post(int port, const std::string& path, const Json& j) { return request(port, "POST", path, j.dump()); }

// `dro serve ARGS --port 0` in the background; the port is read from its log.
class ServerProcess {
 public:
  ServerProcess(const std::string& args, const fs::path& log, const fs::path& cwd = {}) : log_(log) {
    pid_ = ::fork();
    if (pid_ == 0) {
      if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(127);
      const std::string cmd = "exec " + kDro + " serve " + args + " --port 0 > " + log.string() + " 2>&1";
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < until) {
      const std::string text = fs::exists(log) ? io::read_file(log) : "";
      const auto at = text.find("listening on http://127.0.0.1:");
      if (at != std::string::npos && text.find('/', at + 30) != std::string::npos) {
        port_ = std::stoi(text.substr(at + 30));
        return;
      }
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~ServerProcess() { kill(SIGTERM); }
  int port() const { return port_; }
  bool running() const { return pid_ > 0; }
  std::string log() const { return fs::exists(log_) ? io::read_file(log_) : ""; }
  // Signals the server and waits for it; returns its exit status (or 128 + signal).
  int kill(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

std::string two_models(const fs::path& tmp) {
  return "--model " + kBase.string() + " --unet twin=" + (kBase / "unet").string() + " --feedback " +
         (tmp / "fb").string() + " --device cpu";
}

std::string id_of(const std::string& url) { return url.substr(8, 32); }

TEST(ServeApi, GenerateFeedbackExportAndStudy) {
  DRO_REQUIRE_SERVE();
  test::TempDir tmp;
  ServerProcess server(two_models(tmp.path()), tmp / "log.txt");
  ASSERT_GT(server.port(), 0) << server.log();
  const int port = server.port();

  const Reply page = request(port, "GET", "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("<title>dro serve</title>"), std::string::npos);
  EXPECT_EQ(page.body.find("http://"), std::string::npos) << "the page loads nothing from elsewhere";
  EXPECT_EQ(page.body.find("https://"), std::string::npos);

  const Json models = request(port, "GET", "/api/models").json();
  ASSERT_EQ(models["models"].size(), 2u);
  EXPECT_EQ(models["models"][0]["name"], "base");
  EXPECT_EQ(models["models"][1]["name"], "twin");
  EXPECT_EQ(models["models"][0]["size"], 32);

  // Compare: both models, two images each, the same seeds; the twin (the same weights) draws the same.
  const std::string prompt = "a large red circle on a dark background, left";
  Reply g = post(port, "/api/generate",
                 {{"prompt", prompt}, {"seed", 7}, {"steps", 3}, {"guidance", 3}, {"images_per_model", 2}});
  ASSERT_EQ(g.status, 200) << g.body;
  const Json imgs = g.json()["images"];
  ASSERT_EQ(imgs.size(), 4u);
  std::map<std::string, std::vector<uint64_t>> seeds;
  std::map<std::pair<std::string, uint64_t>, std::string> png;
  for (const auto& im : imgs) {
    seeds[im["model"]].push_back(im["seed"]);
    const Reply r = request(port, "GET", im["url"]);
    ASSERT_EQ(r.status, 200);
    EXPECT_NE(r.headers.find("Content-Type: image/png"), std::string::npos);
    const auto decoded = io::decode_image(r.body, "reply");
    EXPECT_EQ(decoded.width, 32);
    png[{im["model"], im["seed"]}] = r.body;
  }
  EXPECT_EQ(seeds["base"], (std::vector<uint64_t>{7, 8}));
  EXPECT_EQ(seeds["twin"], (std::vector<uint64_t>{7, 8}));
  EXPECT_EQ(png[std::make_pair(std::string("base"), uint64_t{7})], png[std::make_pair(std::string("twin"), uint64_t{7})]);
  EXPECT_NE(png[std::make_pair(std::string("base"), uint64_t{7})], png[std::make_pair(std::string("base"), uint64_t{8})]);

  // The queued path: 202 with a job, progress, then the images.
  Reply q = post(port, "/api/generate", {{"prompt", prompt}, {"steps", 4}, {"models", {"twin"}}, {"wait", false}});
  ASSERT_EQ(q.status, 202) << q.body;
  const std::string job = q.json()["job"];
  Json st;
  for (int i = 0; i < 600; ++i) {
    st = request(port, "GET", "/api/jobs/" + job).json();
    if (st["state"] == "done" || st["state"] == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(st["state"], "done") << st.dump();
  EXPECT_EQ(st["steps_done"], 4);
  EXPECT_EQ(st["steps_total"], 4);
  EXPECT_EQ(st["images"].size(), 1u);

  // Collect: keep one, skip a round, download one.
  std::vector<std::string> shown;
  for (const auto& im : imgs) shown.push_back(im["url"]);
  Reply k = post(port, "/api/feedback", {{"session", "abc"}, {"prompt", prompt}, {"shown", shown}, {"kept", shown[1]}});
  ASSERT_EQ(k.status, 200) << k.body;
  Reply s = post(port, "/api/feedback", {{"session", "abc"}, {"prompt", prompt}, {"shown", {shown[2], shown[3]}}, {"event", "skip"}});
  ASSERT_EQ(s.status, 200) << s.body;
  Reply d = post(port, "/api/feedback",
                 {{"session", "abc"}, {"prompt", prompt}, {"shown", {shown[3]}}, {"event", "download"}, {"image", shown[3]}});
  ASSERT_EQ(d.status, 200) << d.body;
  const auto log = serve::read_log(tmp / "fb" / "feedback.jsonl");
  ASSERT_EQ(log.records.size(), 3u);
  EXPECT_EQ(log.records[0]["event"], "keep");
  EXPECT_EQ(log.records[0]["kept"], id_of(shown[1]));
  EXPECT_EQ(log.records[0]["shown"][1]["model"], imgs[1]["model"]);
  EXPECT_EQ(log.records[0]["settings"]["steps"], 3);
  for (const auto& u : shown) EXPECT_TRUE(fs::exists(tmp / "fb" / "images" / (id_of(u) + ".png"))) << u;

  // Export: the three layouts.
  auto [rc, out] = test::run_command(kDro + " serve export --feedback " + (tmp / "fb").string() + " --out " +
                                     (tmp / "export").string());
  ASSERT_EQ(rc, 0) << out;
  const auto pairs = data::read_pairs(tmp / "export" / "pairs.jsonl");
  EXPECT_EQ(pairs.pairs.size(), 2u);  // kept vs shown[0] and shown[2]; shown[3] was downloaded
  const auto labels = data::read_labels(tmp / "export" / "labels.jsonl");
  EXPECT_EQ(labels.images.size(), 4u);
  EXPECT_EQ(labels.desirable(), 2);
  EXPECT_EQ(data::ExpertDataset::scan(tmp / "export" / "expert").size(), 2);

  // Study: blind pairs, votes, results.
  for (int i = 0; i < 4; ++i) {
    Reply t = post(port, "/api/study/trial", {{"prompt", prompt}, {"steps", 2}, {"session", "abc"}});
    ASSERT_EQ(t.status, 200) << t.body;
    const Json tj = t.json();
    EXPECT_EQ(tj.dump().find("base"), std::string::npos) << "a trial names no model";
    EXPECT_EQ(tj.dump().find("twin"), std::string::npos);
    const Reply img = request(port, "GET", tj["left"]);
    EXPECT_EQ(img.headers.find("twin"), std::string::npos);
    EXPECT_EQ(img.headers.find("base"), std::string::npos);
    Reply v = post(port, "/api/study", {{"trial", tj["trial"]}, {"choice", i < 3 ? "left" : "right"}, {"session", "abc"}});
    ASSERT_EQ(v.status, 200) << v.body;
    EXPECT_EQ(post(port, "/api/study", {{"trial", tj["trial"]}, {"choice", "left"}}).status, 400);  // voted already
  }
  const Json res = request(port, "GET", "/api/study/results").json();
  EXPECT_EQ(res["votes"], 4);
  ASSERT_EQ(res["pairs"].size(), 1u);
  EXPECT_EQ(res["pairs"][0]["votes"], 4);
  EXPECT_EQ(res["pairs"][0]["per_prompt"][0]["votes"], 4);
  EXPECT_TRUE(res["pairs"][0].contains("ci_low") && res["pairs"][0].contains("p_value"));
  EXPECT_EQ(serve::read_log(tmp / "fb" / "study.jsonl").records.size(), 4u);

  EXPECT_EQ(server.kill(SIGTERM), 0) << server.log();
  const std::string console = server.log();
  EXPECT_NE(console.find("[serve] loading base"), std::string::npos) << console;
  EXPECT_NE(console.find("POST /api/generate 200"), std::string::npos) << console;
}

TEST(ServeApi, MalformedAndOversizedRequestsGetClear4xx) {
  DRO_REQUIRE_SERVE();
  test::TempDir tmp;
  ServerProcess server("--model " + kBase.string() + " --feedback " + (tmp / "fb").string() +
                           " --device cpu --max-job-seconds 0.5",
                       tmp / "log.txt");
  ASSERT_GT(server.port(), 0) << server.log();
  const int port = server.port();
  auto expect_error = [&](const Reply& r, int status, const std::string& words) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_NE(r.body.find(words), std::string::npos) << "expected '" << words << "' in " << r.body;
  };
  const std::string p = "a red circle";
  expect_error(request(port, "POST", "/api/generate", "{\"prompt\": "), 400, "not valid JSON");
  expect_error(request(port, "POST", "/api/generate", "[1, 2]"), 400, "JSON object");
  expect_error(request(port, "POST", "/api/generate", "{\"prompt\": \"x\"}", "text/plain"), 415, "application/json");
  expect_error(post(port, "/api/generate", {{"prompt", p}, {"steps", 5000}}), 400, "'steps' must be in 1..100");
  expect_error(post(port, "/api/generate", {{"prompt", p}, {"steps", "ten"}}), 400, "'steps' must be an integer");
  expect_error(post(port, "/api/generate", {{"prompt", p}, {"steps", 2.5}}), 400, "'steps' must be an integer");
  expect_error(post(port, "/api/generate", {{"prompt", p}, {"seed", -1}}), 400, "'seed' must be in");
  expect_error(post(port, "/api/generate", {{"prompt", p}, {"guidance", 1e9}}), 400, "'guidance' must be in");
  expect_error(post(port, "/api/generate", {{"prompt", p}, {"images_per_model", 0}}), 400, "images_per_model");
  expect_error(post(port, "/api/generate", {{"prompt", p}, {"models", {"nope"}}}), 400, "unknown model");
  expect_error(post(port, "/api/generate", {{"prompt", p}, {"sampler", "magic"}}), 400, "unknown 'sampler'");
  expect_error(post(port, "/api/generate", {{"prompt", p}, {"colour", 1}}), 400, "unknown field 'colour'");
  expect_error(post(port, "/api/generate", {{"prompt", ""}}), 400, "'prompt' is empty");
  expect_error(post(port, "/api/generate", {{"prompt", std::string(600, 'a')}}), 400, "longer than 500 bytes");
  // Too long for the step time measured at load, with the limit lowered to 0.5 s.
  expect_error(post(port, "/api/generate", {{"prompt", p}, {"steps", 100}, {"images_per_model", 8}}), 400,
               "would take about");
  // A body over the 64 KB limit, and deep nesting inside the limit.
  EXPECT_EQ(request(port, "POST", "/api/generate", "{\"prompt\": \"" + std::string(200000, 'a') + "\"}").status, 413);
  expect_error(request(port, "POST", "/api/generate", std::string(30000, '[') + std::string(30000, ']')), 400, "JSON object");
  // Paths from requests never reach the file system; ids are checked.
  EXPECT_EQ(request(port, "GET", "/images/../../../etc/passwd").status, 404);
  EXPECT_EQ(request(port, "GET", "/images/%2e%2e%2fetc%2fpasswd.png").status, 404);
  EXPECT_EQ(request(port, "GET", "/images/0123456789abcdef0123456789abcdef.png").status, 404);
  EXPECT_EQ(request(port, "GET", "/api/jobs/0123456789abcdef0123456789abcdef").status, 404);
  EXPECT_EQ(request(port, "GET", "/nothing").status, 404);
  expect_error(post(port, "/api/feedback", {{"prompt", p}, {"shown", {"/etc/passwd"}}, {"kept", "/etc/passwd"}}), 400,
               "not an image url");
  expect_error(post(port, "/api/feedback", {{"prompt", p}, {"shown", Json::array()}, {"event", "skip"}}), 400,
               "non-empty list");
  expect_error(post(port, "/api/feedback",
                    {{"prompt", p}, {"shown", {"/images/0123456789abcdef0123456789abcdef.png"}}, {"event", "skip"}}),
               404, "unknown here");
  expect_error(post(port, "/api/feedback", {{"session", "../x"}, {"prompt", p}, {"shown", {"a"}}, {"event", "skip"}}), 400,
               "'session'");
  expect_error(post(port, "/api/study/trial", {{"prompt", p}}), 400, "needs two models");
  expect_error(post(port, "/api/study", {{"trial", "x"}, {"choice", "left"}}), 400, "not a trial id");
  // Another site's name for 127.0.0.1 (DNS rebinding) is refused.
  EXPECT_EQ(send_raw(port, "GET /api/models HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n").status, 403);
  // Garbage instead of HTTP, and a connection that sends half a request and goes.
  EXPECT_EQ(send_raw(port, "\x01\x02 not http at all\r\n\r\n").status, 400);
  send_raw(port, "POST /api/generate HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"pro", false);
  // Mixed in with all that, the feedback log is untouched and the server still serves.
  EXPECT_FALSE(fs::exists(tmp / "fb" / "feedback.jsonl") && fs::file_size(tmp / "fb" / "feedback.jsonl") > 0);
  Reply ok = post(port, "/api/generate", {{"prompt", p}, {"steps", 2}});
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(request(port, "GET", "/api/models").status, 200);
  EXPECT_TRUE(server.running()) << server.log();
}

// A client posts feedback as fast as the server acknowledges it; kill -9 lands mid-stream. Every
// acknowledged event is in the log afterwards, and the log stays readable and appendable.
TEST(ServeApi, KillNineDuringFeedbackLosesNoAcknowledgedEntry) {
  DRO_REQUIRE_SERVE();
  test::TempDir tmp;
  const std::string args = "--model " + kBase.string() + " --feedback " + (tmp / "fb").string() + " --device cpu --quiet";
  std::set<std::string> acked;
  {
    ServerProcess server(args, tmp / "log.txt");
    ASSERT_GT(server.port(), 0) << server.log();
    const int port = server.port();
    const std::string prompt = "a small blue square on a light background, top";
    const Json imgs = post(port, "/api/generate", {{"prompt", prompt}, {"steps", 2}, {"images_per_model", 4}}).json()["images"];
    ASSERT_EQ(imgs.size(), 4u);
    std::vector<std::string> shown;
    for (const auto& im : imgs) shown.push_back(im["url"]);
    std::atomic<bool> stop{false};
    std::mutex m;
    auto client = [&](int c) {
      for (int i = 0; !stop; ++i) {
        const std::string session = "c" + std::to_string(c) + "_" + std::to_string(i);
        const Reply r = post(port, "/api/feedback",
                             {{"session", session}, {"prompt", prompt}, {"shown", shown}, {"kept", shown[i % 4]}});
        if (r.status != 200) break;
        std::lock_guard<std::mutex> lock(m);
        acked.insert(session);
      }
    };
    std::thread a(client, 0), b(client, 1);
    while (true) {
      {
        std::lock_guard<std::mutex> lock(m);
        if (acked.size() >= 40) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(server.kill(SIGKILL), 128 + SIGKILL);
    stop = true;
    a.join();
    b.join();
  }
  const auto log = serve::read_log(tmp / "fb" / "feedback.jsonl");
  std::set<std::string> logged;
  for (const auto& r : log.records) logged.insert(r["session"].get<std::string>());
  for (const auto& s : acked) EXPECT_TRUE(logged.count(s)) << "acknowledged but lost: " << s;
  EXPECT_LE(log.bad_lines, 1);
  std::cerr << "[test] " << acked.size() << " acknowledged, " << log.records.size() << " logged, " << log.bad_lines
            << " torn line(s)\n";
  // A restarted server appends after whatever the kill left; the export reads it all.
  {
    ServerProcess again(args, tmp / "log2.txt");
    ASSERT_GT(again.port(), 0) << again.log();
    const std::string prompt = "a dot";
    const Json imgs = post(again.port(), "/api/generate", {{"prompt", prompt}, {"steps", 2}}).json()["images"];
    EXPECT_EQ(post(again.port(), "/api/feedback",
                   {{"session", "after"}, {"prompt", prompt}, {"shown", {imgs[0]["url"]}}, {"kept", imgs[0]["url"]}})
                  .status,
              200);
  }
  const auto after = serve::read_log(tmp / "fb" / "feedback.jsonl");
  EXPECT_EQ(after.records.back()["session"], "after");
  EXPECT_EQ(after.records.size(), log.records.size() + 1);
  auto [rc, out] = test::run_command(kDro + " serve export --feedback " + (tmp / "fb").string() + " --out " +
                                     (tmp / "export").string());
  EXPECT_EQ(rc, 0) << out;
}

TEST(ServeCli, DefaultModelsBadFlagsAndNoServerWithoutHttplib) {
  DRO_REQUIRE_SERVE();
  test::TempDir tmp;
  // A working folder where `dro demo` has run: the highest ckpt-N is the DRO model.
  for (const char* n : {"ckpt-2", "ckpt-10", "ckpt-9"}) {
    fs::create_directories(tmp / "demo-report/train/dro" / n);
    fs::copy(kBase / "unet", tmp / "demo-report/train/dro" / n / "unet", fs::copy_options::recursive);
  }
  {
    ServerProcess server("--device cpu --quiet --max-queue 1", tmp / "log.txt", tmp.path());
    ASSERT_GT(server.port(), 0) << server.log();
    const int port = server.port();
    const Json models = request(port, "GET", "/api/models").json();
    ASSERT_EQ(models["models"].size(), 2u) << models.dump();
    EXPECT_EQ(models["models"][1]["name"], "dro");
    EXPECT_NE(server.log().find("ckpt-10/unet"), std::string::npos) << server.log();
    EXPECT_TRUE(fs::exists(tmp / "feedback"));  // the default feedback folder, in the working folder
    // One job may wait or run (--max-queue 1): a second is refused with 503 until it is done.
    const Json job = {{"prompt", "a red circle"}, {"steps", 60}, {"images_per_model", 4}, {"wait", false}};
    const Reply first = post(port, "/api/generate", job);
    ASSERT_EQ(first.status, 202) << first.body;
    const Reply second = post(port, "/api/generate", job);
    EXPECT_EQ(second.status, 503) << second.body;
    EXPECT_NE(second.body.find("queued or running"), std::string::npos) << second.body;
    EXPECT_EQ(request(port, "GET", "/api/models").status, 200);  // the page's calls are answered meanwhile
    Json st;
    for (int i = 0; i < 3000; ++i) {
      st = request(port, "GET", "/api/jobs/" + first.json()["job"].get<std::string>()).json();
      if (st["state"] == "done") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(st["state"], "done");
    EXPECT_EQ(post(port, "/api/generate", {{"prompt", "a red circle"}, {"steps", 2}}).status, 200);
  }
  for (const auto& [args, words] : std::vector<std::pair<std::string, std::string>>{
           {"--port 70000", "--port"},
           {"--unet nodir", "--unet"},
           {"--unet x=" + (tmp / "none").string(), "has no config.json"},
           {"--model " + (tmp / "none").string(), "--model"},
           {"--study-models base", "--study-models"},
           {"export --out " + (tmp / "e").string(), "--feedback"},
           {"export --feedback " + (tmp / "none").string() + " --out " + (tmp / "e").string(), "no feedback"}}) {
    auto [rc, out] = test::run_command(kDro + " serve " + args);
    EXPECT_NE(rc, 0) << args;
    EXPECT_NE(out.find(words), std::string::npos) << args << ": " << out;
  }
}

// --lora NAME=FILE[:SCALE]: the base with a LoRA merged is served beside it; scale 0 draws the base's
// images exactly, scale 1 others.
TEST(ServeCli, LoraModelsAreServedBesideTheBase) {
  DRO_REQUIRE_SERVE();
  test::TempDir tmp;
  {
    auto unet = models::load_unet(kBase / "unet");
    models::LoraOptions o;
    o.rank = 2;
    models::UnetLora lora(*unet, o, torch::kFloat32, torch::kCPU, 1);
    auto gen = make_generator(3);
    torch::NoGradGuard no_grad;
    for (size_t i = 1; i < lora.parameters().size(); i += 2) {
      auto p = lora.parameters()[i];
      p.copy_(torch::randn(p.sizes(), gen) * 0.5);
    }
    models::save_lora_kohya(tmp / "style.safetensors", lora.layers(lora.parameters()), unet->config(), torch::kFloat32);
  }
  const std::string file = (tmp / "style.safetensors").string();
  ServerProcess server("--model " + kBase.string() + " --lora styled=" + file + " --lora off=" + file +
                           ":0 --feedback " + (tmp / "fb").string() + " --device cpu --quiet",
                       tmp / "log.txt");
  ASSERT_GT(server.port(), 0) << server.log();
  const int port = server.port();
  const Json models = request(port, "GET", "/api/models").json();
  ASSERT_EQ(models["models"].size(), 3u) << models.dump();
  EXPECT_EQ(models["models"][1]["name"], "styled");
  Reply g = post(port, "/api/generate", {{"prompt", "a red circle"}, {"seed", 3}, {"steps", 3}});
  ASSERT_EQ(g.status, 200) << g.body;
  std::map<std::string, std::string> png;
  const Json images = g.json()["images"];
  for (const auto& im : images) png[im["model"].get<std::string>()] = request(port, "GET", im["url"]).body;
  ASSERT_EQ(png.size(), 3u);
  EXPECT_EQ(png["off"], png["base"]);
  EXPECT_NE(png["styled"], png["base"]);
  for (const auto& [args, words] : std::vector<std::pair<std::string, std::string>>{
           {"--lora " + file, "NAME=FILE"},
           {"--lora x=" + (tmp / "none.safetensors").string(), "is not a file"}}) {
    auto [rc, out] = test::run_command(kDro + " serve --model " + kBase.string() + " " + args);
    EXPECT_NE(rc, 0) << args;
    EXPECT_NE(out.find(words), std::string::npos) << args << ": " << out;
  }
}

// The page in headless Chromium, driven by its URL parameters (compare; collect, keeping image 1;
// study, voting left), then a screenshot.
TEST(ServeBrowser, PageRunsCompareCollectAndStudyInHeadlessChromium) {
  DRO_REQUIRE_SERVE();
  std::string browser;
  for (const char* b : {"chromium", "chromium-browser", "google-chrome"})
    if (test::run_command(std::string("command -v ") + b).first == 0) browser = b;
  if (browser.empty()) GTEST_SKIP() << "no chromium installed (scripts/setup.sh installs it): browser test skipped";
  test::TempDir tmp;
  ServerProcess server(two_models(tmp.path()), tmp / "log.txt");
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  const std::string chrome = browser + " --headless --disable-gpu --no-sandbox --no-first-run --user-data-dir=" +
                             (tmp / "profile").string() + " --virtual-time-budget=300000 ";
  auto dom = [&](const std::string& query) {
    auto [rc, out] = test::run_command(chrome + "--dump-dom '" + url + "?" + query + "' 2>/dev/null");
    EXPECT_EQ(rc, 0) << out;
    return out;
  };
  auto count = [](const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
  };
  const std::string q = "prompt=a%20large%20red%20circle&steps=3&seed=5&run=1";
  const std::string compare = dom("mode=compare&n=2&" + q);
  EXPECT_NE(compare.find("data-done=\"1\""), std::string::npos) << compare.substr(0, 4000);
  EXPECT_NE(compare.find("id=\"compare-grid\""), std::string::npos);
  EXPECT_EQ(count(compare, "src=\"/images/"), 4u);
  EXPECT_NE(compare.find("<h3>twin</h3>"), std::string::npos);
  EXPECT_NE(compare.find("seed 6"), std::string::npos);

  const std::string collect = dom("mode=collect&n=4&source=mixed&keep=1&" + q);
  EXPECT_NE(collect.find("data-done=\"1\""), std::string::npos) << collect.substr(0, 4000);
  EXPECT_EQ(count(collect, "src=\"/images/"), 4u);
  EXPECT_NE(collect.find("card kept"), std::string::npos);
  const auto log = serve::read_log(tmp / "fb" / "feedback.jsonl");
  ASSERT_EQ(log.records.size(), 1u);
  EXPECT_EQ(log.records[0]["event"], "keep");
  EXPECT_EQ(log.records[0]["shown"].size(), 4u);
  EXPECT_EQ(log.records[0]["prompt"], "a large red circle");

  const std::string study = dom("mode=study&vote=left&" + q);
  EXPECT_NE(study.find("Vote recorded (1 so far)"), std::string::npos) << study.substr(0, 4000);
  const auto grid = study.find("id=\"study-grid\"");
  ASSERT_NE(grid, std::string::npos) << study.substr(0, 4000);
  const std::string pair = study.substr(grid, study.find("</section>", grid) - grid);
  EXPECT_EQ(pair.find("twin"), std::string::npos) << "the study's images are not named: " << pair;
  EXPECT_EQ(pair.find("base"), std::string::npos) << pair;
  EXPECT_EQ(count(pair, "src=\"/images/"), 2u);
  const std::string results = dom("mode=results");
  EXPECT_NE(results.find("of 1 votes"), std::string::npos) << results.substr(0, 4000);

  const fs::path shot = tmp / "shot.png";
  auto [rc, out] = test::run_command(chrome + "--window-size=1000,700 --screenshot=" + shot.string() + " '" + url +
                                     "?mode=compare&n=2&" + q + "' 2>/dev/null");
  ASSERT_EQ(rc, 0) << out;
  ASSERT_TRUE(fs::exists(shot));
  const auto img = io::read_image(shot);
  EXPECT_EQ(img.width, 1000);
  EXPECT_EQ(img.height, 700);
  EXPECT_GT(fs::file_size(shot), 10000u);
}

// The loop closed: a scripted user generates through the API and keeps the brightest of four
// images, the feedback is exported, and `dro train` runs DPO on the pairs, KTO on the labels and
// SFT and DRO on the expert folder with the world base model.
TEST(ServeEndToEnd, ExportedFeedbackTrainsDpoKtoSftAndDro) {
  DRO_REQUIRE_SERVE();
  test::TempDir tmp;
  {
    ServerProcess server(two_models(tmp.path()) + " --quiet", tmp / "log.txt");
    ASSERT_GT(server.port(), 0) << server.log();
    const int port = server.port();
    for (const std::string prompt : {"a large red circle on a dark background, left",
                                     "a small green triangle on a light background, right",
                                     "a large blue square on a dark background, centre"}) {
      const Reply g = post(port, "/api/generate",
                           {{"prompt", prompt}, {"seed", 3}, {"steps", 3}, {"images_per_model", 2}, {"shuffle", true}});
      ASSERT_EQ(g.status, 200) << g.body;
      std::vector<std::string> shown;
      std::string best;
      double best_mean = -1;
      const Json images = g.json()["images"];
      for (const auto& im : images) {
        shown.push_back(im["url"]);
        const auto pixels = io::decode_image(request(port, "GET", im["url"]).body, "reply").pixels;
        double mean = 0;
        for (uint8_t v : pixels) mean += v;
        mean /= static_cast<double>(pixels.size());
        if (mean > best_mean) best_mean = mean, best = im["url"].get<std::string>();
      }
      const Reply f = post(port, "/api/feedback", {{"session", "user1"}, {"prompt", prompt}, {"shown", shown}, {"kept", best}});
      ASSERT_EQ(f.status, 200) << f.body;
    }
  }
  const fs::path data = tmp / "data";
  auto [rc, out] = test::run_command(kDro + " serve export --feedback " + (tmp / "fb").string() + " --out " + data.string());
  ASSERT_EQ(rc, 0) << out;
  const std::string common = " --model " + kBase.string() +
                             " --resolution 32 --batch-size 2 --num-steps 2 --gradient-accumulation-steps 1"
                             " --checkpointing-steps 2 --no-random-flip --quiet --device cpu";
  const std::vector<std::pair<std::string, std::string>> runs = {
      {"dpo", (data / "pairs.jsonl").string()},
      {"kto", (data / "labels.jsonl").string()},
      {"sft", (data / "expert").string()},
      {"dro", (data / "expert").string() + " --buffer-size 2 --buffer-batch-size 2 --buffer-num-inference-steps 3"}};
  for (const auto& [objective, dataset] : runs) {
    const fs::path logdir = tmp / ("train-" + objective);
    auto [trc, tout] = test::run_command(kDro + " train --objective " + objective + " --train-dataset " + dataset + common +
                                         " --logdir " + logdir.string());
    ASSERT_EQ(trc, 0) << objective << ": " << tout;
    EXPECT_TRUE(fs::exists(logdir / "ckpt-2/unet/diffusion_pytorch_model.safetensors")) << objective;
  }
}

}  // namespace
}  // namespace dro
