"""The machinery of the socket fuzzing tests (tests/test_security_fuzz.py,
tests/test_security_hostile.py): the world of two users (world.py), a model of
the documented protocol (model.py), a socket reused across examples and the
checks on every frame (session.py), and the hypothesis strategies (strategies.py).
"""

import pytest

# The checks in these modules are plain asserts: let pytest explain their failures.
pytest.register_assert_rewrite(
    "tests.fuzz.model", "tests.fuzz.session", "tests.fuzz.strategies", "tests.fuzz.world"
)
