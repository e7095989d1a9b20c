"""Parses a /metrics answer (stdin) with prometheus_client's strict
OpenMetrics parser (prometheus_client.openmetrics.parser: it checks the
# TYPE lines, the counter `_total` suffixes, the histogram buckets and the
final # EOF) and prints its families as JSON, for tests/tests/metrics.rs.
A parse error exits non-zero with the error on stderr.

Output: {"families": {"FAMILY": {"type": "counter", "samples": [[name, {labels}, value], ...]}, ...}}
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> None:
    text = sys.stdin.read()
    out = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = {
            "type": family.type,
            "samples": [[s.name, dict(s.labels), s.value] for s in family.samples],
        }
    json.dump({"families": out}, sys.stdout)


if __name__ == "__main__":
    main()
