"""The OpenAPI document is true: every route is in it, nothing else is, and real answers have
the documented shape."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Flask
from werkzeug.test import TestResponse

from portal.api.views import REQUIRED_SCOPES
from tests.api.conftest import PDF, assert_problem, bare_client
from tests.factories import Api, World

Apis = Callable[..., Api]
PREFIX = "/api/v1"
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def schema_errors(
    doc: dict[str, Any], schema: dict[str, Any], value: Any, at: str = ""
) -> list[str]:
    """What in *value* the (small subset of JSON Schema used by the) document does not allow."""
    schema = _resolve(doc, schema)
    errors: list[str] = []
    for part in schema.get("allOf", []):
        errors += schema_errors(doc, part, value, at)
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not schema_errors(doc, s, value, at)]
        if len(matching) != 1:
            errors.append(f"{at or '/'}: matches {len(matching)} of oneOf")
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[k](value) for k in kinds):
            return [*errors, f"{at or '/'}: {value!r} is not {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at or '/'}: {value!r} not in {schema['enum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{at or '/'}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        errors += [
            f"{at}/{name}: missing" for name in schema.get("required", []) if name not in value
        ]
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                errors += schema_errors(doc, sub, value[name], f"{at}/{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(doc, schema["items"], item, f"{at}/{i}")
    return errors


def assert_documented(doc: dict[str, Any], path: str, method: str, response: TestResponse) -> None:
    """*response* is one the document announces for *path* and *method*, with its shape."""
    documented = doc["paths"][path][method]["responses"]
    assert str(response.status_code) in documented, (path, method, response.status_code)
    answer = _resolve(doc, documented[str(response.status_code)])
    content = answer["content"]
    media = response.mimetype if response.mimetype in content else "*/*"
    assert media in content, (path, method, response.mimetype, list(content))
    schema = content[media].get("schema")
    if schema is not None and response.is_json:
        errors = schema_errors(doc, schema, response.get_json(force=True))
        assert errors == [], (path, method, response.status_code, errors)


def test_the_document_describes_every_route_and_nothing_else(
    app: Flask, world: World, api_for: Apis
) -> None:
    # Given the document as served
    response = api_for(world.agent62).get(f"{PREFIX}/openapi.json")
    assert response.status_code == 200
    doc = response.json
    assert doc is not None and doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": "https://filr.test/api/v1"}]
    # When the application's routes are compared with it
    routes: dict[tuple[str, str], str] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(PREFIX + "/"):
            continue
        template = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix(PREFIX))
        methods = set(rule.methods or ())
        # HEAD and OPTIONS count only on a route that has nothing else (the tus endpoints).
        automatic = {"OPTIONS"} if getattr(rule, "provide_automatic_options", True) else set()
        for method in methods - {"HEAD", "OPTIONS"} or methods - automatic:
            routes[(template, method.lower())] = rule.endpoint
    documented = {
        (path, method): operation
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
    }
    # Then they are the same set, each with the scope the view really requires
    assert set(routes) == set(documented)
    assert set(routes.values()) == set(REQUIRED_SCOPES)  # every view declares its scope
    for key, endpoint in routes.items():
        scope = REQUIRED_SCOPES[endpoint]
        assert documented[key]["security"] == [{"bearerToken": [scope] if scope else []}], key
        # and its path parameters are the route's
        wanted = set(re.findall(r"{(\w+)}", key[0]))
        params = {p["name"] for p in documented[key].get("parameters", []) if p["in"] == "path"}
        assert params == wanted, key
    assert len({op["operationId"] for op in documented.values()}) == len(documented)


def test_the_document_itself_needs_a_token(app: Flask) -> None:
    assert_problem(bare_client(app).get(f"{PREFIX}/openapi.json"), 401, "unauthorized")


def test_real_answers_have_the_documented_shape(app: Flask, world: World, api_for: Apis) -> None:
    sender, recipient = api_for(world.adviser_ft), api_for(world.agent62)
    reader = api_for(world.adviser_ft, scopes=["read"])
    intruder = api_for(world.agent59)
    doc = sender.get(f"{PREFIX}/openapi.json").json
    assert doc is not None

    def check(path: str, method: str, response: TestResponse) -> Any:
        assert_documented(doc, path, method, response)
        return response.json

    check("/me", "get", sender.get(f"{PREFIX}/me"))
    check("/organisations", "get", sender.get(f"{PREFIX}/organisations?departement=62"))
    check("/organisations", "get", sender.get(f"{PREFIX}/organisations"))  # 422
    body = {"departement": "62", "category": "document", "title": "t", "recipients": [world.cd62]}
    check("/deposits", "post", reader.post(f"{PREFIX}/deposits", json=body))  # 403
    check("/deposits", "post", sender.post(f"{PREFIX}/deposits", json={**body, "title": ""}))
    check("/deposits", "post", sender.post(f"{PREFIX}/deposits", data="x"))  # 400
    deposit = check("/deposits", "post", sender.post(f"{PREFIX}/deposits", json=body))
    files = f"{PREFIX}/deposits/{deposit['id']}/files"
    headers = {"X-Filename": "fiche.pdf"}
    uploaded = check(
        "/deposits/{deposit_id}/files", "post", sender.post(files, data=PDF, headers=headers)
    )
    check(
        "/deposits/{deposit_id}/files", "post", sender.post(files, data=b"<html>", headers=headers)
    )
    one = f"{PREFIX}/deposits/{deposit['id']}"
    check("/deposits/{deposit_id}/publish", "post", sender.post(f"{one}/publish"))
    check("/deposits/{deposit_id}/publish", "post", sender.post(f"{one}/publish"))  # 422: sent
    check("/deposits", "get", recipient.get(f"{PREFIX}/deposits?limit=1"))
    check("/deposits", "get", recipient.get(f"{PREFIX}/deposits?limit=1000"))  # 422
    check("/deposits/{deposit_id}", "get", recipient.get(one))
    check("/deposits/{deposit_id}", "get", intruder.get(one))  # 404
    content = "/deposits/{deposit_id}/files/{file_id}/content"
    check(content, "get", recipient.get(uploaded["content_url"]))
    check(content, "get", intruder.get(uploaded["content_url"]))  # 404
    check("/deposits/{deposit_id}", "get", sender.get(one))  # with receipts
    check("/deposits/{deposit_id}/withdraw", "post", sender.post(f"{one}/withdraw"))
    check(content, "get", recipient.get(uploaded["content_url"]))  # 410
    check("/me", "get", bare_client(app).get(f"{PREFIX}/me"))  # 401


def test_the_shape_checker_sees_what_is_wrong() -> None:
    doc = {
        "components": {
            "schemas": {
                "A": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {"id": {"type": "string"}},
                }
            }
        }
    }
    schema = {"allOf": [{"$ref": "#/components/schemas/A"}, {"required": ["n"]}]}
    assert schema_errors(doc, schema, {"id": "x", "n": 1}) == []
    assert schema_errors(doc, schema, {"id": 3}) == ["/id: 3 is not ['string']", "/n: missing"]
    assert schema_errors(doc, {"type": ["string", "null"]}, None) == []
    assert schema_errors(doc, {"type": "array", "items": {"enum": [1]}}, [1, 2]) == [
        "/1: 2 not in [1]"
    ]
