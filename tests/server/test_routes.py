"""Routes are tried in order (hot ones first, see ``create_app``): that is safe only while a request
meant for one route is never taken by another tried before it, checked here over the whole API."""

from __future__ import annotations

import re

import httpx
from starlette.routing import compile_path

_PARAM = re.compile(r"{[^}]+}")


def test_no_route_is_shadowed_by_one_tried_before_it(anon: httpx.Client) -> None:
    paths: dict[str, dict[str, object]] = anon.get("/openapi.json").json()["paths"]
    order = list(paths)  # the spec lists paths in the order the app tries its routes
    templates = [(template, method) for template, ops in paths.items() for method in ops]
    assert len(templates) > 60, "the spec lists fewer routes than the server has"
    shadowed = []
    for template, method in templates:
        sample = _PARAM.sub("p0", template)  # a request meant for this template
        for other, other_method in templates:
            if other == template or other_method != method or not compile_path(other)[0].match(sample):
                continue
            if order.index(other) < order.index(template):
                shadowed.append(f"{method.upper()} {sample}: meant for {template}, taken by {other}")
    assert not shadowed, "\n".join(shadowed)


def test_a_literal_segment_is_not_taken_for_a_parameter() -> None:
    """The check above can fail: a parameter route does match a literal path beside it."""
    regex = compile_path("/threads/{thread_id}")[0]
    assert regex.match(_PARAM.sub("p0", "/threads/search"))
