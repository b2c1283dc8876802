"""The OpenAPI document of `modulatio serve`, built from the route table it serves."""

from __future__ import annotations

import re

from modulatio_d import __version__

ERROR = {"type": "object", "properties": {"error": {"type": "string"},
                                          "field": {"type": "string"}}}


def document(endpoints) -> dict:
    paths: dict[str, dict] = {}
    for e in endpoints:
        op: dict = {"summary": e.summary, "tags": list(e.tags),
                    "responses": {"200": {"description": "done",
                                          "content": {e.produces: {}}},
                                  "default": {"description": "an error",
                                              "content": {"application/json":
                                                          {"schema": ERROR}}}}}
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in re.findall(r"{(\w+)}", e.path)]
        params += [{"name": n, "in": "query", "required": False, "schema": {"type": t},
                    "description": d} for n, t, d in e.query]
        if params:
            op["parameters"] = params
        if e.body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": e.body}}}
        if not e.auth:
            op["security"] = []
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {"openapi": "3.1.0",
            "info": {"title": "modulatio", "version": __version__,
                     "description": "The HTTP control plane of a modulatio vault "
                                    "(docs/api.md)."},
            "components": {"securitySchemes": {"bearer": {"type": "http",
                                                          "scheme": "bearer"}}},
            "security": [{"bearer": []}],
            "paths": paths}
