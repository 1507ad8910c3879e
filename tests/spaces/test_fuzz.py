"""Property-based fuzzing of the loader: any text gives a Space or one ConfigError line, nothing else.

Bounded and reproducible: ``derandomize=True`` (the same examples on every run and in CI) and
``max_examples`` per property. No per-example ``deadline``: timings belong in benchmarks/, and a
loader that hangs is caught by pytest-timeout (``timeout = 300`` in pyproject.toml). Memory is
bounded instead: while these tests run, the process's address space may grow by at most 1 GiB
(``RLIMIT_AS``), so input that allocates without limit fails the test with MemoryError instead of
exhausting the machine. ``spaces`` imports neither TensorFlow nor another backend, so the limit
is about the loader alone.
"""

from __future__ import annotations

import resource
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spaces
from spaces import ConfigError, limits, schema

SOURCE = "fuzz.yaml"
FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
QUICKSTART = (Path(spaces.__file__).parent / "presets" / "quickstart.yaml").read_text(encoding="utf-8")
HEADROOM = 1 << 30  # bytes of address space the fuzzing may add


@pytest.fixture(autouse=True)
def bounded_memory() -> Iterator[None]:
    """Cap this process's address space at its current size plus HEADROOM, restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    cap = pages * resource.getpagesize() + HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def check(text: str) -> None:
    """The property: loading ``text`` returns a Space or raises a one-line ConfigError naming it."""
    try:
        space = spaces.loads(text, source=SOURCE)
    except ConfigError as e:
        message = str(e)
        assert message.startswith(f"{SOURCE}: "), message
        assert len(message.splitlines()) == 1, message
        assert len(message) <= limits.MAX_MESSAGE, message
    else:
        assert isinstance(space, spaces.Space)


# Words a space file is made of, so that random text often gets past the YAML parser and deep
# into validation instead of failing at the first character.
WORDS = sorted(
    {
        *schema.DATASETS,
        *schema.METRICS,
        *schema.SAMPLERS,
        *schema.PRUNERS,
        *schema.OPTIMIZERS,
        *schema.ACTIVATIONS[:3],
        *(key for fields in schema.SECTIONS.values() for key in fields),
        *schema.SECTIONS,
        "name",
        "dataset",
        "objectives",
        "sampler",
        "pruner",
        "budget",
        "trials",
        "type",
        "low",
        "high",
        "step",
        "log",
        "choices",
        "when",
        "metric",
        "direction",
        "maximize",
        "minimize",
        "int",
        "float",
        "categorical",
        "bool",
        "seed",
        "family",
        "hypermodel",
        "true",
        "null",
        "1.0e-12",
        "99999999999999999999999",
        "-1",
        "0",
        "3",
        ".inf",
        ".nan",
        "&a",
        "*a",
        "<<",
        "!!int",
        "!!float",
        "!!bool",
        "!!set",
        "!!timestamp",
        "2020-13-45",
    }
)
PUNCTUATION = ":{}[],-#&*!|>'\"%@`?\n  \t"
yamlish = st.lists(
    st.one_of(st.sampled_from(WORDS), st.sampled_from(list(PUNCTUATION)), st.text(max_size=3)),
    max_size=60,
).map("".join)


@FUZZ
@given(yamlish)
def test_yamlish_text_loads_or_fails_in_one_line(text: str) -> None:
    check(text)


@FUZZ
@given(st.text(alphabet=string.printable + "\x00\x85\u2028\ufeff\U0001f600", max_size=200))
def test_any_text_loads_or_fails_in_one_line(text: str) -> None:
    check(text)


@FUZZ
@given(st.data())
def test_a_preset_with_random_edits_loads_or_fails_in_one_line(data: st.DataObject) -> None:
    text = QUICKSTART
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 8))
        insert = data.draw(st.one_of(st.sampled_from(WORDS), st.sampled_from(list(PUNCTUATION)), st.just("")))
        text = text[:at] + insert + text[at + cut :]
    check(text)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.sampled_from(WORDS),
    st.text(max_size=10),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(WORDS), scalars), inner, max_size=4),
    ),
    max_leaves=30,
)


def _doc() -> Any:
    return yaml.safe_load(QUICKSTART)


@FUZZ
@given(st.dictionaries(st.sampled_from(WORDS), values, max_size=8))
def test_random_documents_load_or_fail_in_one_line(doc: dict[Any, Any]) -> None:
    check(yaml.safe_dump(doc))


@FUZZ
@given(st.data())
def test_a_preset_with_one_value_replaced_loads_or_fails_in_one_line(data: st.DataObject) -> None:
    """Replace one value anywhere in a valid space with a random one: reaches every check."""
    doc = _doc()
    node: Any = doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = data.draw(st.sampled_from(keys))
        if isinstance(node[key], (dict, list)) and node[key] and data.draw(st.booleans()):
            node = node[key]
            continue
        node[key] = data.draw(values)
        break
    if data.draw(st.booleans()) and isinstance(node, dict):  # sometimes add a key too
        node[data.draw(st.sampled_from(WORDS))] = data.draw(values)
    check(yaml.safe_dump(doc))
