#pragma once
// dtrain-serve's HTTP server: the KServe V2 REST endpoints over a ModelStore, API keys, body
// limit, access log and /metrics. cpp-httplib stays inside server.cpp.
#include <functional>
#include <memory>

#include "serve/options.h"

namespace dtrain::serve {

struct StoreOptions;

class Server {
 public:
  // Checks that the repository is a directory and reads the API key file (throws naming either).
  explicit Server(const ServeOptions& options);
  // The same, with the model store's options adjusted before it is built (tests open a fake
  // language model through it).
  Server(const ServeOptions& options, const std::function<void(StoreOptions&)>& customize_store);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port (port 0: any free one) and returns the port; throws naming the address.
  int bind();
  // Loads the repository in the background (health/ready says 503 until the first scan is done),
  // then polls it; serves until stop(). Returns after in-flight requests finished.
  void serve();
  void stop();  // from any thread (not from a signal handler)
  // From here on /v2/health/ready answers 503 (draining) while requests are still served, so a
  // load balancer's health check takes the server out of rotation before stop().
  void begin_drain();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dtrain::serve
