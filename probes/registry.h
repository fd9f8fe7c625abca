// The one explicit table of probe types. Adding a type is one line here plus
// its file pair; there are no self-registering static objects.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/yaml_section.h"
#include "probes/probe.h"

namespace canaryd {

// The fields every probe has, parsed by the daemon before the type's own section.
struct ProbeSpec {
  std::string name;
  std::string type;
  std::string category;
  bool critical = false;
  Duration interval{0};
  Duration timeout{0};
  std::vector<std::pair<std::string, std::string>> labels;  // per-probe, shown on canary_probe_info
  // Changes whenever anything about the probe changes (including a rotated
  // secret), so a reload keeps unchanged probes exactly as they were.
  std::string fingerprint;
};

struct ProbeType {
  std::string_view name;
  // Every failure reason the type can report; each is pre-created at 0 in
  // canary_probe_failures_total so rates work from the first scrape.
  std::vector<Reason> reasons;
  // Every phase the type reports, pre-created in the phase histogram.
  std::vector<std::string_view> phases;
  // Reads the type's own section (the key named after the type). Records
  // errors in the section and returns nullptr when the section is invalid.
  ProbePtr (*make)(const ProbeSpec& spec, YamlSection& section);
};

const std::vector<ProbeType>& probe_types();
const ProbeType* find_probe_type(std::string_view name);
std::string probe_type_names();  // "http, redis, ..." for error messages

}  // namespace canaryd
