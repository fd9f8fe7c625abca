#include "probes/http/http.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <re2/re2.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "base/json_path.h"
#include "probes/common/config_fields.h"
#include "probes/common/curl_multi.h"
#include "probes/common/response_headers.h"

namespace canaryd {

namespace {

constexpr int64_t kDefaultMaxBodyBytes = 1024 * 1024;

struct HttpOptions {
  std::string url;          // what curl requests (host may be replaced by tls.server_name)
  std::string display_url;  // without credentials, for target()
  std::string connect_to;   // "name:port:host:port" when tls.server_name redirects the connection
  std::string method = "GET";
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::string> body;
  bool follow_redirects = false;
  int64_t max_body_bytes = kDefaultMaxBodyBytes;
  bool https = false;
  std::vector<int64_t> expect_status;  // empty: any 2xx
  std::shared_ptr<RE2> body_regex;
  std::string body_regex_text;
  // Dotted path -> the expected value, typed as the YAML spells it.
  std::vector<std::pair<std::string, nlohmann::json>> expect_json;
  std::string ca_file;
  bool insecure_skip_verify = false;
};

std::string status_list(const std::vector<int64_t>& codes) {
  std::string out;
  for (auto c : codes) {
    if (!out.empty()) out += ',';
    out += std::to_string(c);
  }
  return out;
}

class HttpProbe : public Probe {
 public:
  explicit HttpProbe(HttpOptions opts) : opts_(std::move(opts)) {
    static std::atomic<size_t> next_shard{0};
    shard_ = next_shard++;
  }
  ~HttpProbe() override {
    if (easy_ != nullptr) {
      if (services_ != nullptr && in_flight_) services_->curl(shard_).remove(easy_);
      curl_easy_cleanup(easy_);
    }
    curl_slist_free_all(header_list_);
    curl_slist_free_all(connect_to_list_);
  }

  // Probe
  void start(RunContext& ctx, Done done) override;
  CancelInfo cancel() override;
  std::string target() const override { return opts_.method + " " + opts_.display_url; }

 private:
  void configure_easy();
  void set_headers(const std::string& traceparent);
  void on_complete(CURLcode rc);
  Phases measured_phases() const;
  std::string current_phase() const;
  ProbeResult classify_transport_error(CURLcode rc, Phases phases) const;
  ProbeResult check_response(Phases phases);

  bool tcp_connected() const;

  static size_t on_body(char* data, size_t size, size_t nmemb, void* userp);
  static int on_sockopt(void* clientp, curl_socket_t fd, curlsocktype purpose);
  static int on_close_socket(void* clientp, curl_socket_t fd);

  HttpOptions opts_;
  CURL* easy_ = nullptr;
  curl_slist* header_list_ = nullptr;
  curl_slist* connect_to_list_ = nullptr;
  char error_buffer_[CURL_ERROR_SIZE] = {};
  LoopServices* services_ = nullptr;
  RunFault fail_;
  size_t shard_ = 0;
  bool in_flight_ = false;
  bool body_overflow_ = false;
  bool aborting_ = false;
  // The run's sockets (a happy-eyeballs connect may open two) and whether one
  // was found reset by the peer when curl closed it: curl's own information
  // tells neither a finished TCP connect (libcurl 7.88 reports the connect
  // time only once TLS is done) nor a reset from a malformed chunk (both are
  // CURLE_RECV_ERROR, and CURLINFO_OS_ERRNO keeps a previous run's value).
  std::vector<curl_socket_t> sockets_;
  bool peer_reset_ = false;
  ResponseHeaders headers_;
  std::string body_;
  Done done_;
};

void HttpProbe::configure_easy() {
  easy_ = curl_easy_init();
  if (!opts_.connect_to.empty())
    connect_to_list_ = curl_slist_append(connect_to_list_, opts_.connect_to.c_str());
  // Options are set once: every run repeats the same request, and the handle
  // keeps no state between transfers that matters here (no cookie engine, no
  // auth negotiation), so resetting it per run would only cost CPU.
  CURL* e = easy_;
  curl_easy_setopt(e, CURLOPT_URL, opts_.url.c_str());
  set_probe_transfer_defaults(e, error_buffer_);
  // A health response is small; the smallest receive buffer curl takes keeps
  // thousands of in-flight probes cheap (the default is 16 KiB each, 160 MB
  // at 10,000 hung targets). A large body only takes more reads.
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 1024L);
  if (connect_to_list_ != nullptr) curl_easy_setopt(e, CURLOPT_CONNECT_TO, connect_to_list_);
  curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, &HttpProbe::on_sockopt);
  curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, this);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, &HttpProbe::on_close_socket);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, this);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &HttpProbe::on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
  headers_.attach(e);
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(opts_.max_body_bytes));
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, opts_.follow_redirects ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  // Body checks need the decoded body; without them, don't ask for encodings.
  if (opts_.body_regex || !opts_.expect_json.empty())
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  // No curl timeout: the scheduler owns the deadline and cancels the run, so
  // there is one notion of "timed out" and it knows the phase.
  if (opts_.method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (opts_.method != "GET") {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, opts_.method.c_str());
  }
  if (opts_.body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(opts_.body->size()));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, opts_.body->c_str());
  }
  if (opts_.https) {
    curl_easy_setopt(e, CURLOPT_CERTINFO, 1L);
    if (!opts_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, opts_.ca_file.c_str());
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, opts_.insecure_skip_verify ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, opts_.insecure_skip_verify ? 0L : 2L);
  }
}

// The configured headers and this run's traceparent: a new span each run
// (each attempt), so the list is made per run. A configured traceparent is
// replaced by ours: it could not carry this run's trace id.
void HttpProbe::set_headers(const std::string& traceparent) {
  curl_slist_free_all(header_list_);
  header_list_ = nullptr;
  for (const auto& [name, value] : opts_.headers) {
    if (!is_traceparent_header(name))
      header_list_ = curl_slist_append(header_list_, (name + ": " + value).c_str());
  }
  header_list_ = curl_slist_append(header_list_,
                                   fmt::format("{}: {}", kTraceparentHeader, traceparent).c_str());
  curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, header_list_);
}

void HttpProbe::start(RunContext& ctx, Done done) {
  services_ = ctx.services;
  fail_ = ctx.fail;
  done_ = std::move(done);
  if (easy_ == nullptr) configure_easy();
  set_headers(ctx.new_traceparent());
  body_.clear();
  body_overflow_ = false;
  peer_reset_ = false;
  sockets_.clear();
  headers_.reset();
  error_buffer_[0] = '\0';
  in_flight_ = true;
  services_->curl(shard_).add(easy_, fail_, [this](CURLcode rc) { on_complete(rc); });
}

int HttpProbe::on_sockopt(void* clientp, curl_socket_t fd, curlsocktype purpose) {
  if (purpose == CURLSOCKTYPE_IPCXN) static_cast<HttpProbe*>(clientp)->sockets_.push_back(fd);
  return CURL_SOCKOPT_OK;
}

// The kernel's TCP state of a socket, or -1.
static int tcp_state(curl_socket_t fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return -1;
  return info.tcpi_state;
}

bool HttpProbe::tcp_connected() const {
  // SYN-SENT until the handshake completes; anything past it (established, or
  // already closing) means the connect phase was over.
  return std::any_of(sockets_.begin(), sockets_.end(), [](curl_socket_t fd) {
    int state = tcp_state(fd);
    return state != -1 && state != TCP_SYN_SENT && state != TCP_CLOSE;
  });
}

int HttpProbe::on_close_socket(void* clientp, curl_socket_t fd) {
  // Nothing here throws; no guard needed.
  auto* self = static_cast<HttpProbe*>(clientp);
  auto it = std::find(self->sockets_.begin(), self->sockets_.end(), fd);
  if (it != self->sockets_.end()) {
    self->sockets_.erase(it);
    // A connection the peer reset is in CLOSE by now, where one it merely
    // closed (FIN) or that is still open is not. Only the socket that carried
    // the request counts: a losing happy-eyeballs attempt that was refused is
    // in CLOSE too.
    long request_bytes = 0;
    curl_easy_getinfo(self->easy_, CURLINFO_REQUEST_SIZE, &request_bytes);
    if (request_bytes > 0 && tcp_state(fd) == TCP_CLOSE) self->peer_reset_ = true;
  }
  if (self->aborting_) {
    // An aborted run resets its connection: a graceful close would leave a
    // TIME_WAIT socket behind for a minute, and thousands of probes timing
    // out every second would fill the port range and slow every connect().
    linger l{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  return close(fd);
}

size_t HttpProbe::on_body(char* data, size_t size, size_t nmemb, void* userp) {
  auto* self = static_cast<HttpProbe*>(userp);
  size_t n = size * nmemb;
  if (self->body_.size() + n > static_cast<size_t>(self->opts_.max_body_bytes)) {
    // Returning short aborts the transfer: memory stays bounded whatever the
    // target sends.
    self->body_overflow_ = true;
    return 0;
  }
  // Returning 0 also aborts the transfer when appending fails.
  return guarded(self->fail_, "an HTTP body callback", [&] { self->body_.append(data, n); }) ? n
                                                                                             : 0;
}

static double info_seconds(CURL* e, CURLINFO what) {
  curl_off_t us = 0;
  curl_easy_getinfo(e, what, &us);
  return static_cast<double>(us) / 1e6;
}

Phases HttpProbe::measured_phases() const {
  // curl's timers are cumulative from the start of the transfer; the phases
  // are the disjoint segments between them, plus the end-to-end total.
  double dns = info_seconds(easy_, CURLINFO_NAMELOOKUP_TIME_T);
  double connect = info_seconds(easy_, CURLINFO_CONNECT_TIME_T);
  double tls = info_seconds(easy_, CURLINFO_APPCONNECT_TIME_T);
  double first_byte = info_seconds(easy_, CURLINFO_STARTTRANSFER_TIME_T);
  double total = info_seconds(easy_, CURLINFO_TOTAL_TIME_T);
  Phases phases;
  if (dns > 0 || connect > 0) phases.emplace_back("dns", dns);
  if (connect > 0) phases.emplace_back("connect", std::max(0.0, connect - dns));
  if (opts_.https && tls > 0) phases.emplace_back("tls", std::max(0.0, tls - connect));
  double sent = opts_.https && tls > 0 ? tls : connect;
  if (first_byte > 0) phases.emplace_back("first_byte", std::max(0.0, first_byte - sent));
  if (total > 0) phases.emplace_back("total", total);
  return phases;
}

std::string HttpProbe::current_phase() const {
  if (info_seconds(easy_, CURLINFO_NAMELOOKUP_TIME_T) <= 0) return "dns";
  if (info_seconds(easy_, CURLINFO_CONNECT_TIME_T) <= 0 && !tcp_connected()) return "connect";
  if (opts_.https && info_seconds(easy_, CURLINFO_APPCONNECT_TIME_T) <= 0) return "tls";
  if (info_seconds(easy_, CURLINFO_STARTTRANSFER_TIME_T) <= 0) return "first_byte";
  return "body";
}

CancelInfo HttpProbe::cancel() {
  CancelInfo info;
  if (!in_flight_) return info;
  info.phase = current_phase();
  aborting_ = true;
  services_->curl(shard_).remove(easy_);
  aborting_ = false;
  in_flight_ = false;
  // Only phases that finished are meaningful; curl reports the rest as 0.
  for (auto& p : measured_phases()) {
    if (p.first != "total") info.phases.push_back(p);
  }
  done_ = nullptr;
  return info;
}

ProbeResult HttpProbe::classify_transport_error(CURLcode rc, Phases phases) const {
  std::string detail = error_buffer_[0] != '\0' ? error_buffer_ : curl_easy_strerror(rc);
  auto fail = [&](Reason r, std::string msg) {
    return ProbeResult::failure(r, std::move(msg), std::move(phases));
  };
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
      return fail(Reason::kDns, "DNS resolution failed: " + detail);
    case CURLE_COULDNT_CONNECT: {
      long os_errno = 0;
      curl_easy_getinfo(easy_, CURLINFO_OS_ERRNO, &os_errno);
      if (os_errno == ECONNREFUSED) return fail(Reason::kConnectRefused, "connection refused");
      return fail(Reason::kConnect, "connect failed: " + detail);
    }
    case CURLE_OPERATION_TIMEDOUT:
      return fail(Reason::kTimeout, detail);
    case CURLE_PEER_FAILED_VERIFICATION: {
      long verify = 0;
      curl_easy_getinfo(easy_, CURLINFO_SSL_VERIFYRESULT, &verify);
      // X509_V_ERR_CERT_HAS_EXPIRED is 10; curl checks the host name itself, so
      // a mismatch shows only in its message.
      if (verify == 10 || detail.find("expired") != std::string::npos)
        return fail(Reason::kTlsExpired, "TLS certificate has expired: " + detail);
      if (detail.find("subject name") != std::string::npos ||
          detail.find("does not match") != std::string::npos ||
          detail.find("host name") != std::string::npos)
        return fail(Reason::kTlsHostname, "TLS certificate is not valid for the host: " + detail);
      return fail(Reason::kTls, "TLS verification failed: " + detail);
    }
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
      return fail(Reason::kTls, "TLS handshake failed: " + detail);
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
      if (body_overflow_ || rc == CURLE_FILESIZE_EXCEEDED)
        return fail(Reason::kBodyTooLarge,
                    fmt::format("response body exceeds the {} byte limit", opts_.max_body_bytes));
      // Our callbacks account for their own refusals (the header bound is
      // checked before this), so what is left is curl's content decoder
      // refusing the body: bytes after the end of a gzip stream and the like.
      // curl's text ("Failed writing received data") would point at us.
      return fail(Reason::kProtocol, "response body cannot be decoded as its Content-Encoding");
    case CURLE_URL_MALFORMAT:  // the configured URL was checked at load: a bad Location
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_GOT_NOTHING:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_PARTIAL_FILE:
    case CURLE_TOO_MANY_REDIRECTS:
      return fail(Reason::kProtocol, "invalid HTTP response: " + detail);
    case CURLE_RECV_ERROR:
      // curl also reports a malformed chunk, an HTTP/2 stream error or a TLS
      // record error as a receive error; only a reset is the connection's.
      if (peer_reset_) return fail(Reason::kConnect, "connection broken: " + detail);
      return fail(Reason::kProtocol, "invalid HTTP response: " + detail);
    case CURLE_SEND_ERROR:
      return fail(Reason::kConnect, "connection broken: " + detail);
    default:
      return fail(Reason::kInternal,
                  fmt::format("curl error {}: {}", static_cast<int>(rc), detail));
  }
}

ProbeResult HttpProbe::check_response(Phases phases) {
  long status = 0;
  curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
  auto fail = [&](Reason r, std::string msg) {
    auto result = ProbeResult::failure(r, std::move(msg), phases);
    result.details.status_code = static_cast<int>(status);
    return result;
  };
  bool status_ok = opts_.expect_status.empty()
                       ? (status >= 200 && status < 300)
                       : std::find(opts_.expect_status.begin(), opts_.expect_status.end(),
                                   status) != opts_.expect_status.end();
  if (!status_ok) {
    return fail(
        Reason::kHttpStatus,
        fmt::format("HTTP status {} (expected {})", status,
                    opts_.expect_status.empty() ? "2xx" : status_list(opts_.expect_status)));
  }
  if (opts_.body_regex && !RE2::PartialMatch(body_, *opts_.body_regex)) {
    return fail(Reason::kAssertion,
                fmt::format("body does not match regex \"{}\"", opts_.body_regex_text));
  }
  if (!opts_.expect_json.empty()) {
    auto doc = parse_target_json(body_);
    if (!doc.ok()) return fail(Reason::kAssertion, "body is " + doc.error);
    for (const auto& [path, want] : opts_.expect_json) {
      const nlohmann::json* got = json_at_path(doc.value, path);
      if (got == nullptr)
        return fail(Reason::kAssertion, fmt::format("JSON field {} is missing", path));
      if (!json_equals_expected(*got, want)) {
        // Say the types when they differ: "5" and 5 print almost alike.
        std::string types =
            got->type() == want.type() || (got->is_number() && want.is_number())
                ? ""
                : fmt::format(" ({}, expected {})", got->type_name(), want.type_name());
        return fail(Reason::kAssertion, fmt::format("JSON field {} is {}, expected {}{}", path,
                                                    json_brief(*got), json_brief(want), types));
      }
    }
  }
  auto result = ProbeResult::ok(std::move(phases));
  result.details.status_code = static_cast<int>(status);
  return result;
}

void HttpProbe::on_complete(CURLcode rc) {
  in_flight_ = false;
  Phases phases = measured_phases();
  ProbeResult result;
  if (auto problem = headers_.problem(easy_, rc)) {
    result = ProbeResult::failure(Reason::kProtocol, "invalid HTTP response: " + *problem,
                                  std::move(phases));
  } else {
    result = rc == CURLE_OK ? check_response(phases) : classify_transport_error(rc, phases);
  }
  if (opts_.https) {
    curl_certinfo* certs = nullptr;
    if (curl_easy_getinfo(easy_, CURLINFO_CERTINFO, &certs) == CURLE_OK && certs != nullptr &&
        certs->num_of_certs > 0) {
      // The first certificate is the leaf, the one that expires the service.
      for (curl_slist* s = certs->certinfo[0]; s != nullptr; s = s->next) {
        std::string_view line = s->data;
        constexpr std::string_view kExpire = "Expire date:";
        if (line.rfind(kExpire, 0) == 0) {
          std::string date(line.substr(kExpire.size()));
          time_t t = curl_getdate(date.c_str(), nullptr);
          if (t > 0) result.details.cert_expiry_unix = static_cast<double>(t);
        }
      }
    }
  }
  body_.clear();
  body_.shrink_to_fit();
  call_done(done_, std::move(result));
}

}  // namespace

static std::vector<Reason> http_probe_reasons() {
  return {Reason::kTimeout,   Reason::kDns,          Reason::kConnectRefused, Reason::kConnect,
          Reason::kTls,       Reason::kTlsHostname,  Reason::kTlsExpired,     Reason::kHttpStatus,
          Reason::kAssertion, Reason::kBodyTooLarge, Reason::kProtocol,       Reason::kInternal};
}

static std::vector<std::string_view> http_probe_phases() {
  return {"dns", "connect", "tls", "first_byte", "total"};
}

static ProbePtr make_http_probe(const ProbeSpec& /*spec*/, YamlSection& s) {
  HttpOptions o;
  size_t errors_before = s.context().errors->size();

  auto url = s.get_string("url");
  if (!url) {
    if (!s.has("url")) s.error("", "missing required key url");
  } else {
    CurlUrl u;
    if (!u.set(*url)) {
      s.error("url", "not a valid URL");
    } else {
      auto scheme = u.get(CURLUPART_SCHEME);
      if (scheme != "http" && scheme != "https") {
        s.error("url", "scheme must be http or https");
      } else {
        o.https = scheme == "https";
        o.url = *url;
        // Credentials in the URL must never be displayed.
        u.set_part(CURLUPART_USER, nullptr);
        u.set_part(CURLUPART_PASSWORD, nullptr);
        o.display_url = u.get(CURLUPART_URL).value_or("");
      }
    }
  }
  if (auto m = s.get_string("method")) {
    bool token = !m->empty() &&
                 std::all_of(m->begin(), m->end(), [](char c) { return c >= 'A' && c <= 'Z'; });
    if (!token) {
      s.error("method", fmt::format("invalid method \"{}\" (use e.g. GET, POST, HEAD)", *m));
    } else {
      o.method = *m;
    }
  }
  o.headers = read_headers(s, "headers");
  o.body = s.get_string("body");
  if (auto f = s.get_bool("follow_redirects")) o.follow_redirects = *f;
  if (auto m = s.get_int("max_body_bytes", 1, 256ll * 1024 * 1024)) o.max_body_bytes = *m;

  if (auto expect = s.get_section("expect")) {
    if (auto st = expect->get_int_list("status", 100, 599)) o.expect_status = *st;
    if ((o.body_regex = read_regex(*expect, "body_regex")))
      o.body_regex_text = o.body_regex->pattern();
    if (auto json = expect->get_node("json")) {
      if (!json->IsMap()) {
        expect->error("json", "expected a mapping of dotted paths to values");
      } else {
        for (auto it = json->begin(); it != json->end(); ++it) {
          std::string key_path = expect->key_path("json") + "." + it->first.as<std::string>("");
          if (!it->first.IsScalar() || it->first.Scalar().empty()) {
            expect->error_at(it->first, expect->key_path("json"), "paths must be plain names");
          } else if (!it->second.IsScalar() && !it->second.IsNull()) {
            expect->error_at(it->second, key_path, "expected a string, number or boolean");
          } else {
            // Typed as the YAML spells it: `5` is a number, `"5"` a string.
            o.expect_json.emplace_back(
                it->first.Scalar(),
                it->second.IsNull()
                    ? nlohmann::json(nullptr)
                    : yaml_scalar_to_json(it->second.Scalar(), it->second.Tag() == "?"));
          }
        }
      }
    }
    expect->finish();
  }

  if (auto tls = s.get_section("tls")) {
    if (url && !o.https && !o.url.empty()) tls->error("", "tls options need an https:// url");
    TlsOptions t = read_tls_options(*tls);
    o.ca_file = t.ca_file;
    o.insecure_skip_verify = t.insecure_skip_verify;
    if (t.server_name) {
      CurlUrl u;
      if (!o.url.empty() && u.set(o.url)) {
        // Connect to the URL's address but present and verify `server_name`:
        // the request goes to the name, and curl is told where that name lives.
        std::string host = u.get(CURLUPART_HOST).value_or("");
        std::string port = u.get(CURLUPART_PORT, CURLU_DEFAULT_PORT).value_or("443");
        u.set_part(CURLUPART_HOST, t.server_name->c_str());
        o.url = u.get(CURLUPART_URL).value_or(o.url);
        o.connect_to = fmt::format("{}:{}:{}:{}", *t.server_name, port, host, port);
      }
    }
    tls->finish();
  }
  s.finish();
  if (s.context().errors->size() != errors_before) return nullptr;
  return std::make_unique<HttpProbe>(std::move(o));
}

ProbeType http_probe_type() {
  using namespace std::chrono_literals;
  return {.name = "http",
          .reasons = http_probe_reasons(),
          .phases = http_probe_phases(),
          .make = &make_http_probe,
          .latency_baseline = true};
}

}  // namespace canaryd
