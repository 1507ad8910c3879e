"""Regression tests for issue 20 on the space side: bounded work, one line, nothing silently lost.

1. grids counted without being built; aliases, deep nesting and huge numbers refused
2. duplicate YAML keys refused with the key and the line
3. inputs that printed a traceback or several lines now print one
4. an upper limit on ``budget.trials``
5. a ``when`` value its parameter can never take is refused
6. ``spaces.check_name``: the rule for a space's ``name`` and a study name
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import optuna
import pytest

import spaces
from spaces import ConfigError, FloatRange, limits, sections, yaml_safe
from spaces.optuna import make_sampler

HEAD = "name: t\ndataset: digits\n"


def _fails(text: str, match: str) -> str:
    """Load ``text``; it must fail with one line ``s.yaml: ...`` that matches ``match``."""
    with pytest.raises(ConfigError) as info:
        spaces.loads(text, source="s.yaml")
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith("s.yaml: "), message
    assert re.search(match, message), message
    return message


# 1. bounded work and memory ------------------------------------------------------------------


def test_grid_size_is_counted_without_building_the_grid() -> None:
    # 65,536 units for each of 16 layers: 65536**16 points, which no machine could list
    space = spaces.loads(HEAD + "model: {layers: 16, units: {type: int, low: 1, high: 65536}}\n")
    assert space.grid_size() == 65536**16
    with pytest.raises(ValueError, match=r"at most 100,000"):
        space.grid()


def test_grid_of_units_by_layers_is_refused_before_optuna_builds_it() -> None:
    model = "model: {units: {type: int, low: 1, high: 1000}, layers: {type: int, low: 1, high: 3}}\n"
    _fails(
        HEAD + "sampler: {type: grid}\n" + model,
        r"^s\.yaml: sampler\.type: grid has 3,000,000,000 points "
        r"\(model\.layers 3 x model\.units 1,000\^3\); at most 100,000",
    )


def test_grid_at_the_limit_is_built_one_more_point_is_not() -> None:
    at = spaces.loads(
        HEAD + "sampler: {type: grid}\ntraining: {batch_size: {type: int, low: 1, high: 100000}}\n"
    )
    assert at.grid_size() == limits.MAX_GRID
    assert isinstance(make_sampler(at), optuna.samplers.GridSampler)
    _fails(
        HEAD + "sampler: {type: grid}\ntraining: {batch_size: {type: int, low: 1, high: 100001}}\n",
        r"grid has 100,001 points",
    )


def test_tiny_float_step_is_refused_for_a_grid_and_a_step_below_precision_for_any_sampler() -> None:
    tiny = "model: {dropout: {type: float, low: 0, high: 0.5, step: 1.0e-12}}\n"
    _fails(HEAD + "sampler: {type: grid}\n" + tiny, r"grid has 500,000,000,001 points")
    space = spaces.loads(HEAD + "sampler: {type: tpe}\n" + tiny)  # fine when nothing enumerates it
    assert {p.name: p for p in space.params}["dropout"].domain == FloatRange(0.0, 0.5, 1e-12)
    _fails(
        HEAD + "model: {dropout: {type: float, low: 0, high: 0.5, step: 1.0e-300}}\n",
        r"model\.dropout\.step: 1e-300 is too small .* more than 1e\+15 values",
    )


def test_aliases_are_refused_so_a_billion_laughs_costs_nothing() -> None:
    levels = ["a: &a [sgd, sgd, sgd, sgd, sgd, sgd, sgd, sgd, sgd, sgd]"]
    levels += [
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    when = "".join(f"      {line}\n" for line in levels)  # 10**9 'sgd's once expanded
    text = HEAD + "optimizer:\n  name: [adam, sgd]\n  momentum:\n    type: float\n    low: 0\n    high: 0.9\n"
    _fails(
        text + "    when:\n" + when, r"optimizer\.momentum\.when\.a: YAML anchors and aliases are not allowed"
    )
    _fails(
        HEAD + "model: {activation: *x}\n",
        r"model\.activation: YAML anchors and aliases are not allowed, got \*x",
    )


@pytest.mark.parametrize("depth", [1000, 30_000])
def test_deep_nesting_is_refused_before_python_recursion_runs_out(depth: int) -> None:
    _fails(HEAD + "model: " + "[" * depth + "]" * depth + "\n", r"nested more than 20 levels deep at line 3")


def test_a_space_may_nest_as_deep_as_it_needs() -> None:
    # top -> optimizer -> momentum -> when -> name -> [values] -> value: 7 levels of 20
    space = spaces.loads(
        HEAD + "optimizer:\n  name: [adam, sgd]\n  momentum:\n    type: float\n    low: 0\n    high: 0.9\n"
        "    when:\n      name:\n        - sgd\n"
    )
    assert {p.name: p for p in space.params}["momentum"].when is not None


def test_integers_beyond_int64_are_refused_before_they_are_built() -> None:
    largest = spaces.loads(HEAD.replace("digits", "{name: digits, limit: 9223372036854775807}"))
    assert largest.dataset.limit == 2**63 - 1
    _fails(
        HEAD.replace("digits", "{name: digits, limit: 9223372036854775808}"),
        r"dataset\.limit: integer .* too large",
    )
    # past Python's 4,300-digit limit int() raises ValueError: refused before it is called
    _fails(HEAD + "seed: " + "7" * 100_00 + "\n", r"seed: integer 7+…7+ \(10000 digits\) is too large")


def test_text_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    big = HEAD + "description: " + "x" * limits.MAX_BYTES + "\n"
    _fails(big, r"characters is too long; a space file holds at most 65,536")
    path = tmp_path / "big.yaml"
    path.write_text(big)
    with pytest.raises(ConfigError, match=r"big\.yaml: larger than 65,536 bytes"):
        spaces.load(path)


# 2. duplicate keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "model: {layers: 2}\nmodel: {layers: 3}\n",
            r"^s\.yaml: duplicate key 'model' at line 4 \(first at line 3\)$",
        ),
        (
            "model:\n  layers: 2\n  layers: 3\n",
            r"^s\.yaml: model: duplicate key 'layers' at line 5 \(first at line 4\)$",
        ),
        ('model: {layers: 2}\n"model": {layers: 3}\n', r"duplicate key 'model' at line 4"),
        (
            "budget: {trials: 5, trials: 6}\n",
            r"budget: duplicate key 'trials' at line 3, column 21 \(first at column 10\)",
        ),
        ("model:\n  <<: {layers: 2}\n", r"model: YAML merge keys \(<<\) are not allowed"),
    ],
)
def test_duplicate_keys_are_refused_with_the_key_and_the_line(text: str, match: str) -> None:
    _fails(HEAD + text, match)


# 3. one line, never a traceback ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            HEAD + "seed: " + "9" * 400 + "\n",
            r"seed: integer 9+…9+ \(400 digits\) is too large; at most 2\*\*63 - 1",
        ),
        (
            HEAD + "model: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n",
            r"model\.a\.a.*: nested more than 20 levels",
        ),
        (
            HEAD + "x: 1\x00\n",
            r"^s\.yaml: line 3, column 5: character NUL \(U\+0000\) is not allowed in YAML text$",
        ),
        ("name: t\ndataset: 2020-13-45\n", r"line 2: invalid YAML: cannot read '2020-13-45' as .*timestamp"),
        (HEAD + "model: {layers: !!int two}\n", r"line 3: invalid YAML: cannot read 'two' as .*int"),
        (HEAD + "model: {batch_norm: !!bool maybe}\n", r"cannot read 'maybe' as .*bool \(KeyError\)"),
        ('name: "t\\u2028u"\ndataset: digits\n', r"name: expected a name .*got 't\\u2028u'"),
        (
            HEAD + "model: {dropout: {type: float, low: -1.0e308, high: 1.0e308, step: 0.5}}\n",
            r"dropout.* too small",
        ),
        (
            HEAD + "objectives: [{metric: [val_loss]}]\n",
            r"objectives\[0\]\.metric: expected one of .*, got \['val_loss'\]",
        ),
        (HEAD + "sampler: {type: {tpe: 1}}\n", r"sampler\.type: expected one of .*, got \{'tpe': 1\}"),
        (
            HEAD + "model: {" + "k" * 1000 + ": 1}\n",
            r"^s\.yaml: model\.k+…k+: unknown key; expected one of: .*",
        ),
    ],
)
def test_input_that_crashed_or_printed_several_lines_gets_one_line(text: str, match: str) -> None:
    message = _fails(text, match)
    assert len(message) <= limits.MAX_MESSAGE


# 4. the budget ---------------------------------------------------------------------------------


def test_budget_trials_has_an_upper_limit() -> None:
    assert spaces.loads(HEAD + "budget: {trials: 100000}\n").budget.trials == 100_000
    _fails(
        HEAD + "budget: {trials: 1000000000000}\n",
        r"^s\.yaml: budget\.trials: expected at most 100,000 trials per study, got 1,000,000,000,000$",
    )
    _fails(
        HEAD + "pruner: {type: median, n_startup_trials: 1000001}\n",
        r"expected an integer >= 0 and <= 1,000,000",
    )


# 5. conditions that can never hold ---------------------------------------------------------------

LAYERS = "model:\n  layers: {type: int, low: 1, high: 3}\n"
MOMENTUM = (
    "optimizer:\n  name: {choices}\n  momentum: {{type: float, low: 0, high: 0.9, when: {{name: {when}}}}}\n"
)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            MOMENTUM.format(choices="[adam, sgd]", when="sgdd"),
            r"name can never be 'sgdd'; it is one of \['adam', 'sgd'\]",
        ),
        (MOMENTUM.format(choices="[adam, sgd]", when="[sgd, sgdd]"), r"name can never be 'sgdd'"),
        (MOMENTUM.format(choices="adam", when="sgd"), r"name can never be 'sgd'; it is fixed at 'adam'"),
        (
            MOMENTUM.format(choices="[adam, sgd]", when="[]"),
            r"expected a value or a non-empty list of values",
        ),
        (
            LAYERS + "  dropout: {type: float, low: 0, high: 0.5, when: {layers: 4}}\n",
            r"layers can never be 4; it is an integer from 1 to 3",
        ),
        (
            LAYERS + "  dropout: {type: float, low: 0, high: 0.5, when: {layers: '2'}}\n",
            r"layers can never be '2'",
        ),
        (
            "model:\n  batch_norm: {type: bool}\n"
            "  dropout: {type: float, low: 0, high: 0.5, when: {batch_norm: 0}}\n",
            r"batch_norm can never be 0; it is one of \[False, True\]",
        ),
        (
            "optimizer:\n  weight_decay: {type: float, low: 0, high: 0.1}\n"
            "  momentum: {type: float, low: 0, high: 0.9, when: {weight_decay: 0.05}}\n",
            r"weight_decay is a float range, which never takes one exact value; make it a list",
        ),
    ],
)
def test_a_condition_that_can_never_hold_is_refused(body: str, match: str) -> None:
    _fails(HEAD + body, r"\.when: " + match)


def test_a_condition_on_an_integer_range_is_sampled_when_it_holds() -> None:
    space = spaces.loads(
        HEAD + "model:\n  layers: {type: int, low: 1, high: 3}\n"
        "  dropout: {type: float, low: 0.1, high: 0.5, when: {layers: [2, 3]}}\n"
    )
    study = optuna.create_study(
        directions=list(space.directions), sampler=optuna.samplers.RandomSampler(seed=0)
    )
    seen = set()
    for _ in range(30):
        trial = study.ask()
        params = space.sample(trial)
        seen.add(params["layers"])
        assert ("dropout" in trial.params) == (params["layers"] in (2, 3))
    # 30 draws from three layer counts missing one of them: p <= 3 * (2/3)**30 < 1e-4, and seeded
    assert seen == {1, 2, 3}


# 6. names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["t", "fashion-mlp", "Study_2.v1", "9" * 64])
def test_check_name_accepts_names(name: str) -> None:
    assert spaces.check_name(name, "--study") == name


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", "''"),
        ("my study", "'my study'"),
        ("-x", "'-x'"),
        (".hidden", "'.hidden'"),
        ("a/b", "'a/b'"),
        ("a" * 65, "'a+'"),
        ("caf\u00e9", "'caf\u00e9'"),
        ("a\nb", r"'a\\nb'"),
        (None, "nothing"),
        (42, "int 42"),
    ],
)
def test_check_name_refuses_anything_else_in_one_line(value: object, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        spaces.check_name(value, "--study")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert re.fullmatch(
        r"--study: expected a name of letters, digits, '_', '-' or '\.' \(1 to 64, starting with a letter "
        rf"or digit\), got {shown}",
        message,
    ), message


def test_a_space_name_follows_the_same_rule() -> None:
    _fails(
        "name: my space\ndataset: digits\n", r"^s\.yaml: name: expected a name of letters, .* got 'my space'$"
    )


# the runnable examples in the new modules' docstrings ---------------------------------------------


@pytest.mark.parametrize("module", [limits, yaml_safe, sections])
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
