// The probe series of /metrics, written from the ProbeBook in the text
// format. Names and labels are a contract (DESIGN.md, docs/metrics.md):
// dashboards and the generated alert rules query them. Every probe has the
// families here; a type adds its own (ProbeType::metrics) without this file
// knowing it.
#pragma once

#include <string>
#include <vector>

#include "daemon/daemon_metrics.h"
#include "daemon/probe_book.h"

namespace canaryd {

// Appends every probe family (text format 0.0.4) of the probe loops' books,
// each family once.
void render_probe_metrics(const std::vector<const ProbeBook*>& books, std::string& out);

// The exposition of the daemon's own series, then the probes'.
std::string render_metrics(const DaemonMetrics& daemon, const std::vector<const ProbeBook*>& books);

}  // namespace canaryd
