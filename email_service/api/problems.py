"""Error responses of the API: one exception carrying status, code and field problems (core).

Every 4xx and 5xx body has the same shape (``ErrorBody`` in the OpenAPI document)::

    {"error": "validation_failed", "message": "port: expected ...",
     "fields": [{"field": "port", "message": "expected a whole number from 1 to 65535"}]}

Messages say what is accepted and never repeat the value that was sent, so a password
typed into the wrong field does not come back in a response or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldProblem:
    """One rejected field: its name (``folders[2]`` for list items) and what is accepted."""

    field: str
    message: str


@dataclass
class ApiProblem(Exception):
    """Raised anywhere below a handler; the error middleware turns it into the response."""

    status: int
    code: str
    message: str
    fields: Sequence[FieldProblem] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.fields:
            body["fields"] = [{"field": p.field, "message": p.message} for p in self.fields]
        return body


#: Problems summed up in an error's ``message``.
SUMMARY_PROBLEMS = 5
#: Problems listed in an error's ``fields``: a body of 5,000 unknown keys gets a short
#: answer, not one entry per key (the message says how many more there were).
MAX_FIELD_PROBLEMS = 20


def invalid_fields(problems: Sequence[FieldProblem]) -> ApiProblem:
    """422 naming the rejected fields (the first ``MAX_FIELD_PROBLEMS`` of them)."""
    summary = "; ".join(f"{p.field}: {p.message}" for p in problems[:SUMMARY_PROBLEMS])
    if len(problems) > SUMMARY_PROBLEMS:
        summary += f"; and {len(problems) - SUMMARY_PROBLEMS} more"
    return ApiProblem(
        422, "validation_failed", summary, fields=tuple(problems[:MAX_FIELD_PROBLEMS])
    )


def provider_not_found() -> ApiProblem:
    """404; the same answer whether the id does not exist or belongs to another tenant."""
    return ApiProblem(404, "not_found", "no such provider for this tenant")
