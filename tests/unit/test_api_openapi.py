"""The OpenAPI document: valid 3.1, every route documented, every documented route served."""

from __future__ import annotations

import re
from pathlib import Path

from openapi_spec_validator import validate

from email_service.api.app import build_app
from email_service.api.openapi import build_document
from email_service.api.openapi_schemas import CREATE_EXAMPLE
from email_service.api.parts import ApiParts
from email_service.api.validation import (
    ACCEPTED,
    CREATE_ONLY,
    REQUIRED_ON_CREATE,
    validate_create,
)
from email_service.security.secretbox import generate_key
from email_service.settings import Settings


def test_the_document_is_valid_openapi_3_1() -> None:
    document = build_document()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_is_documented_and_every_operation_is_routed(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
            "REDIS_URL": "redis://127.0.0.1:1/0",  # never connected to here
            "EMAIL_SERVICE_SECRET_KEYS": generate_key(),
            "EMAIL_SERVICE_API_JWT_SECRET": "x" * 32,
        }
    )
    parts = ApiParts.build(settings)
    try:
        app = build_app(parts)
    finally:
        parts.close()
    routed = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    document = build_document()
    documented = {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert routed == documented


def test_path_parameters_match_the_route_templates() -> None:
    for path, item in build_document()["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        for method, operation in item.items():
            if method == "parameters":
                continue
            declared_here = declared | {
                p["name"] for p in operation.get("parameters", []) if p["in"] == "path"
            }
            assert declared_here == names, (method, path)


def test_documented_request_fields_are_the_validated_ones() -> None:
    schemas = build_document()["components"]["schemas"]
    assert set(schemas["ProviderUpdate"]["properties"]) == set(ACCEPTED)
    assert set(schemas["ProviderCreate"]["properties"]) == set(ACCEPTED) | set(CREATE_ONLY)
    assert schemas["ProviderCreate"]["required"] == list(REQUIRED_ON_CREATE)


def test_the_documented_example_is_a_valid_request() -> None:
    assert validate_create(CREATE_EXAMPLE).host == "imap.example.com"


def test_every_link_names_an_operation_and_its_parameters() -> None:
    document = build_document()
    operations = {
        operation["operationId"]: operation.get("parameters", []) + item.get("parameters", [])
        for item in document["paths"].values()
        for key, operation in item.items()
        if key != "parameters"
    }
    links = [
        link
        for item in document["paths"].values()
        for key, operation in item.items()
        if key != "parameters"
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) > 10
    for link in links:
        names = {parameter["name"] for parameter in operations[link["operationId"]]}
        assert set(link["parameters"]) <= names, link
