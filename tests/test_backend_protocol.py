"""Every registered export backend against the ``Backend`` Protocol: all members present, callable where
methods, optional members exactly where ``CAPABILITIES`` claims them; a new format module is checked by
being registered."""

import types

import pytest

from mvit.export.backends import FORMATS, get_backend, missing_members
from mvit.export.base import OPTIONAL_MEMBERS, Backend, Capabilities, supports


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_registered_backend_has_every_protocol_member(fmt):
    backend = get_backend(fmt)
    assert missing_members(backend) == [], fmt
    assert isinstance(backend.CAPABILITIES, Capabilities)
    assert backend.FORMAT == fmt


@pytest.mark.parametrize("fmt", FORMATS)
def test_optional_members_exist_exactly_where_the_capabilities_say(fmt):
    """A member without its flag is dead code no caller reaches; a flag without its member a crash."""
    backend = get_backend(fmt)
    for member in OPTIONAL_MEMBERS:
        assert supports(backend, member) == callable(getattr(backend, member, None)), (fmt, member)


def test_the_protocol_lists_what_the_benchmarks_and_the_int8_search_call():
    members = set(Backend.__annotations__) | {n for n, v in vars(Backend).items() if callable(v)}
    assert {
        "io_details",
        "missing_ops",
        "op_census",
        "calibration_graph",
        "int8_search_evaluator",
        "layer_error",
        "tensor_error",
        "CAPABILITIES",
        "can_time",
        "unavailable",
    } <= members
    assert set(OPTIONAL_MEMBERS) <= members
    assert set(OPTIONAL_MEMBERS.values()) <= set(Capabilities.__dataclass_fields__)


def _fake(**overrides) -> types.ModuleType:
    """A backend module made of the TFLite backend's members, with ``overrides`` (None removes one)."""
    tflite = get_backend("tflite")
    names = set(Backend.__annotations__) | {
        n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_")
    }
    fake = types.ModuleType("fake_backend")
    for n in names:
        if hasattr(tflite, n):
            setattr(fake, n, getattr(tflite, n))
    for n, v in overrides.items():
        if v is None:
            delattr(fake, n)
        else:
            setattr(fake, n, v)
    return fake


def test_a_backend_lacking_a_member_is_named():
    assert missing_members(_fake()) == []
    assert missing_members(_fake(op_census=None)) == ["op_census"]
    assert missing_members(_fake(io_details="not callable")) == ["io_details"]
    assert missing_members(_fake(CAPABILITIES=None)) == ["CAPABILITIES"]
    assert missing_members(_fake(CAPABILITIES={"tensor_error": True})) == [
        "CAPABILITIES (not a mvit.export.base.Capabilities)"
    ]
    # an optional member is required where the capability is claimed, not otherwise
    assert missing_members(_fake(tensor_error=None)) == ["tensor_error"]
    assert missing_members(_fake(tensor_error=None, CAPABILITIES=Capabilities(pt2e_calibration=True))) == []
    assert missing_members(
        _fake(CAPABILITIES=Capabilities(int8_search=True, pt2e_calibration=True, tensor_error=True))
    ) == ["int8_search_evaluator"]
