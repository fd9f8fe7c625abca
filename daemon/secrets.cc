#include "daemon/secrets.h"

#include <algorithm>

namespace canaryd {

Secrets::Secrets(const Secrets& other) {
  std::lock_guard lock(other.mu_);
  values_ = other.values_;
}

Secrets& Secrets::operator=(const Secrets& other) {
  if (this == &other) return *this;
  std::vector<std::string> copy;
  {
    std::lock_guard lock(other.mu_);
    copy = other.values_;
  }
  std::lock_guard lock(mu_);
  values_ = std::move(copy);
  return *this;
}

void Secrets::add(std::string value) {
  if (value.size() < kMinLength) return;
  std::lock_guard lock(mu_);
  if (std::find(values_.begin(), values_.end(), value) != values_.end()) return;
  auto pos = std::find_if(values_.begin(), values_.end(),
                          [&](const std::string& v) { return v.size() < value.size(); });
  values_.insert(pos, std::move(value));
}

void Secrets::add_transient(std::string value) {
  if (value.size() < kMinLength) return;
  std::lock_guard lock(mu_);
  if (std::find(transient_.begin(), transient_.end(), value) != transient_.end()) return;
  transient_.push_back(std::move(value));
  if (transient_.size() > kMaxTransient) transient_.erase(transient_.begin());
}

void Secrets::merge(const Secrets& other) {
  std::vector<std::string> copy;
  {
    std::lock_guard lock(other.mu_);
    copy = other.values_;
  }
  for (auto& v : copy) add(std::move(v));
}

std::string Secrets::redact(std::string_view text) const {
  std::string out(text);
  std::lock_guard lock(mu_);
  auto scrub = [&out](const std::string& secret) {
    size_t pos = 0;
    while ((pos = out.find(secret, pos)) != std::string::npos) {
      out.replace(pos, secret.size(), kRedacted);
      pos += kRedacted.size();
    }
  };
  for (const auto& secret : values_) scrub(secret);
  for (const auto& secret : transient_) scrub(secret);
  return out;
}

bool Secrets::contains_secret(std::string_view text) const {
  std::lock_guard lock(mu_);
  for (const auto& secret : values_) {
    if (text.find(secret) != std::string_view::npos) return true;
  }
  for (const auto& secret : transient_) {
    if (text.find(secret) != std::string_view::npos) return true;
  }
  return false;
}

size_t Secrets::size() const {
  std::lock_guard lock(mu_);
  return values_.size();
}

size_t Secrets::digest() const {
  std::lock_guard lock(mu_);
  size_t h = values_.size();
  for (const auto& v : values_) h = h * 1000003u ^ std::hash<std::string>{}(v);
  return h;
}

std::string redact_clipped(std::string_view text, size_t max_chars) {
  std::string out = global_secrets().redact(text);
  if (out.size() > max_chars) out = out.substr(0, max_chars) + "...";
  return out;
}

Secrets& global_secrets() {
  static Secrets secrets;
  return secrets;
}

}  // namespace canaryd
