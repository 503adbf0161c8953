"""edgec.registry: lookups by name with "did you mean"."""

from __future__ import annotations

import pytest

from edgec.errors import DataError, RecipeError
from edgec.registry import Registry, closest, did_you_mean


def make() -> Registry[int]:
    reg: Registry[int] = Registry("widget", field="x.widget", aliases={"w1": "one"},
                                  normalize=lambda n: n.strip().lower())
    reg.register("one", 1)
    reg.register("two", 2)
    return reg


def test_get_normalizes_and_follows_aliases():
    reg = make()
    assert reg.get(" ONE ") == 1 and reg.get("w1") == 1 and reg.canonical("Two") == "two"
    assert "one" in reg and "three" not in reg and 3 not in reg
    assert reg.names() == ["one", "two"] and len(reg) == 2 and list(reg) == ["one", "two"]


def test_unknown_names_the_closest_and_every_valid_one():
    with pytest.raises(RecipeError) as err:
        make().get("tow")
    assert err.value.message == "unknown widget 'tow' (x.widget)"
    assert err.value.hint == "did you mean 'two'? valid: one, two"
    with pytest.raises(RecipeError) as err:
        make().get("zzzzz")
    assert "did you mean" not in err.value.hint and "valid: one, two" in err.value.hint
    with pytest.raises(RecipeError):
        make().get(["not", "a", "name"])


def test_error_type_and_custom_message():
    reg: Registry[int] = Registry("dataset", error=DataError,
                                  on_unknown=lambda name, best, valid: DataError(f"{name}|{best}|{valid}"))
    reg.register("mnist", 1)
    with pytest.raises(DataError, match=r"^mnsit\|mnist\|\['mnist'\]$"):
        reg.get("mnsit")


def test_register_as_decorator_twice_and_copy():
    reg: Registry[object] = Registry("thing")

    @reg.register("f")
    def f():
        return 1

    assert reg.get("f") is f
    reg.register("f", f)  # the same object again is fine (a module imported twice)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("f", lambda: 2)
    other = reg.copy()
    other.register("g", lambda: 3)
    assert "g" in other and "g" not in reg
    reg.unregister("f")
    assert "f" not in reg and "f" in other


def test_did_you_mean_helpers():
    assert closest("mnsit", ["digits", "mnist"]) == "mnist"
    assert closest("imagenet", ["digits", "mnist"]) is None
    assert did_you_mean("temprature", ["alpha", "temperature"]) == "did you mean 'temperature'? "
    assert did_you_mean("qqq", ["alpha"]) == ""
