"""Inventory files written by tests (tests/test_remote_campaign.py, tests/test_remote_docs.py)."""

from __future__ import annotations

import json


def toml_dump(data: dict) -> str:
    """Just enough TOML for an inventory (tables, arrays of tables, scalars)."""
    def scalar(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        return json.dumps(str(v))

    out = []
    def table(prefix, d):
        simple = {k: v for k, v in d.items() if not isinstance(v, (dict, list))}
        out.extend(f"{k} = {scalar(v)}" for k, v in simple.items())
        for k, v in d.items():
            if isinstance(v, dict):
                out.append(f"\n[{prefix}{k}]")
                table(f"{prefix}{k}.", v)
    for k, v in data.items():
        if isinstance(v, dict):
            out.append(f"\n[{k}]")
            table(f"{k}.", v)
    for h in data["host"]:
        out.append("\n[[host]]")
        for k, v in h.items():
            if isinstance(v, dict):
                out.append(f"{k} = {{ " + ", ".join(f"{a} = {scalar(b)}" for a, b in v.items())
                           + " }")
            else:
                out.append(f"{k} = {scalar(v)}")
    return "\n".join(out) + "\n"
