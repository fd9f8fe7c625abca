#include "base/secrets.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <utility>

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

void Secrets::release_locked(std::string value) {
  if (pinned_.count(value)) return;  // still in use: stays pinned
  auto it = std::find(transient_.begin(), transient_.end(), value);
  if (it != transient_.end()) transient_.erase(it);  // becomes the newest again
  transient_.push_back(std::move(value));
  if (transient_.size() > kMaxTransient) transient_.erase(transient_.begin());
}

void Secrets::add_transient(std::string value) {
  if (value.size() < kMinLength) return;
  std::lock_guard lock(mu_);
  release_locked(std::move(value));
}

Secrets::Pin Secrets::pin(std::string value) {
  Pin p;
  if (value.size() < kMinLength) return p;
  {
    std::lock_guard lock(mu_);
    ++pinned_[value];
  }
  p.owner_ = this;
  p.value_ = std::move(value);
  return p;
}

void Secrets::unpin(const std::string& value) {
  std::lock_guard lock(mu_);
  auto it = pinned_.find(value);
  if (it == pinned_.end()) return;
  if (--it->second > 0) return;
  pinned_.erase(it);
  release_locked(value);
}

Secrets::Pin::Pin(Pin&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), value_(std::move(other.value_)) {}

Secrets::Pin& Secrets::Pin::operator=(Pin&& other) noexcept {
  if (this != &other) {
    reset();
    owner_ = std::exchange(other.owner_, nullptr);
    value_ = std::move(other.value_);
  }
  return *this;
}

void Secrets::Pin::reset() {
  if (owner_ == nullptr) return;
  owner_->unpin(value_);
  owner_ = nullptr;
  value_.clear();
}

void Secrets::merge(const Secrets& other) {
  std::vector<std::string> copy;
  {
    std::lock_guard lock(other.mu_);
    copy = other.values_;
  }
  for (auto& v : copy) add(std::move(v));
}

void Secrets::replace_configured(const Secrets& current) {
  std::vector<std::string> copy;
  {
    std::lock_guard lock(current.mu_);
    copy = current.values_;
  }
  std::lock_guard lock(mu_);
  for (auto& old : values_) {
    if (std::find(copy.begin(), copy.end(), old) == copy.end()) release_locked(std::move(old));
  }
  values_ = std::move(copy);  // already longest first
}

std::string Secrets::redact(std::string_view text) const {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (auto [begin, end] : secret_ranges(text, text.size())) {
    out.append(text.substr(pos, begin - pos));
    out.append(kRedacted);
    pos = end;
  }
  out.append(text.substr(pos));
  return out;
}

std::vector<std::pair<size_t, size_t>> Secrets::secret_ranges(std::string_view text,
                                                              size_t starts_before) const {
  std::vector<std::pair<size_t, size_t>> ranges;
  std::lock_guard lock(mu_);
  // Each value is found on its own, then the ranges are merged: replacing one
  // value before searching for the next would leave the part of an
  // overlapping second value that lies outside the first.
  auto find_all = [&](const std::string& secret) {
    for (size_t pos = text.find(secret); pos != std::string_view::npos && pos < starts_before;
         pos = text.find(secret, pos + 1))
      ranges.emplace_back(pos, pos + secret.size());
  };
  for (const auto& secret : values_) find_all(secret);
  for (const auto& [secret, pins] : pinned_) find_all(secret);
  for (const auto& secret : transient_) find_all(secret);
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<size_t, size_t>> merged;
  for (const auto& r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

size_t Secrets::longest() const {
  std::lock_guard lock(mu_);
  size_t n = values_.empty() ? 0 : values_.front().size();  // values_ is longest first
  for (const auto& [t, pins] : pinned_) n = std::max(n, t.size());
  for (const auto& t : transient_) n = std::max(n, t.size());
  return n;
}

bool Secrets::contains_secret(std::string_view text) const {
  std::lock_guard lock(mu_);
  for (const auto& secret : values_) {
    if (text.find(secret) != std::string_view::npos) return true;
  }
  for (const auto& [secret, pins] : pinned_) {
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

size_t Secrets::transient_size() const {
  std::lock_guard lock(mu_);
  return pinned_.size() + transient_.size();
}

size_t Secrets::digest() const {
  std::lock_guard lock(mu_);
  size_t h = values_.size();
  for (const auto& v : values_) h = h * 1000003u ^ std::hash<std::string>{}(v);
  return h;
}

Secrets& global_secrets() {
  static Secrets secrets;
  return secrets;
}

namespace {

// One character of UTF-8 at the front of `text`: its code point and length, or
// nullopt when the first byte does not start a valid, shortest-form sequence
// of a scalar value (overlong forms, surrogates and values past U+10FFFF are
// invalid too).
struct Utf8Char {
  char32_t code_point;
  size_t length;
};
std::optional<Utf8Char> decode_utf8(std::string_view text) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) return Utf8Char{b0, 1};
  size_t length = 0;
  char32_t cp = 0, min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    length = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    length = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    length = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return std::nullopt;
  }
  if (text.size() < length) return std::nullopt;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (byte(i) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
  return Utf8Char{cp, length};
}

// How a character is shown: itself, or a visible escape for those that move
// the cursor, start a terminal sequence, break a line or reorder text.
std::string shown_char(std::string_view bytes, char32_t cp) {
  char buf[12];
  if (cp == '\n') return "\\n";
  if (cp == '\r') return "\\r";
  if (cp == '\t') return "\\t";
  if (cp < 0x20 || cp == 0x7F) {
    std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(cp));
    return buf;
  }
  const bool c1 = cp >= 0x80 && cp <= 0x9F;
  const bool line_separator = cp == 0x2028 || cp == 0x2029;
  const bool bidi = (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
  if (c1 || line_separator || bidi) {
    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
    return buf;
  }
  return std::string(bytes);
}

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// The output of target_text: pieces are added whole or not at all. When one
// does not fit, the text is cut back to the last piece boundary that leaves
// room for kClipMarker, so a clipped text is at most max_bytes long too (and
// clipping it again changes nothing).
class ClippedOutput {
 public:
  explicit ClippedOutput(size_t max_bytes) : max_bytes_(max_bytes) {}
  bool add(std::string_view piece) {
    if (clipped_) return false;
    if (out_.size() + piece.size() > max_bytes_) {
      out_.resize(cut_);
      out_.append(kClipMarker);
      clipped_ = true;
      return false;
    }
    out_.append(piece);
    if (out_.size() + kClipMarker.size() <= max_bytes_) cut_ = out_.size();
    return true;
  }
  bool clipped() const { return clipped_; }
  bool ends_with_space() const { return !out_.empty() && out_.back() == ' '; }
  std::string take() { return std::move(out_); }

 private:
  size_t max_bytes_;
  size_t cut_ = 0;
  bool clipped_ = false;
  std::string out_;
};

}  // namespace

std::string target_text(std::string_view raw, size_t max_bytes, LineBreaks line_breaks) {
  const Secrets& secrets = global_secrets();
  // Only a prefix of `raw` (the window) is scanned: enough for max_bytes of
  // output unless redaction shrank it, in which case the window doubles. A
  // secret that starts inside the window is found whole, since the search
  // looks `longest - 1` bytes past it; none that starts after it is shown.
  size_t window = std::min(raw.size(), max_bytes + 1);
  for (;;) {
    const size_t longest = secrets.longest();
    const size_t searched = std::min(raw.size(), window + (longest > 0 ? longest - 1 : 0));
    const auto ranges = secrets.secret_ranges(raw.substr(0, searched), window);
    ClippedOutput out(max_bytes);
    bool window_too_small = false;
    size_t pos = 0;
    auto next = ranges.begin();
    while (pos < raw.size()) {
      if (next != ranges.end() && next->first <= pos) {
        if (!out.add(kRedacted)) break;
        pos = next->second;
        ++next;
        continue;
      }
      if (pos >= window) {
        window_too_small = true;
        break;
      }
      // A character may not reach into a secret (it is shown as invalid
      // bytes instead) nor past the window (whose end is not yet scanned).
      const size_t limit = next != ranges.end() ? next->first : window;
      auto ch = decode_utf8(raw.substr(pos));
      if (ch && pos + ch->length > limit) {
        if (limit == window && window < raw.size()) {
          window_too_small = true;
          break;
        }
        ch.reset();
      }
      if (!ch) {
        if (!out.add(kReplacementChar)) break;
        ++pos;
        continue;
      }
      const char32_t cp = ch->code_point;
      const bool crlf = cp == '\r' && pos + 1 < limit && raw[pos + 1] == '\n';
      if (line_breaks == LineBreaks::kSpace && (cp == '\n' || cp == '\t' || crlf)) {
        if (!out.ends_with_space() && !out.add(" ")) break;
        pos += crlf ? 2 : 1;
        continue;
      }
      if (!out.add(shown_char(raw.substr(pos, ch->length), cp))) break;
      pos += ch->length;
    }
    if (!window_too_small || out.clipped()) return out.take();
    window = std::min(raw.size(), window * 2);
  }
}

}  // namespace canaryd
