"""The little JSON Schema the API's request bodies need, checked by one function.

Each body is an object schema: `properties` (type string, integer, number, boolean,
array or object; `enum`, `minimum`, `maximum`, `minLength`, `items`), `required`, and
no other keys (`additionalProperties: false`). The same dictionaries go into the
OpenAPI document (openapi.py), so what is documented is what is checked.
"""

from __future__ import annotations

TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool,
         "array": list, "object": dict}


class Invalid(ValueError):
    """A body that does not fit its schema: `field` names where (422)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


def check(value: object, schema: dict, field: str = "") -> None:
    kind = schema.get("type")
    if kind is not None:
        wanted = TYPES[kind]
        if isinstance(value, bool) and kind in ("integer", "number"):
            raise Invalid(field, f"must be {'an' if kind == 'integer' else 'a'} {kind}, "
                                 "not a boolean")
        if not isinstance(value, wanted):
            raise Invalid(field, f"must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    if "anyOf" in schema:
        problems = []
        for option in schema["anyOf"]:
            try:
                check(value, option, field)
                break
            except Invalid as e:
                problems.append(str(e))
        else:
            raise Invalid(field, "fits none of its forms: " + "; ".join(problems))
    if "enum" in schema and value not in schema["enum"]:
        raise Invalid(field, "must be one of " + ", ".join(map(str, schema["enum"])))
    if "minimum" in schema and value < schema["minimum"]:
        raise Invalid(field, f"must be at least {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise Invalid(field, f"must be at most {schema['maximum']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise Invalid(field, "must not be empty")
    if kind == "array" and "items" in schema:
        if len(value) > schema.get("maxItems", 10_000):
            raise Invalid(field, f"has more than {schema.get('maxItems', 10_000)} items")
        for i, item in enumerate(value):
            check(item, schema["items"], f"{field}[{i}]")
    if kind == "object" and "properties" in schema:
        for name in schema.get("required", ()):
            if name not in value:
                raise Invalid(_join(field, name), "is required")
        if schema.get("additionalProperties") is False:
            for name in value:
                if name not in schema["properties"]:
                    raise Invalid(_join(field, name), "is not a field of this request")
        for name, sub in schema["properties"].items():
            if name in value:
                check(value[name], sub, _join(field, name))


def _join(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name
