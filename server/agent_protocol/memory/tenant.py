"""One tenant's view of the memory store: every namespace under the tenant's own first label.

A client (over HTTP) and a run (through LangGraph's ``Runtime.store``) see namespaces as they
named them; the view stores them under ``("tenant:<name>", ...)`` and strips that label from what
it returns, so no request can name, list or reach another tenant's items. Clients may not start a
label with ``tenant:`` (so a namespace or suffix can never spell a tenant's label). Every op is
checked here, the one place both paths go through: labels (non-empty, no ``.``, no NUL, length),
depth, key, value (a JSON object within the size limit), TTL and filter; a refusal is an
:class:`InvalidStoreRequestError` whose message says what to fix, raised before anything is stored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import orjson
from langgraph.store.base import (
    NOT_PROVIDED,
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    NotProvided,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)

from server.agent_protocol.memory.config import MemoryStoreSettings
from server.agent_protocol.memory.errors import InvalidStoreRequestError

__all__ = ["RESERVED_LABEL_PREFIX", "TenantMemoryStore", "tenant_label"]

RESERVED_LABEL_PREFIX = "tenant:"
_FILTER_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_FILTER_OPS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})


def tenant_label(tenant: str) -> str:
    """The first label of every namespace of ``tenant`` (``.`` and ``%`` escaped: labels have no dots)."""
    return RESERVED_LABEL_PREFIX + tenant.replace("%", "%25").replace(".", "%2E")


class TenantMemoryStore(BaseStore):
    """The memory store as ``tenant`` sees it (async only, like the store under it)."""

    supports_ttl = True

    def __init__(self, inner: BaseStore, tenant: str, limits: MemoryStoreSettings) -> None:
        self.inner = inner
        self.tenant = tenant
        self.ttl_config: TTLConfig | None = inner.ttl_config
        self._label = tenant_label(tenant)
        self._limits = limits

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Not supported: the store is used from the event loop (use ``abatch``)."""
        raise NotImplementedError("TenantMemoryStore is async only: use abatch / aget / asearch / aput")

    async def aput(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: Mapping[str, Any],
        index: Literal[False] | list[str] | None = None,
        *,
        ttl: float | None | NotProvided = NOT_PROVIDED,
    ) -> None:
        """``BaseStore.aput``, with this view's checks first (their messages say what to fix)."""
        self._namespace(namespace, "namespace")
        await super().aput(namespace, key, value, index, ttl=ttl)

    async def aget(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        """``BaseStore.aget``, with this view's checks first."""
        self._namespace(namespace, "namespace")
        return await super().aget(namespace, key, refresh_ttl=refresh_ttl)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Check every op, run them under the tenant's label, return results without it."""
        ops = list(ops)
        scoped = [self._scoped(op) for op in ops]
        results = await self.inner.abatch(scoped)
        return [self._unscoped(op, result) for op, result in zip(ops, results, strict=True)]

    # checks --------------------------------------------------------------------------------------

    def _namespace(self, namespace: tuple[str, ...], what: str, *, empty_ok: bool = False) -> tuple[str, ...]:
        limits = self._limits
        if not isinstance(namespace, tuple | list):
            raise InvalidStoreRequestError(f"{what} must be a list of labels (strings)")
        if not namespace and not empty_ok:
            raise InvalidStoreRequestError(f'{what} must have at least one label, e.g. ["memories"]')
        if len(namespace) > limits.max_namespace_depth:
            raise InvalidStoreRequestError(
                f"{what} has {len(namespace)} labels; at most {limits.max_namespace_depth} are allowed"
            )
        for label in namespace:
            if not isinstance(label, str) or not label:
                raise InvalidStoreRequestError(
                    f"{what}: every label must be a non-empty string, got {label!r}"
                )
            if "." in label or "\x00" in label:
                raise InvalidStoreRequestError(
                    f"{what}: label {label!r} contains '.' or a NUL byte; use separate labels instead of dots"
                )
            if len(label) > limits.max_label_chars:
                raise InvalidStoreRequestError(
                    f"{what}: a label has {len(label)} characters; "
                    f"at most {limits.max_label_chars} are allowed"
                )
            if label.startswith(RESERVED_LABEL_PREFIX):
                raise InvalidStoreRequestError(
                    f"{what}: labels starting with {RESERVED_LABEL_PREFIX!r} are reserved for the server"
                )
        if namespace and namespace[0] == "langgraph":
            raise InvalidStoreRequestError(f'{what}: the first label may not be "langgraph" (reserved)')
        return tuple(namespace)

    def _key(self, key: str) -> None:
        if not isinstance(key, str) or not key or "\x00" in key:
            raise InvalidStoreRequestError("key must be a non-empty string without NUL bytes")
        if len(key) > self._limits.max_key_chars:
            raise InvalidStoreRequestError(
                f"key has {len(key)} characters; at most {self._limits.max_key_chars} are allowed"
            )

    def _value(self, value: Any) -> None:
        if not isinstance(value, dict):
            raise InvalidStoreRequestError(f"value must be a JSON object, got {type(value).__name__}")
        try:
            size = len(orjson.dumps(value))
        except TypeError as exc:
            raise InvalidStoreRequestError(f"value is not JSON: {exc}") from None
        if size > self._limits.max_value_bytes:
            raise InvalidStoreRequestError(
                f"value is {size} bytes as JSON; at most {self._limits.max_value_bytes} are allowed"
            )

    @staticmethod
    def _ttl(ttl: float | None) -> None:
        if ttl is not None and (not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0):
            raise InvalidStoreRequestError(f"ttl must be a positive number of minutes or null, got {ttl!r}")

    @staticmethod
    def _filter(filter: dict[str, Any] | None) -> None:
        if filter is None:
            return
        if not isinstance(filter, dict):
            raise InvalidStoreRequestError(
                "filter must be an object of field: value or field: {operator: value}"
            )
        for key, value in filter.items():
            if not _FILTER_KEY.match(key):
                raise InvalidStoreRequestError(
                    f"filter field {key!r}: use letters, digits, '_', '-' and '.' only (at most 128)"
                )
            if isinstance(value, dict) and any(k.startswith("$") for k in value):
                unknown = sorted(set(value) - _FILTER_OPS)
                if unknown:
                    raise InvalidStoreRequestError(
                        f"filter field {key!r}: unknown operator {unknown[0]!r}; "
                        f"use one of {sorted(_FILTER_OPS)}"
                    )

    # scoping -------------------------------------------------------------------------------------

    def _scoped(self, op: Op) -> Op:
        label = (self._label,)
        if isinstance(op, GetOp):
            self._key(op.key)
            return op._replace(namespace=label + self._namespace(op.namespace, "namespace"))
        if isinstance(op, PutOp):
            self._key(op.key)
            if op.value is not None:
                self._value(op.value)
                self._ttl(op.ttl)
            return op._replace(namespace=label + self._namespace(op.namespace, "namespace"))
        if isinstance(op, SearchOp):
            self._filter(op.filter)
            prefix = self._namespace(op.namespace_prefix, "namespace_prefix", empty_ok=True)
            return op._replace(namespace_prefix=label + prefix)
        if isinstance(op, ListNamespacesOp):
            conditions = [MatchCondition(match_type="prefix", path=label)]
            for cond in op.match_conditions or ():
                path = self._namespace(tuple(cond.path), cond.match_type, empty_ok=True)
                if cond.match_type == "prefix":
                    conditions[0] = MatchCondition(match_type="prefix", path=label + path)
                elif path:
                    conditions.append(MatchCondition(match_type=cond.match_type, path=path))
            depth = None if op.max_depth is None else op.max_depth + 1
            return op._replace(match_conditions=tuple(conditions), max_depth=depth)
        raise InvalidStoreRequestError(f"unsupported store operation {type(op).__name__}")

    def _unscoped(self, op: Op, result: Result) -> Result:
        if isinstance(result, SearchItem | Item):
            return self._strip(result)
        if isinstance(op, SearchOp) and isinstance(result, list):
            return [self._strip(item) for item in result if isinstance(item, Item)]
        if isinstance(op, ListNamespacesOp) and isinstance(result, list):
            return [tuple(ns[1:]) for ns in result if isinstance(ns, tuple) and ns and ns[0] == self._label]
        return result

    def _strip(self, item: Item) -> Item:
        if item.namespace[:1] != (self._label,):  # never shown: the inner store returned another tenant's
            raise RuntimeError("memory store returned an item outside the tenant's namespace")
        namespace = tuple(item.namespace[1:])
        if isinstance(item, SearchItem):
            return SearchItem(namespace, item.key, item.value, item.created_at, item.updated_at, item.score)
        return Item(
            namespace=namespace,
            key=item.key,
            value=item.value,
            created_at=item.created_at,
            updated_at=item.updated_at,
        )
