// `canaryd status`: asks a running daemon for /api/v1/state and prints it for
// a person (or passes the JSON through). Exit 0: every probe passing or not
// yet run; 1: at least one failing; 2: the daemon could not be asked.
#pragma once

#include <string>

namespace canaryd {

// How to reach a daemon whose endpoints sit behind --web.config.file.
struct StatusClientOptions {
  std::string ca_file;    // verifies the daemon's certificate; "": the system's trust store
  std::string cert_file;  // a client certificate, for mutual TLS
  std::string key_file;
  std::string user;  // basic auth; the password comes from $CANARYD_PASSWORD, never argv
};

int run_status(const std::string& base_url, bool json, const StatusClientOptions& options = {});

}  // namespace canaryd
