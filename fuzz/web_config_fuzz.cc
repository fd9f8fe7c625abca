// The two things --web.config.file parses: the web config itself (an
// operator's file, read strictly) and a client's Authorization header (any
// client's bytes, before it has proved anything). Beyond not crashing: a
// header that parses yields a user without ':' and a password without NUL,
// because crypt() would check a password cut at a NUL.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "daemon/web_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string user, password;
  if (canaryd::parse_basic_credentials(text, user, password)) {
    if (user.find(':') != std::string::npos || password.find('\0') != std::string::npos)
      std::abort();
  }
  canaryd::BoundedFileReader files;
  auto load = canaryd::load_web_config_text(text, "/fuzz/web.yml", files);
  if (load.config && load.config->tls && load.config->tls->cert_file.empty()) std::abort();
  return 0;
}
