import math

import pytest

from scaleplan.errors import ScaleplanError
from scaleplan.plan.sizes import format_size, parse_size


@pytest.mark.parametrize(
    "text, value",
    [("7B", 7e9), ("70b", 70e9), ("125M", 125e6), ("1.5e9", 1.5e9), ("2T", 2e12), ("300k", 3e5), (" 1.3B ", 1.3e9), ("4096", 4096.0)],
)
def test_parse_size(text, value):
    assert math.isclose(parse_size(text), value, rel_tol=1e-12)


@pytest.mark.parametrize(
    "text, fragment",
    [("7Q", "cannot parse '7Q'"), ("-3B", "must be positive"), ("0", "must be positive"), ("nan", "finite"),
     ("inf", "finite"), ("", "cannot parse"), ("B7", "cannot parse")],
)
def test_parse_size_rejects(text, fragment):
    with pytest.raises(ScaleplanError, match=fragment) as info:
        parse_size(text, "--params")
    assert str(info.value).startswith("--params: ")


@pytest.mark.parametrize("value, text", [(7e9, "7B"), (1.3e9, "1.3B"), (2e12, "2T"), (125e6, "125M"), (512, "512")])
def test_format_size_round_trips(value, text):
    assert format_size(value) == text
    assert math.isclose(parse_size(text), value)
