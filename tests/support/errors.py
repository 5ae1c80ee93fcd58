"""The bad-input contract in one assertion: a reader given bad text raises InputError naming file and line."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kpdoctor.errors import InputError


def input_error_at(parse: Callable[[str, str], object], text: str, path: str, line: int, says: str) -> InputError:
    """The InputError `parse(text, path)` raises, after asserting that it names `path:line` and contains `says`
    (returned for a test's further assertions)."""
    with pytest.raises(InputError) as err:
        parse(text, path)
    assert err.value.where == f"{path}:{line}"
    assert says in str(err.value)
    return err.value
