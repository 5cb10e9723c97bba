"""mvit model zoo: MobileViT v1/v2 and the baselines the original article compared against."""

from . import mobilenet, mobilevit, mobilevit_v2, vit  # noqa: F401  (register the variants)
from .contract import PreprocessContract
from .registry import create, list_models

__all__ = ["create", "list_models", "PreprocessContract"]
