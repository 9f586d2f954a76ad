"""An imitation of a Bitrix24 portal's REST API behind an incoming webhook, on 127.0.0.1:
`POST /rest/<user>/<secret>/<method>.json` with a JSON body, `{"result": …}` answers (lists
with `next`/`total`, 2 a page so that paging is exercised), `batch` with `cmd` strings and
`result_error`, the portal's errors (`INVALID_CREDENTIALS` 401, `Not found` 400,
`QUERY_LIMIT_EXCEEDED` 503, `OPERATION_TIME_LIMIT` 429). Every request is kept; a test
asserts each one, and that nothing ever updates a deal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from tests.crm.imitation import Answer, Call, Imitation, serve

USER, SECRET = "1", "x7k2p9w4q1z8m3n6"


def _ok(result: Any, **extra: Any) -> Answer:
    return 200, {}, {"result": result, **extra, "time": {"start": 0, "finish": 0}}


NOT_FOUND: Answer = (400, {}, {"error": "", "error_description": "Not found"})


@dataclass
class Bitrix24State(Imitation):
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    deal_contacts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: list[dict[str, Any]] = field(default_factory=list)
    page: int = 2

    def methods(self) -> list[str]:
        """Each call's method, batches spelled out: `batch(crm.deal.get,…)`."""
        names = []
        for call in self.calls:
            method = call.path.rsplit("/", 1)[-1].removesuffix(".json")
            if method == "batch":
                inner = ",".join(c.split("?")[0] for c in call.body["cmd"].values())
                method = f"batch({inner})"
            names.append(method)
        return names

    def authorized(self, call: Call) -> Answer | None:
        if call.path.startswith(f"/rest/{USER}/{SECRET}/") and call.method == "POST":
            return None
        return (
            401,
            {},
            {"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"},
        )

    def route(self, call: Call) -> Answer:
        method = call.path.rsplit("/", 1)[-1].removesuffix(".json")
        if method == "batch":
            return self._batch(call.body)
        return self.run(method, call.body)

    def run(self, method: str, params: dict[str, Any]) -> Answer:
        if method == "crm.deal.get":
            deal = self.deals.get(str(params.get("id")))
            return _ok(deal) if deal else NOT_FOUND
        if method == "crm.deal.contact.items.get":
            return _ok(self.deal_contacts.get(str(params.get("id")), []))
        if method == "crm.contact.get":
            contact = self.contacts.get(str(params.get("id")))
            return _ok(contact) if contact else NOT_FOUND
        if method == "user.get":
            user = self.users.get(str(params.get("ID")))
            return _ok([user] if user else [])
        if method == "profile":
            return _ok({"ID": USER, "ADMIN": True, "NAME": "Сергей", "LAST_NAME": "Петров"})
        if method == "crm.deal.list":
            return self._deal_list(params)
        if method == "crm.timeline.comment.add":
            fields = params["fields"]  # since crm 23.100.0 only the lower-case key works
            assert fields["ENTITY_TYPE"] in ("deal", "contact") and fields["COMMENT"]
            self.comments.append({"ID": str(len(self.comments) + 1), **fields})
            return _ok(len(self.comments))
        if method == "crm.timeline.comment.list":
            key = (params["filter"]["ENTITY_ID"], params["filter"]["ENTITY_TYPE"])
            found = [
                c for c in reversed(self.comments) if (c["ENTITY_ID"], c["ENTITY_TYPE"]) == key
            ]
            return _ok(found, total=len(found))
        return (
            400,
            {},
            {"error": "ERROR_METHOD_NOT_FOUND", "error_description": f"Method not found! {method}"},
        )

    def _batch(self, body: dict[str, Any]) -> Answer:
        assert body["halt"] == 0 and len(body["cmd"]) <= 50
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for name, command in body["cmd"].items():
            method, _, query = command.partition("?")
            status, _, answer = self.run(method, dict(parse_qsl(query)))
            if status == 200:
                results[name] = answer["result"]
            else:
                errors[name] = answer
        return _ok({"result": results, "result_error": errors, "result_total": [],
                    "result_next": [], "result_time": {}})  # fmt: skip

    def _deal_list(self, params: dict[str, Any]) -> Answer:
        flt = params["filter"]
        since = datetime.fromisoformat(flt[">=DATE_MODIFY"])
        matching = sorted(
            (d for d in self.deals.values()
             if d["STAGE_SEMANTIC_ID"] == flt["STAGE_SEMANTIC_ID"]
             and datetime.fromisoformat(d["DATE_MODIFY"]) >= since),
            key=lambda d: datetime.fromisoformat(d["DATE_MODIFY"]),
        )  # fmt: skip
        start = int(params.get("start") or 0)
        page = [
            {k: d.get(k) for k in params["select"]} for d in matching[start : start + self.page]
        ]
        extra: dict[str, Any] = {"total": len(matching)}
        if start + self.page < len(matching):
            extra["next"] = start + self.page
        return _ok(page, **extra)


@contextmanager
def bitrix24_api() -> Iterator[tuple[str, Bitrix24State]]:
    state = Bitrix24State()
    with serve(state) as url:
        yield f"{url}/rest/{USER}/{SECRET}/", state


QUERY_LIMIT: Answer = (
    503,
    {},
    {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"},
)
TIME_LIMIT: Answer = (
    429,
    {},
    {
        "error": "OPERATION_TIME_LIMIT",
        "error_description": "Method is blocked due to operation time limit.",
    },
)
