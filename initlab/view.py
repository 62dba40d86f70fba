"""The one form of a config past the command line: :class:`ConfigView`, plain resolved values
read like a DictConfig. Hydra composes a DictConfig; the engine, the launchers and the
readers of a record see views (:func:`config_view`). Imports nothing of initlab's.
"""

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf


class ConfigView(Mapping):
    """A composed config as plain, read-only values with a DictConfig's attribute access:
    the one form of a config past the command line (:func:`config_view`).

    The engine, the batched launcher and the readers of a record's config use it: an
    OmegaConf node costs ~10 us a read and ~1 ms to copy, which thousands of jobs (validate,
    check_budget, group_key, an init per layer and member, the record) would pay many times
    over. It holds what ``OmegaConf.to_container(cfg, resolve=True)`` gives.
    """

    __slots__ = ("_data",)

    def __init__(self, data: dict):
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return ConfigView(value) if isinstance(value, dict) else value

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"a ConfigView is read-only (use .updated('{name}', ...))")

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ConfigView({self._data!r})"

    def updated(self, key: str, value: Any) -> "ConfigView":
        """A copy with the dotted ``key`` (which must exist) set to ``value``; the nodes off
        its path are shared, not copied."""
        parts = key.split(".")
        top = dict(self._data)
        node = top
        for part in parts[:-1]:
            node[part] = dict(node[part])
            node = node[part]
        if parts[-1] not in node:
            raise KeyError(key)
        node[parts[-1]] = value
        return ConfigView(top)

    def to_container(self) -> dict:
        """A deep copy as plain dicts and lists (what ``OmegaConf.to_container`` returns)."""
        return copy.deepcopy(self._data)


def config_view(node: Any, schema: type | None = None) -> ConfigView:
    """``node`` (a DictConfig, a plain dict from a record, or a view) as a :class:`ConfigView`,
    interpolations resolved. ``schema``: a dataclass whose defaults fill the keys the node
    lacks (a record written by an older initlab)."""
    if isinstance(node, ConfigView) and schema is None:
        return node
    data = to_plain(node)
    if schema is not None:
        defaults = {f.name: f.default for f in dataclasses.fields(schema)
                    if f.default is not dataclasses.MISSING and f.default != MISSING}
        data = {**defaults, **data}
    return ConfigView(data)


def to_plain(node: Any) -> Any:
    """A config node (DictConfig, ListConfig, ConfigView or a value) as plain, resolved
    Python values."""
    if isinstance(node, ConfigView):
        return node.to_container()
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node
