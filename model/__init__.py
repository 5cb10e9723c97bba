"""mvit model zoo: MobileViT v1/v2 and the baselines the original article compared against."""
from mvit.model import mobilenet, mobilevit, mobilevit_v2, vit  # noqa: F401  (register the variants)
from mvit.model.contract import PreprocessContract
from mvit.model.registry import create, list_models

__all__ = ["create", "list_models", "PreprocessContract"]
