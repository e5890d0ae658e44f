"""common.trt.compat against stand-ins for the tensorrt module of each version."""

import enum
from types import SimpleNamespace

import pytest

from common.trt import compat


class _Flag(enum.IntEnum):
    STRONGLY_TYPED = 0


def _trt(version: str) -> SimpleNamespace:
    return SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=_Flag)


def test_network_flags_ask_for_strong_typing_only_on_10x():
    assert compat.network_flags(_trt("10.16.1.11")) == 1
    assert compat.network_flags(_trt("10.8.0.43")) == 1
    assert compat.network_flags(_trt("11.4.0.106")) == 0
    assert compat.is_trt10(_trt("10.9.0")) and not compat.is_trt10(_trt("11.0.0"))


def test_too_old_tensorrt_is_refused_with_what_to_do():
    with pytest.raises(RuntimeError, match="10.7.0 is too old: the course needs 10.8 or newer"):
        compat.network_flags(_trt("10.7.0"))


def test_aot_plugins_detected_by_the_api_not_the_version_number():
    assert compat.has_aot_plugins(SimpleNamespace(aot_impl=lambda *a: None))
    assert not compat.has_aot_plugins(SimpleNamespace(impl=lambda *a: None))
