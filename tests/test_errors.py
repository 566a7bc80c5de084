"""autopar/errors.py: which frames of a location are the user's."""

from __future__ import annotations

import os

import jax
import pytest

import autopar
from autopar.errors import format_location, is_library_frame


def test_library_frames_are_found_by_where_the_packages_are_installed(tmp_path):
    assert is_library_frame(jax.numpy.__file__)
    assert is_library_frame(autopar.errors.__file__)
    assert is_library_frame("<frozen runpy>")
    # A user's checkout named like a library (a clone of autopar itself, a folder called jax) is user code.
    for folder in ("autopar", "jax"):
        mine = tmp_path / folder / "tests" / "test_model.py"
        assert not is_library_frame(str(mine))


@pytest.mark.parametrize("folder", ["autopar", "work"])
def test_a_location_names_the_users_innermost_frame(tmp_path, folder):
    user = os.path.join(str(tmp_path), folder, "model.py")
    library = os.path.join(os.path.dirname(jax.__file__), "_src", "core.py")
    text = f'loc(callsite("{library}":10:2 at callsite("{user}":7:3 at "<frozen runpy>":88:4)))'
    assert format_location(text) == f"{user}:7:3"
