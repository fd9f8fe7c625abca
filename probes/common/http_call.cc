#include "probes/common/http_call.h"

#include "base/trace_context.h"
#include "probes/common/curl_multi.h"

namespace canaryd {

HttpCall::HttpCall(HttpCallOptions opts) : opts_(std::move(opts)) {
  easy_ = curl_easy_init();
  CURL* e = easy_;
  curl_easy_setopt(e, CURLOPT_URL, opts_.url.c_str());
  set_probe_transfer_defaults(e, error_buffer_);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &HttpCall::on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
  headers_.attach(e);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  if (opts_.method == "GET") {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (opts_.method != "POST" || !opts_.body) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, opts_.method.c_str());
  }
  if (opts_.body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(opts_.body->size()));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, opts_.body->c_str());
  }
  if (!opts_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, opts_.ca_file.c_str());
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, opts_.insecure_skip_verify ? 0L : 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, opts_.insecure_skip_verify ? 0L : 2L);
}

HttpCall::~HttpCall() {
  cancel();
  curl_easy_cleanup(easy_);
  curl_slist_free_all(header_list_);
}

size_t HttpCall::on_body(char* data, size_t size, size_t nmemb, void* userp) {
  auto* self = static_cast<HttpCall*>(userp);
  size_t n = size * nmemb;
  if (self->body_.size() + n > self->opts_.max_body_bytes) {
    self->overflow_ = true;
    return 0;  // aborts the transfer: memory stays bounded
  }
  // Returning 0 also aborts the transfer when appending fails.
  return guarded(self->fail_, "an HTTP body callback", [&] { self->body_.append(data, n); }) ? n
                                                                                             : 0;
}

void HttpCall::start(CurlMulti& multi, RunFault fail, Callback on_done) {
  cancel();
  on_done_ = std::move(on_done);
  fail_ = fail;
  body_.clear();
  overflow_ = false;
  headers_.reset();
  error_buffer_[0] = '\0';
  // Made per request: the traceparent changes every time, and a configured
  // one gives way to it (it could not carry the run's trace id).
  curl_slist_free_all(header_list_);
  header_list_ = nullptr;
  for (const auto& [name, value] : opts_.headers) {
    if (!traceparent_.empty() && is_traceparent_header(name)) continue;
    header_list_ = curl_slist_append(header_list_, (name + ": " + value).c_str());
  }
  if (!traceparent_.empty())
    header_list_ = curl_slist_append(
        header_list_, (std::string(kTraceparentHeader) + ": " + traceparent_).c_str());
  curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, header_list_);
  multi_ = &multi;
  multi.add(easy_, std::move(fail), [this](CURLcode rc) {
    multi_ = nullptr;
    Response r;
    r.rc = rc;
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &r.status);
    curl_off_t us = 0;
    curl_easy_getinfo(easy_, CURLINFO_TOTAL_TIME_T, &us);
    r.seconds = static_cast<double>(us) / 1e6;
    if (auto problem = headers_.problem(easy_, rc)) {
      r.rc = rc == CURLE_OK ? CURLE_WEIRD_SERVER_REPLY : rc;
      r.error = *problem;
    } else if (rc != CURLE_OK) {
      r.error = overflow_ ? "the response is too large"
                          : (error_buffer_[0] != '\0' ? error_buffer_ : curl_easy_strerror(rc));
    }
    r.body = std::move(body_);
    body_.clear();
    Callback cb = std::move(on_done_);
    on_done_ = nullptr;
    if (cb) cb(std::move(r));
  });
}

void HttpCall::cancel() {
  if (multi_ == nullptr) return;
  multi_->remove(easy_);
  multi_ = nullptr;
  on_done_ = nullptr;
}

}  // namespace canaryd
