"""The plan protocol every anomaly method follows: draw a small frozen plan, then render it purely.

A method's randomness produces a *plan*: a frozen dataclass of plain numbers (boxes, scales, the
interpolation factor, CutPaste's jitter factors, DRAEM's noise seed and opacity, ...) that records
the image shape it was drawn for.  Rendering is a pure function of ``(image, source, config,
plan)``.  The split is kornia's (parameter generators) and Albumentations' (``apply`` renders from
parameters), and it is what makes replays, extra image targets and batch rendering on another
device right by construction: the same plan rendered on another image of the same shape gives
that image's anomaly.

Plans hold no pixels, so they are cheap to log, pickle, replay or send elsewhere; ``to_dict`` /
:func:`plan_from_dict` give a JSON-friendly form.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, ClassVar

#: Plan classes by their ``method`` tag, filled as the classes are defined.
PLAN_TYPES: dict[str, type[Plan]] = {}


class Config:
    """Base of every method's settings: frozen dataclasses validated in ``__post_init__``."""

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain-data form (tuples become lists in JSON/YAML; the constructor accepts either)."""
        return dataclasses.asdict(self)


def check_config(config, config_type: type):
    """``config`` if it is a ``config_type``, else a ``TypeError`` naming both."""
    if not isinstance(config, config_type):
        raise TypeError(f"config must be a {config_type.__name__}, got {type(config).__name__}")
    return config


def check_field_names(names, valid, owner: str) -> None:
    """``TypeError`` for the first name not in ``valid``, suggesting the closest valid one (typos fail loudly)."""
    valid = list(valid)
    for name in names:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid arguments: {', '.join(valid)}"
            raise TypeError(f"{owner} got an unexpected argument {name!r}{hint}")


def resolve_config(config, config_type: type, overrides: dict, owner: str):
    """``config`` (default: ``config_type()``) with ``overrides`` applied; unknown names are a ``TypeError``."""
    config = config_type() if config is None else check_config(config, config_type)
    check_field_names(overrides, [f.name for f in dataclasses.fields(config_type)], owner)
    return config.replace(**overrides) if overrides else config


def check_plan(plan, plan_type: type, image, name: str = "image") -> None:
    """``plan`` must be a ``plan_type`` drawn for ``image``'s size."""
    if not isinstance(plan, plan_type):
        raise TypeError(f"plan must be a {plan_type.__name__}, got {type(plan).__name__}")
    plan.check_shape(image, name)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Base of every method's plan.

    Attributes
    ----------
    shape : (int, int)
        ``(H, W)`` of the image the plan was drawn for; rendering on another size is an error.
    """

    shape: tuple[int, int]

    #: The method family the plan belongs to (the key of :data:`PLAN_TYPES`).
    method: ClassVar[str] = ""
    #: Fields holding nested plan dataclasses: ``{field: (type, is_sequence)}``.
    nested: ClassVar[dict[str, tuple[type, bool]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.method:
            PLAN_TYPES[cls.method] = cls

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, numbers, strings) with a ``"method"`` tag; see :func:`plan_from_dict`."""
        return {"method": self.method, **_plain(dataclasses.asdict(self))}

    def check_shape(self, image, name: str = "image") -> None:
        """Raise ``ValueError`` unless ``image`` has the ``(H, W)`` the plan was drawn for."""
        check_plan_shape(self.shape, image.shape[:2], name, self.method)


def check_plan_shape(expected, got, name: str, method: str) -> None:
    """The shared wording of a plan/image size mismatch."""
    if tuple(expected) != tuple(got):
        size = lambda shape: "x".join(str(n) for n in shape)  # noqa: E731
        raise ValueError(
            f"this {method} plan was drawn for a {size(expected)} {name}, got {size(got)}: "
            f"draw a new plan for this {name} (a plan renders only on images of the size it was drawn for)"
        )


def plan_from_dict(data: dict[str, Any]) -> Plan:
    """Rebuild a plan from :meth:`Plan.to_dict`'s output (e.g. after a JSON round trip).

    Examples
    --------
    >>> import numpy as np
    >>> from nsa_augment import plan_anomaly
    >>> rng = np.random.default_rng(0)
    >>> image = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    >>> plan = plan_anomaly(image, image[::-1].copy(), "mvtec/carpet", rng)
    >>> plan_from_dict(plan.to_dict()) == plan
    True
    """
    if not isinstance(data, dict) or data.get("method") not in PLAN_TYPES:
        known = ", ".join(sorted(PLAN_TYPES))
        got = data.get("method") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"not a plan dictionary (its 'method' must be one of {known}), got {got!r}")
    return _build(PLAN_TYPES[data["method"]], {k: v for k, v in data.items() if k != "method"})


def _build(cls, data: dict[str, Any]):
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for {cls.__name__}")
    for name, value in data.items():
        if name in getattr(cls, "nested", {}):
            sub, many = cls.nested[name]
            value = tuple(_build(sub, v) for v in value) if many else _build(sub, value)
        kwargs[name] = _tuples(value)
    return cls(**kwargs)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value
