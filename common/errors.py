"""Errors the bench reports to a person, and how configuration errors read."""

from __future__ import annotations


class Error(Exception):
    """An error with a message meant for the person running the bench."""


class ConfigError(Error):
    """A configuration file is wrong; the message names the file and the field."""


class TestbedError(Error):
    """The testbed could not be built, used or torn down."""

    __test__ = False  # not a pytest test class, despite the name


class HostError(Error):
    """A command on a host failed or a host could not be reached."""


def format_validation_error(err, source: str, at: str = "") -> str:
    """One line per problem, each naming the field as a path: `host[2].role: ...`.

    `err` is a pydantic ValidationError, or a list of its errors().  `at` is
    where the validated table sits in its file (`target[0].params`), so that
    the path is the one a person finds in the file.
    """
    lines = []
    for e in (err if isinstance(err, list) else err.errors()):
        parts = [at] if at else []
        for p in e["loc"]:
            if isinstance(p, int):
                parts.append(f"[{p}]")
            else:
                parts.append(("." if parts else "") + str(p))
        loc = "".join(parts)
        msg = e["msg"]
        if e["type"] == "missing":
            msg = "missing required field"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field"
        # "Value error, x" -> "x": the validators already phrase the problem.
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        lines.append(f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}")
    return "\n".join(lines)
