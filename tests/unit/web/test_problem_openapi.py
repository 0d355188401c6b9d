"""Problems (RFC 9457) and the OpenAPI document against the application's routes."""

from __future__ import annotations

import json

from pigeon.web.app import WebDeps, api_routes, build_app
from pigeon.web.openapi import build_document
from pigeon.web.problem import PROBLEM_TYPE, problem_response
from pigeon.web.tokens import TokenStore


async def _ready() -> dict[str, bool]:
    return {"queue": True}


def deps(tmp_path) -> WebDeps:
    return WebDeps(
        tokens=TokenStore.in_data_dir(tmp_path), ops={}, ready=_ready, max_body=1000, submit=_ready
    )


def test_problem_shape():
    resp = problem_response(400, "limit: too big", errors=[{"field": "limit", "message": "x"}])
    assert resp.status == 400
    assert resp.content_type == PROBLEM_TYPE
    body = json.loads(resp.body)
    assert body == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": "limit: too big",
        "errors": [{"field": "limit", "message": "x"}],
    }


def test_every_route_is_documented_and_nothing_else(tmp_path):
    app = build_app(deps(tmp_path))
    served = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD"
        and r.resource is not None
        and r.resource.canonical.startswith("/api/")
    }
    document = build_document(api_routes(deps(tmp_path)), version="0")
    documented = {(m.upper(), path) for path, ops in document["paths"].items() for m in ops}
    assert served == documented
    assert ("GET", "/api/openapi.json") in served


def test_document_says_auth_scopes_and_problems(tmp_path):
    document = build_document(api_routes(deps(tmp_path)), version="0")
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            public = path in ("/api/health", "/api/ready", "/api/openapi.json")
            assert (op["security"] == []) == public, (method, path)
            if not public:
                assert op["x-pigeon-scope"] in ("send", "read", "admin")
                assert {"401", "403"} <= set(op["responses"])
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    (media,) = response["content"]
                    assert media == PROBLEM_TYPE
            ids = [p["name"] for p in op.get("parameters", ()) if p["in"] == "path"]
            assert ids == [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
    operation_ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_the_document_is_valid_openapi_3_1(tmp_path):
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    document = build_document(api_routes(deps(tmp_path)), version="0")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_a_bug_is_a_generic_500_and_a_logged_traceback(caplog):
    import asyncio

    from aiohttp.test_utils import make_mocked_request

    from pigeon.web.problem import Problem, error_middleware

    async def broken(request):
        raise RuntimeError("secret internals")

    async def refused(request):
        raise Problem(409, "not now", headers={"X-Why": "state"}, result={"done": []})

    request = make_mocked_request("GET", "/api/queue")
    resp = asyncio.run(error_middleware(request, broken))
    body = json.loads(resp.body)
    assert resp.status == 500 and body["detail"] == "internal error (see the pigeon log)"
    assert "secret" not in resp.body.decode()
    assert "secret internals" in caplog.text and "Traceback" in caplog.text
    resp = asyncio.run(error_middleware(request, refused))
    assert resp.status == 409 and resp.headers["X-Why"] == "state"
    assert json.loads(resp.body)["result"] == {"done": []}
