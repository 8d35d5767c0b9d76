"""The request fields' declarations: what ``validation`` accepts is what the document says.

``jsonschema`` reads each field's documented schema independently of ``fields.conforms``:
a value the API accepts is always valid by the document, and for fields without a rule
beyond their schema (host names and URLs have one) the two agree both ways, except that
the API refuses a final line break that JSON Schema's ``$`` lets through.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.api.fields import CREATE_ONLY_FIELDS, PROVIDER_FIELDS, RequestField

FIELDS = {**PROVIDER_FIELDS, **CREATE_ONLY_FIELDS}
#: Fields whose normaliser refuses some schema-valid values (a further rule).
FURTHER_RULES = {"host", "oauthAuthorizeUrl", "oauthTokenUrl"}
#: Lengths around every bound the declarations use.
LENGTHS = [
    0,
    1,
    2,
    3,
    4,
    199,
    200,
    201,
    252,
    253,
    254,
    255,
    256,
    319,
    320,
    321,
    999,
    1000,
    1001,
    1023,
    1024,
    1025,
    1999,
    2000,
    2001,
]

characters = st.sampled_from(
    ["a", "Z", "0", " ", "@", "\n", "\r", "\x00", "\x7f", "é", ".", ":", '"', "-"]
)
strings = st.builds(
    lambda char, n, edge: (edge + char * n)[: max(n, 0)] if n else "",
    characters,
    st.sampled_from(LENGTHS),
    st.sampled_from(["", "a", " a", "a@b", "x"]),
) | st.text(alphabet=characters, max_size=12)
values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-3, max_value=70_000) | strings,
    lambda inner: st.lists(inner, max_size=4) | st.lists(strings, min_size=95, max_size=105),
    max_leaves=120,
)


def documented(spec: RequestField, value: Any) -> bool:
    try:
        jsonschema.validate(value, spec.document())
    except jsonschema.ValidationError:
        return False
    return True


def ends_with_line_break(value: Any) -> bool:
    if isinstance(value, list):
        return any(map(ends_with_line_break, value))
    return isinstance(value, str) and value.endswith("\n")


@pytest.mark.parametrize("name", sorted(FIELDS))
@settings(max_examples=30, deadline=None)
@given(value=values)
def test_accepted_values_are_documented_ones(name: str, value: Any) -> None:
    spec = FIELDS[name]
    accepted, _normalised = spec.check(value)
    if accepted:
        assert documented(spec, value)
    elif name not in FURTHER_RULES and not ends_with_line_break(value):
        assert not documented(spec, value)


def test_every_field_says_what_it_accepts() -> None:
    for name, spec in FIELDS.items():
        document = spec.document()
        assert document["description"].startswith(spec.accepted), name
        assert "type" in document, name
