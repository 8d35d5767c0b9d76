"""Checks a stream entry against the consumer's contract (core; the only fastjsonschema importer).

The contract is ``inbound-email-received.schema.json`` beside this module (JSON Schema
draft 7, written from DESIGN.md section 3), compiled once per process into plain Python
by fastjsonschema: about 100 us an entry, 3 % of building it, where an interpreting
validator (jsonschema) takes 14 times as long (``python bench/contract_cost.py``).
Beyond the schema, two rules JSON Schema cannot say: every field is valid UTF-8 (Redis
would refuse a lone surrogate on every retry), and the entry's ``tenant`` is the payload's
``tenantId``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

#: File name of the contract, a package resource next to this module.
SCHEMA_FILE = "inbound-email-received.schema.json"

#: ``[3]`` in a failing path becomes ``[]``, so a metric label names the field, not the index.
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class ContractViolation:
    """The first rule an entry breaks: ``path`` as ``payload.emailData.from.email``, ``rule``
    the schema keyword (``pattern``, ``required``, ...). Never carries the failing value: it
    may be a header or an address, which we do not log."""

    path: str
    rule: str

    @property
    def field(self) -> str:
        """The path without array indices (a bounded metric label)."""
        return _INDEX.sub("[]", self.path)

    def describe(self) -> str:
        return f"{self.path} breaks the consumer's contract ({self.rule}; DESIGN.md section 3)"


def load_schema() -> dict[str, Any]:
    """The contract as a JSON object."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(definition: str) -> Callable[[Any], Any]:
    schema = load_schema()
    root = {"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]}
    validate: Callable[[Any], Any] = fastjsonschema.compile(root)
    return validate


def check_value(definition: str, value: Any, *, root: str = "") -> ContractViolation | None:
    """``value`` against one definition of the schema (``entry``, ``payload``, ``email``...)."""
    try:
        _validator(definition)(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = str(exc.name or "data")
        path = (root or definition) + path.removeprefix("data")
        rule = str(exc.rule or "schema")
        if rule == "required":  # the message names the missing keys (never a value)
            rule = f"required: {str(exc.message).rsplit(' must contain ', 1)[-1]}"
        return ContractViolation(path, rule)
    return None


def check_entry(
    fields: Mapping[str, str], payload: Mapping[str, Any] | None = None
) -> ContractViolation | None:
    """The first rule the entry breaks, or None when the consumer accepts it.

    ``payload`` may be given when the caller has the object that ``payload_json`` was
    serialised from (``json.dumps`` of str/int/bool/list/dict is exact), to save decoding it.
    """
    for name, value in fields.items():
        if not isinstance(value, str):
            return ContractViolation(f"entry.{name}", "type")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return ContractViolation(f"entry.{name}", "utf-8")
    found = check_value("entry", dict(fields))
    if found is not None:
        return found
    if payload is None:
        try:
            payload = json.loads(fields["payload_json"])
        except ValueError:
            return ContractViolation("entry.payload_json", "json")
    found = check_value("payload", payload)
    if found is not None:
        return found
    if payload["tenantId"] != fields["tenant"]:
        return ContractViolation("payload.tenantId", "equals entry.tenant")
    return None
