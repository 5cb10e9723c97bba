"""Registry of named model variants: ``create("mobilevit_xs", num_classes=6)``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a builder under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered variants, sorted."""
    return sorted(_MODELS)


def create(name: str, num_classes: int = 1000, **kwargs) -> nn.Module:
    """Build a registered variant with a ``num_classes`` head (weights initialised, not trained)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    model = _MODELS[name](num_classes=num_classes, **kwargs)
    model.mvit_name = name  # type: ignore[assignment]  # nn.Module types attributes as Tensor | Module
    return model
