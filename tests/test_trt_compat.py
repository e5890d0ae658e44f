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


class _Flag109(enum.IntEnum):   # NvInfer.h of release/10.9: the plugin preferences arrive
    STRONGLY_TYPED = 1
    PREFER_JIT_PYTHON_PLUGINS = 2
    PREFER_AOT_PYTHON_PLUGINS = 3


class _Flag108(enum.IntEnum):   # NvInfer.h of release/10.8: neither preference exists
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


def test_python_plugin_flags_exist_from_10_9_and_10_8_is_jit_only():
    trt_109 = SimpleNamespace(__version__="10.9.0.34", NetworkDefinitionCreationFlag=_Flag109)
    assert compat.python_plugin_flags(trt_109, "jit") == 1 << 2
    assert compat.python_plugin_flags(trt_109, "aot") == 1 << 3
    assert compat.python_plugin_flags(trt_109, None) == 0
    trt_108 = SimpleNamespace(__version__="10.8.0.43", NetworkDefinitionCreationFlag=_Flag108)
    assert compat.python_plugin_flags(trt_108, "jit") == 0   # never reads the missing flag
    with pytest.raises(RuntimeError, match="10.8.0.43 has no ahead-of-time Python plugins: they arrived in 10.9"):
        compat.python_plugin_flags(trt_108, "aot")


@pytest.mark.parametrize("version, noted", [("10.8.0.43", True), ("10.9.0.34", True), ("10.11.0.33", True),
                                            ("10.12.0.36", False), ("10.16.1.11", False), ("11.4.0.106", False)])
def test_profile_memory_note_on_the_releases_whose_v2_binding_calls_the_old_getter(version, noted):
    note = compat.profile_memory_note(_trt(version))
    assert (note is not None) == noted
    if noted:
        assert version in note and "non-v2 getter" in note and "fixed in 10.12" in note


def test_at_least_compares_major_and_minor():
    assert compat.at_least(_trt("10.10.0.31"), 10, 9) and not compat.at_least(_trt("10.8.0.43"), 10, 9)
    assert compat.at_least(_trt("11.0.0"), 10, 16)
