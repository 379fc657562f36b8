"""Sweep spec parsing: defaults, search ranges and grids, and one-line errors for bad specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaleplan.core.reference import ParametrizationRef
from scaleplan.errors import ScaleplanError
from scaleplan.sweep.spec import SearchParam, load_spec, parse_search_param

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"

MINIMAL = """
[sweep]
name = "toy"
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = {low = 1e-4, high = 1e-1}
[objective]
callable = "sweep_objectives:quadratic"
"""


def write(tmp_path: Path, text: str, name: str = "toy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_spec_defaults(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))
    assert (spec.name, spec.sampler, spec.trials_per_point, spec.seeds, spec.batch_sizes) == ("toy", "adaptive", 8, (0,), (32,))
    assert spec.widths == (8, 16) and spec.steps == (10,)
    assert spec.search == (SearchParam("lr", 1e-4, 1e-1, True, None, None),)
    assert spec.objective.kind == "callable" and spec.objective.target == "sweep_objectives:quadratic"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"low": 1e-3, "high": 1e-1, "points": 3}, (1e-3, 1e-2, 1e-1)),
        ({"low": 1e-4, "high": 1.0, "points": 5}, (1e-4, 1e-3, 1e-2, 1e-1, 1.0)),
        ({"low": 0.0, "high": 1.0, "points": 5, "log": False}, (0.0, 0.25, 0.5, 0.75, 1.0)),
        ([0.5, 2.0], (0.5, 2.0)),
        ({"low": 1e-3, "high": 1e-1}, None),
    ],
)
def test_search_grid_values(value: object, expected: tuple[float, ...] | None) -> None:
    grid = parse_search_param("lr", value, "[search]").grid()
    assert grid == expected if expected is None else grid == pytest.approx(expected, rel=1e-12)


def test_grid_endpoints_are_exact() -> None:
    grid = parse_search_param("lr", {"low": 3e-4, "high": 0.7, "points": 7}, "[search]").grid()
    assert grid is not None and grid[0] == 3e-4 and grid[-1] == 0.7


def test_grid_sampler_sets_trials_per_point(tmp_path: Path) -> None:
    text = MINIMAL.replace('name = "toy"', 'name = "toy"\nsampler = "grid"').replace(
        "lr = {low = 1e-4, high = 1e-1}", "lr = {low = 1e-4, high = 1e-1, points = 4}\nbeta0 = [1.0, 2.0]"
    )
    assert load_spec(write(tmp_path, text)).trials_per_point == 8


def test_fingerprint_ignores_storage_but_not_search(tmp_path: Path) -> None:
    base = load_spec(write(tmp_path, MINIMAL)).fingerprint
    moved = load_spec(write(tmp_path, MINIMAL.replace('name = "toy"', 'name = "toy"\nstorage = "x.db"'))).fingerprint
    changed = load_spec(write(tmp_path, MINIMAL.replace("high = 1e-1", "high = 1e-2"))).fingerprint
    assert base == moved and base != changed


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[search]", "[serach]", "top level: unknown key 'serach' - did you mean 'search'?"),
        ("lr = {low", "lrr = [1.0]\nlr = {low", None),  # user objectives may search any name: no error
        ('name = "toy"', 'name = "toy"\ntrails_per_point = 3', "[sweep]: unknown key 'trails_per_point' - did you mean 'trials_per_point'?"),
        ("high = 1e-1}", "high = 1e-1, pionts = 3}", "'lr': unknown key 'pionts' - did you mean 'points'?"),
        ("low = 1e-4, high = 1e-1", "low = 1e-1, high = 1e-1", "empty search range low=0.1 >= high=0.1"),
        ("low = 1e-4, high = 1e-1", "low = 1e-1, high = 1e-4", "empty search range low=0.1 >= high=0.0001"),
        ("low = 1e-4", "low = 0", "a log-scale range needs low > 0"),
        ("lr = {low = 1e-4, high = 1e-1}", "lr = []", "empty list of values"),
        ("widths = [8, 16]", "widths = []", "'widths' must be a non-empty list of integers"),
        ("widths = [8, 16]", "widths = [8, 8]", "'widths' has repeated values"),
        ("steps = [10]", "", "[ladder]: 'steps' is required (or 'tokens')"),
        ("steps = [10]", "steps = [10]\ntokens = [640]", "give the training length as either 'steps'"),
        ("steps = [10]", "steps = [10]\ndepths = [0, 2]", "'depths' values must be positive"),
        ("steps = [10]", "steps = [10]\ndepth = [2]", "[ladder]: unknown key 'depth' - did you mean 'depths'?"),
        ('name = "toy"', 'name = "toy"\nsampler = "tpes"', "unknown sampler 'tpes' - did you mean 'tpe'?"),
        ('name = "toy"', 'name = "toy"\nsampler = "grid"', "sampler 'grid' needs 'points' (or a list of values) for lr"),
        ('callable = "sweep_objectives:quadratic"', 'callable = "sweep_objectives.quadratic"', "'callable' must look like 'package.module:function'"),
        ('callable = "sweep_objectives:quadratic"', 'callable = "a:b"\ncommand = "x"', "give either 'callable' or 'command', not both"),
        ("[objective]", "[objective]\ntimeout_s = -1", "'timeout_s' must be positive"),
        ("[objective]", "[objective]\ntimeout_s = 5", "'timeout_s' applies only to a 'command' objective"),
        ("lr = {low = 1e-4, high = 1e-1}", "lr = [0.01, 0.01]", "'lr': repeated values [0.01, 0.01]"),
        ('name = "toy"', 'name = ".."', "'name' must be a non-empty word without spaces, slashes, control characters or a leading dot"),
        ('name = "toy"', 'name = "a\\u0000b"', "'name' must be a non-empty word without spaces, slashes, control characters"),
        ('name = "toy"', f'name = "{"n" * 300}"', "'name' is 300 bytes, too long for the file names made from it (at most 200)"),
        ('name = "toy"', 'name = "größe-σ"', None),
        ('name = "toy"', 'name = "toy"\npruner = "median"\nprune_every = 5',
         "pruner 'median' needs the built-in trainer; an [objective] callable cannot report"),
    ],
)
def test_bad_specs_are_one_line_errors(tmp_path: Path, old: str, new: str, message: str | None) -> None:
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new))
    if message is None:
        load_spec(path)
        return
    with pytest.raises(ScaleplanError) as info:
        load_spec(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_ladders_over_depth_tokens_and_batch(tmp_path: Path) -> None:
    """(width, depth, D, B) grid points: steps follow from tokens / batch, so D is the same at every batch size."""
    from scaleplan.sweep.plan import GridPoint, grid_points

    text = MINIMAL.replace("steps = [10]", "depths = [2, 4]\ntokens = [640, 1280]").replace("[search]", "[search]\nbatch_size = [8, 16]")
    spec = load_spec(write(tmp_path, text))
    assert spec.swept_axes == ("width", "depth", "D", "batch") and spec.steps == () and spec.units_per_example == 1
    points = grid_points(spec)
    assert len(points) == 2 * 2 * 2 * 2
    assert points[0] == GridPoint(8, 80, 8, 0, depth=2, tokens=640) and points[1] == GridPoint(8, 40, 16, 0, depth=2, tokens=640)
    assert points[0].key == "w8-d2-s80-b8-seed0" and points[0].attrs() == {
        "width": 8, "depth": 2, "tokens": 640, "steps": 80, "batch_size": 8, "seed": 0}
    assert GridPoint.from_attrs(points[0].attrs()) == points[0]
    assert load_spec(write(tmp_path, MINIMAL)).swept_axes == ("width",)


def test_tokens_must_be_whole_steps_at_every_batch_size(tmp_path: Path) -> None:
    text = MINIMAL.replace("steps = [10]", "tokens = [100]").replace("[search]", "[search]\nbatch_size = [10, 8]")
    with pytest.raises(ScaleplanError, match=r"tokens = 100 is not a whole number of steps at batch size 8; choose tokens"):
        load_spec(write(tmp_path, text))


def test_tokens_count_the_language_models_context(tmp_path: Path) -> None:
    """For the char-level LM one example is seq_len tokens: tokens = 8192 at batch 4 and seq_len 32 is 64 steps."""
    from scaleplan.sweep.plan import grid_points

    text = BUILTIN_LM.format(ladder="tokens = [8192]\ndepths = [2]")
    spec = load_spec(write(tmp_path, text))
    assert spec.units_per_example == 32 and [p.steps for p in grid_points(spec)] == [64, 64]


BUILTIN_LM = """
[sweep]
name = "lm"
[task]
name = "charlm"
kwargs = {{seq_len = 32}}
[model]
name = "gpt"
parametrization = "mup"
completep = true
[ladder]
widths = [32, 64]
{ladder}
[search]
lr = {{low = 1e-3, high = 1e-1}}
batch_size = [4]
"""


@pytest.mark.parametrize(
    ("ladder", "extra", "message"),
    [
        ("steps = [10]", "", "completep = true needs base_depth (the depth the lr is tuned at) or a [ladder] depths"),
        ("steps = [10]\ndepths = [2, 3]", "kwargs = {depth = 2}", "'depth' is set by [ladder] depths; drop it from [model] kwargs"),
    ],
)
def test_depth_ladder_errors(tmp_path: Path, ladder: str, extra: str, message: str) -> None:
    text = BUILTIN_LM.format(ladder=ladder).replace("completep = true", f"completep = true\n{extra}")
    with pytest.raises(ScaleplanError) as info:
        load_spec(write(tmp_path, text))
    assert message in str(info.value)


def test_completep_base_depth_defaults_to_the_shallowest(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BUILTIN_LM.format(ladder="steps = [10]\ndepths = [3, 2, 4]")))
    assert spec.reference == ParametrizationRef("mup", base_width=32, base_depth=2, completep=True, betas=(0.9, 0.999))


def test_builtin_search_keys_are_closed(tmp_path: Path) -> None:
    text = MINIMAL.replace('[objective]\ncallable = "sweep_objectives:quadratic"', '[task]\nname = "teacher-student"\n[model]\nname = "mlp"')
    with pytest.raises(ScaleplanError, match=r"\[search\]: unknown key 'betta0' - did you mean 'beta0'\?"):
        load_spec(write(tmp_path, text.replace("[search]", "[search]\nbetta0 = [1.0]")))
    with pytest.raises(ScaleplanError, match=r"\[task\]: 'name' is required for the built-in trainer"):
        load_spec(write(tmp_path, MINIMAL.replace('[objective]\ncallable = "sweep_objectives:quadratic"', "")))


def test_malformed_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScaleplanError, match=r"malformed TOML: .*line 3"):
        load_spec(write(tmp_path, "[sweep]\nname = 'x'\nseeds = [1,, 2]\n"))
    with pytest.raises(ScaleplanError, match="sweep spec not found"):
        load_spec(tmp_path / "absent.toml")


def test_same_key_in_train_and_search(tmp_path: Path) -> None:
    text = MINIMAL.replace("[search]", "[train]\nweight_decay = 0.1\n[search]\nweight_decay = [0.0, 0.1]")
    with pytest.raises(ScaleplanError, match="'weight_decay' is both in"):
        load_spec(write(tmp_path, text))


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_specs_parse(path: Path) -> None:
    spec = load_spec(path)
    assert spec.objective.kind == "builtin" and spec.name == path.stem


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("transfer/*.toml")), ids=lambda p: p.name)
def test_shipped_transfer_specs_parse_with_names_of_their_own(path: Path) -> None:
    """A validation spec's name is its file's (a copied spec that kept its source's name would share its storage
    and its reports); the weight-decay specs are named for their experiment."""
    spec = load_spec(path)
    stem = path.stem
    assert spec.name == (f"wd-{stem.removesuffix('-wd')}" if stem.endswith("-wd") else f"transfer-{stem}")


BUILTIN = """
[sweep]
name = "toy"
[task]
name = "teacher-student"
[model]
name = "mlp"
[ladder]
widths = [8]
steps = [20, 40]
[search]
lr = {low = 1e-4, high = 1e-1}
"""


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ('pruner = "mediam"\nprune_every = 5', "unknown pruner 'mediam' - did you mean 'median'? (choose none, median, successive-halving)"),
        ('pruner = "median"', "pruner 'median' needs 'prune_every' (steps between held-out checks), e.g. prune_every = 10"),
        ('pruner = "median"\nprune_every = 0', "'prune_every' must be a positive integer, got 0"),
        ('pruner = "median"\nprune_every = 2.5', "'prune_every' must be a positive integer, got 2.5"),
        ('pruner = "successive-halving"\nprune_every = 20', "'prune_every' = 20 must be smaller than every run's steps (smallest: 20)"),
        ("prune_every = 5", "'prune_every' needs a pruner"),
    ],
)
def test_bad_pruner_keys_are_one_line_errors(tmp_path: Path, sweep: str, message: str) -> None:
    path = write(tmp_path, BUILTIN.replace('name = "toy"', f'name = "toy"\n{sweep}'))
    with pytest.raises(ScaleplanError) as info:
        load_spec(path)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("sweep", "pruner", "every"),
    [("", "none", None), ('pruner = "median"\nprune_every = 5', "median", 5),
     ('pruner = "successive-halving"\nprune_every = 19', "successive-halving", 19)],
)
def test_pruner_keys(tmp_path: Path, sweep: str, pruner: str, every: int | None) -> None:
    spec = load_spec(write(tmp_path, BUILTIN.replace('name = "toy"', f'name = "toy"\n{sweep}')))
    assert (spec.pruner, spec.prune_every) == (pruner, every)


def test_reference_defaults_to_the_smallest_width(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL.replace('name = "toy"', 'name = "toy"\n[model]\nparametrization = "mup"')))
    assert spec.reference == ParametrizationRef("mup", base_width=8, optimizer="adam")


def test_completep_keys(tmp_path: Path) -> None:
    text = MINIMAL.replace('name = "toy"', 'name = "toy"\n[model]\nparametrization = "mup"\ncompletep = true\nbase_depth = 2')
    ref = load_spec(write(tmp_path, text)).reference
    assert (ref.completep, ref.base_depth) == (True, 2)


@pytest.mark.parametrize(
    "model, message",
    [
        ("completep = true", "completep = true needs base_depth"),
        ("kwargs = {completep = true}", "set 'completep' as a [model] key"),
        ("base_depth = 0", "'base_depth' must be a positive integer"),
        ('completep = "yes"\nbase_depth = 2', "'completep' must be true or false"),
    ],
)
def test_bad_completep_keys(tmp_path: Path, model: str, message: str) -> None:
    text = MINIMAL.replace('name = "toy"', f'name = "toy"\n[model]\nparametrization = "mup"\n{model}')
    with pytest.raises(ScaleplanError) as info:
        load_spec(write(tmp_path, text))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "search", "message"),
    [
        ("width = 4", "", "[model]: 'width' is set by [ladder] widths; drop it from [model] kwargs"),
        ('parametrization = "sp"', "", "[model]: set 'parametrization' as a [model] key, not in [model] kwargs"),
        ('name = "gpt"', "", "[model]: set 'name' as a [model] key, not in [model] kwargs"),
        ("init_std = 0.5", "init_std = [0.25, 1.0]", "'init_std' is both in [model] kwargs and [search]; keep it in one"),
    ],
)
def test_model_kwargs_that_another_key_sets_are_refused(tmp_path: Path, kwargs: str, search: str, message: str) -> None:
    """Before: width, name and parametrization in [model] kwargs were `internal error: TypeError` (exit 1) at the first
    trial, and a searched init_std silently replaced the one in [model] kwargs."""
    text = BUILTIN.replace('name = "mlp"', f'name = "mlp"\nkwargs = {{{kwargs}}}') + search
    with pytest.raises(ScaleplanError) as info:
        load_spec(write(tmp_path, text))
    assert message in str(info.value)


WD_SPEC = """
[sweep]
name = "wd"
sampler = "grid"
[task]
name = "teacher-student"
[model]
name = "mlp"
parametrization = "mup"
[train]
optimizer = "adamw"
[ladder]
widths = [8, 16]
steps = [10]
[search]
lr = [1e-3, 1e-2]
"""


@pytest.mark.parametrize(
    "extra, message",
    [
        ("weight_decay = [0.1, -0.1]", "weight_decay must be >= 0, got -0.1"),
        ("weight_decay = {low = -0.5, high = 0.5, log = false, points = 3}", "weight_decay must be >= 0, got -0.5"),
        ("wd_tau = {low = -0.5, high = 2.0, log = false, points = 3}",
         "wd_tau must be > 0, got -0.5 (a timescale <= 0 implies lambda <= 0)"),
        ("wd_tau = [0.0, 1.0]", "wd_tau must be > 0, got 0"),
        ("wd_tau = [0.5, 1.0]\nweight_decay = [0.1, 0.2]", "give weight_decay or wd_tau"),
    ],
)
def test_bad_weight_decay_searches_are_one_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ScaleplanError) as info:
        load_spec(write(tmp_path, WD_SPEC.replace('lr = [1e-3, 1e-2]', f'lr = [1e-3, 1e-2]\n{extra}')))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "train, message",
    [
        ('optimizer = "adam"', "[search] weight_decay needs decoupled weight decay, but [train] optimizer is 'adam'"),
        ('optimizer = "sgd"', "optimizer is 'sgd' (its decay is L2 in the gradient"),
        ('optimizer = "adamw"\ndecay_convention = "lr-free"', "unknown decay_convention 'lr-free'"),
        ('optimizer = "adamw"\nweight_decay = nan', "weight_decay must be a finite number, got nan"),
    ],
)
def test_a_decay_search_needs_adamw(tmp_path: Path, train: str, message: str) -> None:
    text = WD_SPEC.replace('optimizer = "adamw"', train).replace('lr = [1e-3, 1e-2]', 'lr = [1e-3, 1e-2]\nweight_decay = [0.1, 1.0]')
    if "weight_decay = nan" in train:
        text = text.replace("\nweight_decay = [0.1, 1.0]", "")
    with pytest.raises(ScaleplanError) as info:
        load_spec(write(tmp_path, text))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "train, message",
    [
        ('optimizer = "sgd"\nmomentum = 1.0', "[train]: momentum (SGD's) must be a number in [0, 1), got 1.0"),
        ('optimizer = "sgd"\nmomentum = "0.9"', "must be a number in [0, 1), got '0.9'"),
        ('optimizer = "sgd"\nnesterov = true', "[train]: nesterov needs a momentum above 0"),
        ('optimizer = "sgd"\nmomentum = 0.9\nnesterov = 1', "[train]: nesterov must be true or false, got 1"),
        ('optimizer = "adamw"\nmomentum = 0.9', "momentum and nesterov are SGD's; optimizer 'adamw' has its own first moment"),
        ("momentum = 0.5", "optimizer 'adam' has its own first moment"),  # the default optimizer is Adam
    ],
)
def test_bad_sgd_momentum_is_one_line(tmp_path: Path, train: str, message: str) -> None:
    with pytest.raises(ScaleplanError) as info:
        load_spec(write(tmp_path, WD_SPEC.replace('optimizer = "adamw"', train)))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "train, message",
    [
        ('optimizer = "adamw"\nbetas = [0.9, 1.0]', "[train]: betas (Adam's) must be two numbers in [0, 1), got [0.9, 1.0]"),
        ('optimizer = "adamw"\nbetas = [0.95]', "must be two numbers in [0, 1), got [0.95]"),
        ('optimizer = "adamw"\nbetas = "0.9, 0.95"', "must be two numbers in [0, 1), got '0.9, 0.95'"),
        ('optimizer = "sgd"\nbetas = [0.9, 0.999]', "[train]: betas are Adam's and AdamW's; SGD's first moment is its momentum"),
    ],
)
def test_bad_adam_betas_are_one_line(tmp_path: Path, train: str, message: str) -> None:
    with pytest.raises(ScaleplanError) as info:
        load_spec(write(tmp_path, WD_SPEC.replace('optimizer = "adamw"', train)))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_adam_betas_reach_the_law_reference(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, WD_SPEC.replace('optimizer = "adamw"', 'optimizer = "adamw"\nbetas = [0.9, 0.95]')))
    assert spec.reference.betas == (0.9, 0.95) and spec.reference.optimizer_setting == "adamw, betas 0.9/0.95"
    assert load_spec(write(tmp_path, WD_SPEC)).reference.betas == (0.9, 0.999)  # the built-in trainer: torch's default
    sgd = WD_SPEC.replace('optimizer = "adamw"', 'optimizer = "sgd"')
    assert load_spec(write(tmp_path, sgd)).reference.betas is None
    assert load_spec(write(tmp_path, MINIMAL)).reference.betas is None  # a user objective's code: not known ...
    declared = MINIMAL + '[train]\noptimizer = "adam"\nbetas = [0.9, 0.95]\n'
    assert load_spec(write(tmp_path, declared)).reference.betas == (0.9, 0.95)  # ... unless its spec declares them


def test_sgd_momentum_reaches_the_law_reference(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, WD_SPEC.replace('optimizer = "adamw"', 'optimizer = "sgd"\nmomentum = 0.9\nnesterov = true')))
    assert (spec.reference.optimizer, spec.reference.momentum, spec.reference.nesterov) == ("sgd", 0.9, True)
    assert load_spec(write(tmp_path, WD_SPEC)).reference.momentum == 0.0


def test_a_timescale_search_parses(tmp_path: Path) -> None:
    text = WD_SPEC.replace('lr = [1e-3, 1e-2]', 'lr = [1e-3, 1e-2]\nwd_tau = {low = 0.1, high = 10.0, points = 3}')
    spec = load_spec(write(tmp_path, text.replace('optimizer = "adamw"', 'optimizer = "adamw"\ndecay_convention = "independent"')))
    assert spec.search_param("wd_tau") == SearchParam("wd_tau", 0.1, 10.0, True, 3, None)
    assert spec.train["decay_convention"] == "independent" and spec.trials_per_point == 6


def test_a_spec_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    """Windows editors save UTF-8 with a BOM, which TOML refuses at line 1, column 1 without naming it."""
    path = tmp_path / "toy.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode("utf-8"))
    plain = write(tmp_path, MINIMAL, "plain.toml")
    assert load_spec(path).raw == load_spec(plain).raw and load_spec(path).name == "toy"
