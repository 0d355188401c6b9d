"""The OpenAPI 3.1 document of the HTTP API, built from the route table.

Contract:
  * `build_document(routes, version)` describes every `Route`
    (web/routes.py) and nothing else: its method and path, summary, path
    and query parameters, request body schema, success response schema,
    and the problems it may answer, all in the one problem+json shape of
    RFC 9457 (components/schemas/Problem). Routes with a scope carry the
    bearer security requirement (RFC 6750) and name the scope in their
    description and in `x-pigeon-scope`; the others have `security: []`.
  * Schemas are JSON Schema 2020-12, the dialect of OpenAPI 3.1.
  * Pure: data in, a JSON-ready dict out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pigeon.web.problem import PROBLEM_TYPE, title
from pigeon.web.routes import Route

__all__ = ["PROBLEM_SCHEMA", "build_document"]

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; extension members may be present",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": 'always "about:blank" (RFC 9457 §4.2.1)'},
        "title": {"type": "string", "description": "the HTTP status's reason phrase"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "what was wrong with this request"},
        "smtp_code": {
            "type": "integer",
            "description": "POST /api/send: the SMTP reply code a receive stage refused with",
        },
        "enhanced_code": {
            "type": ["string", "null"],
            "description": "POST /api/send: its enhanced status code (RFC 3463), e.g. 5.7.1",
        },
        "stage": {
            "type": "string",
            "description": "POST /api/send: the stage that refused, as the mail log names it "
            "(CONNECT, AUTH, MAIL, RCPT, DATA, END-OF-MESSAGE)",
        },
        "address": {
            "type": "string",
            "description": "POST /api/send: the address the refused MAIL or RCPT named",
        },
        "errors": {
            "type": "array",
            "description": "the fields that did not validate",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

#: Problems any route may answer: a malformed request, a body too large,
#: an unexpected failure (logged).
_COMMON = (400, 413, 500)
_AUTH = (401, 403)


def _problem(status: int) -> dict[str, Any]:
    return {
        "description": title(status),
        "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": route.summary,
        "responses": {
            str(route.status): {
                "description": "success",
                "content": {route.media: {"schema": route.response}},
            }
        },
    }
    statuses = set(_COMMON) | set(route.problems)
    if route.request is not None:
        statuses.add(415)
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": route.request}},
        }
    if route.scope is None:
        op["security"] = []
    else:
        statuses |= set(_AUTH)
        op["security"] = [{"bearer": []}]
        op["x-pigeon-scope"] = route.scope
        op["description"] = f"Needs a token with the `{route.scope}` scope."
    if route.params:
        op["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "description": p.description,
                "schema": p.schema,
            }
            for p in route.params
        ]
    for status in sorted(statuses):
        op["responses"][str(status)] = _problem(status)
    return op


def _operation_id(route: Route) -> str:
    words = re.sub(r"[{}]", "", route.path.removeprefix("/api/")).replace(".", "_")
    return route.method.lower() + "_" + re.sub(r"[^A-Za-z0-9]+", "_", words).strip("_")


def build_document(routes: Iterable[Route], *, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "pigeon HTTP API",
            "version": version,
            "description": "The JSON API of the pigeon mail server (docs/api.md). Every "
            "error is an RFC 9457 problem (application/problem+json).",
        },
        "paths": paths,
        "components": {
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token made by `pigeon token add NAME --scope ...`",
                }
            },
        },
    }
