// Response headers come from the target, so every transfer that reads them is
// watched by one of these (the HTTP probe's and the token step's).
#pragma once

#include <curl/curl.h>

#include <optional>
#include <string>

namespace canaryd {

// Bounds a transfer's response headers and records whether they ended.
//  - Size: libcurl 7.88 keeps every header line of a transfer (for its header
//    API) with no total limit, and fails a single line over 100 KiB with its
//    out-of-memory error, which would read as a canaryd bug. Past kMaxBytes the
//    transfer is stopped and the failure says so.
//  - End: curl 7.88 reports a response cut off by a close inside its header
//    section as a success; a response only counts once the blank line that
//    ends its headers has arrived.
// Thread-safety: the loop thread of the transfer only.
class ResponseHeaders {
 public:
  static constexpr size_t kMaxBytes = 64 * 1024;

  // Installs the header callback on `easy` (once; it stays for every run).
  void attach(CURL* easy);
  // Before each transfer.
  void reset();

  // What went wrong with the headers of a transfer that ended with `rc`, or
  // nullopt. Call it first: curl's own code for these cases is misleading
  // (CURLE_OK, CURLE_WRITE_ERROR, CURLE_OUT_OF_MEMORY).
  std::optional<std::string> problem(CURL* easy, CURLcode rc) const;
  // Whether the current response's header section has ended (its status
  // and Content-Type can be judged before any of its body arrives).
  bool complete() const { return complete_; }

 private:
  static size_t on_header(char* data, size_t size, size_t nmemb, void* userp);

  size_t bytes_ = 0;
  bool overflow_ = false;
  bool complete_ = false;  // the last response's header section ended
};

}  // namespace canaryd
