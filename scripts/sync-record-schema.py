"""Rewrite the ``summary`` block of workflow/schemas/record.schema.yaml from the metric registry
(benchbench/spec/metrics.py SUMMARY), and the failure kinds' enum from benchbench/protocol/failure.py
FAILURE_KINDS. Run after adding or changing a summary metric or a failure kind;
tests/test_registry.py and tests/test_faults.py fail until the schema and the code agree. The
summary block must stay the file's last."""

import re
import textwrap
from pathlib import Path

import yaml

from benchbench.protocol.failure import FAILURE_KINDS
from benchbench.spec.metrics import SUMMARY

PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "record.schema.yaml"


def main() -> None:
    text = PATH.read_text()
    kinds = textwrap.fill(
        ", ".join(FAILURE_KINDS), width=100, initial_indent="        enum: [", subsequent_indent="               "
    )
    text = re.sub(r"^        enum: \[config,[^\]]*\]\n", lambda m: kinds + "]\n", text, count=1, flags=re.M)
    head = text[: text.index("  summary:\n")]
    names = ", ".join(m.name for m in SUMMARY)
    required = textwrap.fill(names, width=100, initial_indent="    required: [", subsequent_indent="               ")
    props = "".join(
        f"      {m.name}: {yaml.safe_dump(m.json_schema(), default_flow_style=True, width=200).strip()}\n"
        for m in SUMMARY
    )
    block = (
        "  summary:\n    type: object\n"
        "    description: one figure per metric of benchbench/spec/metrics.py SUMMARY (null where not measured)\n"
        f"    additionalProperties: false\n{required}]\n    properties:\n{props}"
    )
    PATH.write_text(head + block)


if __name__ == "__main__":
    main()
