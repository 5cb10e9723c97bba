"""A stand-in ``torchvision`` so that timm imports without it (tests only).

timm imports torchvision at module level for data transforms and a frozen BatchNorm that the
MobileViT models never use; PyPI's torchvision cannot be installed beside the pinned CPU torch.
Install only after transformers has been imported (transformers probes torchvision's version).
"""

import importlib.abc
import importlib.machinery
import sys
import types


class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return f"{cls.__name__}.{name}"


class _AnyModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name[:1].isupper():
            placeholder = _Meta(name, (), {"__init__": lambda self, *a, **k: None})
            setattr(self, name, placeholder)
            return placeholder
        return lambda *a, **k: None


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _AnyModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def install() -> None:
    """Make ``import torchvision`` succeed with placeholders (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
