// One HTTP request on the loop's shared libcurl multi handle, for probes that
// make a request as one step of their run (the agent pipeline's token step).
#pragma once

#include <curl/curl.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/guard.h"
#include "probes/common/response_headers.h"

namespace canaryd {

class CurlMulti;

struct HttpCallOptions {
  std::string url;
  std::string method = "POST";
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::string> body;
  std::string ca_file;
  bool insecure_skip_verify = false;
  size_t max_body_bytes = 64 * 1024;
};

// Thread-safety: loop thread only.
class HttpCall {
 public:
  struct Response {
    CURLcode rc = CURLE_OK;  // never CURLE_OK when `error` is set
    long status = 0;
    std::string body;
    std::string error;  // why the request failed (curl's message, or ours)
    double seconds = 0;
  };
  using Callback = std::function<void(Response)>;

  explicit HttpCall(HttpCallOptions opts);
  ~HttpCall();
  HttpCall(const HttpCall&) = delete;
  HttpCall& operator=(const HttpCall&) = delete;

  // The traceparent header of the next start() (RunContext::new_traceparent);
  // "" sends none.
  void set_traceparent(std::string value) { traceparent_ = std::move(value); }
  // An exception from `on_done` goes to `fail` (the run this call is part of).
  void start(CurlMulti& multi, RunFault fail, Callback on_done);
  // Aborts an unfinished request; its callback never runs.
  void cancel();
  bool in_flight() const { return multi_ != nullptr; }

 private:
  static size_t on_body(char* data, size_t size, size_t nmemb, void* userp);

  HttpCallOptions opts_;
  CURL* easy_ = nullptr;
  curl_slist* header_list_ = nullptr;
  std::string traceparent_;
  char error_buffer_[CURL_ERROR_SIZE] = {};
  CurlMulti* multi_ = nullptr;
  std::string body_;
  bool overflow_ = false;
  ResponseHeaders headers_;
  Callback on_done_;
  RunFault fail_;
};

}  // namespace canaryd
