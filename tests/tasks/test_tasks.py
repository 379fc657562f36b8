"""Built-in tasks: shapes, fixed held-out sets, loss floors (no saturation), errors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from scaleplan.errors import ScaleplanError, SpecError
from scaleplan.tasks import TASKS, get_task
from scaleplan.tasks.charlm import PINNED_SHA256, STDLIB_FILES, load_corpus


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_names() -> None:
    assert sorted(TASKS) == ["charlm", "patterns", "teacher-student"]


def test_unknown_task_lists_the_valid_names() -> None:
    with pytest.raises(ScaleplanError, match="unknown task 'mnist'.*charlm, patterns, teacher-student"):
        get_task("mnist")


def test_unknown_task_option_is_named() -> None:
    with pytest.raises(ScaleplanError, match="no option.*width"):
        get_task("teacher-student", width=3)


def test_get_task_is_cached_per_kwargs() -> None:
    assert get_task("teacher-student", in_dim=8) is get_task("teacher-student", in_dim=8)
    assert get_task("teacher-student", in_dim=8) is not get_task("teacher-student", in_dim=9)


@pytest.mark.parametrize(
    ("name", "kwargs", "model_kwargs", "x_shape", "y_shape"),
    [
        ("teacher-student", {}, {"in_dim": 32, "out_dim": 8}, (5, 32), (5, 8)),
        ("patterns", {}, {"in_dim": 64, "out_dim": 16}, (5, 64), (5,)),
        ("patterns", {"mode": "denoise"}, {"in_dim": 64, "out_dim": 64}, (5, 64), (5, 64)),
        ("charlm", {"seq_len": 16}, {"vocab": 128, "seq_len": 16}, (5, 16), (5, 16)),
    ],
)
def test_shapes_and_model_kwargs(name, kwargs, model_kwargs, x_shape, y_shape) -> None:
    task = get_task(name, **kwargs)
    x, y = task.sample_batch(5, gen())
    assert task.model_kwargs == model_kwargs
    assert (tuple(x.shape), tuple(y.shape)) == (x_shape, y_shape)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_batches_follow_the_generator_and_eval_set_is_fixed(name: str) -> None:
    task = get_task(name)
    a, b, c = (task.sample_batch(4, gen(seed)) for seed in (1, 1, 2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert task.eval_set()[0] is task.eval_set()[0]


def test_teacher_student_loss_has_the_noise_floor() -> None:
    task = get_task("teacher-student")
    # zero predictor: E[y^2] = 1 (teacher standardized) + noise_std^2 = 1.25
    assert task.eval_loss(lambda x: torch.zeros(len(x), 8)) == pytest.approx(1.25, abs=0.04)
    # the noiseless teacher itself, the best predictor possible, still pays noise_std^2 = 0.25
    assert task.eval_loss(task.teacher) == pytest.approx(0.25, abs=0.02)


def test_patterns_flip_rate_and_bayes_floor() -> None:
    task = get_task("patterns")
    x, labels = task.eval_set()
    assert (x != task._prototypes[labels]).float().mean().item() == pytest.approx(0.35, abs=0.01)
    # Bayes posterior logits: 0.5 * log((1-p)/p) * x . prototype; its CE is the lowest reachable loss
    bayes = lambda x: 0.5 * math.log(0.65 / 0.35) * x @ task._prototypes.T  # noqa: E731
    floor = task.eval_loss(bayes)
    assert 0.05 < floor < 0.5 * math.log(16)


def test_patterns_rejects_bad_options() -> None:
    with pytest.raises(ScaleplanError, match="option mode must be one of 'classify', 'denoise', got 'recall'"):
        get_task("patterns", mode="recall")
    with pytest.raises(ScaleplanError, match="flip_prob"):
        get_task("patterns", flip_prob=0.5)


def test_charlm_corpus_is_pinned() -> None:
    tokens = load_corpus()
    assert len(STDLIB_FILES) == 23
    assert len(tokens) == 349717
    assert int(tokens.max()) < 128
    assert PINNED_SHA256 == "4f8125cf999b9e33ffe1e5720af2774d016bac2aa73786e69172b157c649d1a1"


def test_charlm_windows_are_next_character_targets() -> None:
    task = get_task("charlm", seq_len=16)
    x, y = task.sample_batch(3, gen())
    assert torch.equal(x[:, 1:], y[:, :-1])
    ex, ey = task.eval_set()
    assert ex.shape == (256, 16) and torch.equal(ex[1:, 0], ey[:-1, -1])  # consecutive, non-overlapping
    assert task.units_per_example == 16
    # a uniform predictor pays log(128) per character
    assert task.eval_loss(lambda x: torch.zeros(*x.shape, 128)) == pytest.approx(math.log(128), rel=1e-6)


def test_charlm_hash_mismatch_says_how_to_proceed() -> None:
    with pytest.raises(ScaleplanError, match="sha256 4f8125cf.*expected 0000.*pass task kwarg sha256="):
        get_task("charlm", sha256="0" * 64)


def test_charlm_missing_stdlib_is_reported(tmp_path) -> None:
    with pytest.raises(ScaleplanError, match="standard library files missing"):
        get_task("charlm", stdlib_dir=str(tmp_path))


def test_eval_losses_of_stacked_models_match_one_by_one() -> None:
    task = get_task("teacher-student")
    weights = torch.randn(3, 32, 8, generator=gen())
    stacked = task.eval_losses(lambda x: torch.einsum("nd,kdo->kno", x, weights))
    single = [task.eval_loss(lambda x, w=w: x @ w) for w in weights]
    assert stacked.tolist() == pytest.approx(single, rel=1e-6)


def test_charlm_ships_its_pinned_corpus():
    import gzip
    import hashlib

    from scaleplan.tasks.charlm import PINNED_SHA256, SHIPPED_CORPUS, load_corpus

    assert hashlib.sha256(gzip.decompress(SHIPPED_CORPUS.read_bytes())).hexdigest() == PINNED_SHA256
    assert load_corpus().numel() == 349_717


def test_charlm_reads_a_stdlib_folder_and_refuses_a_changed_byte(tmp_path):
    import hashlib
    import shutil
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in STDLIB_FILES:  # this Python's copies, whatever their version: the test pins their hash itself
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stdlib / name, tmp_path / name)
    data = b"\n".join((tmp_path / name).read_bytes() for name in STDLIB_FILES)
    digest = hashlib.sha256(data).hexdigest()
    assert load_corpus(str(tmp_path), sha256=digest).numel() == len(data)
    first = tmp_path / STDLIB_FILES[0]
    first.write_bytes(first.read_bytes() + b"#")
    load_corpus.cache_clear()  # the folder's text changed under the same arguments
    with pytest.raises(ScaleplanError, match=f"has sha256 [0-9a-f]{{64}}, expected {digest}; .* pass task kwarg sha256="):
        load_corpus(str(tmp_path), sha256=digest)


@pytest.mark.parametrize("name, kwargs", [("teacher-student", {}), ("patterns", {}), ("charlm", {}), ("charlm", {"seq_len": 16})])
def test_spec_side_units_per_example_agree_with_the_tasks(name: str, kwargs: dict) -> None:
    """Sweep specs turn a tokens ladder into steps without building the task (no torch): the counts must agree."""
    from scaleplan.tasks import get_task
    from scaleplan.train.config import units_per_example

    assert units_per_example(name, kwargs) == get_task(name, **kwargs).units_per_example


RETRIEVAL = {"mode": "denoise", "dim": 32, "n_classes": 128, "flip_prob": 0.2}


def linear_floor(task) -> float:
    """Held-out MSE of the best affine map of the input, fitted on the held-out set itself (optimistic)."""
    x, y = task.eval_set()
    inputs = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    return float(((inputs @ torch.linalg.lstsq(inputs, y).solution - y) ** 2).mean())


def test_retrieval_floors() -> None:
    task = get_task("patterns", **RETRIEVAL)
    x, y = task.eval_set()
    posterior = torch.softmax(x @ task._prototypes.T * 0.5 * math.log(0.8 / 0.2), dim=-1) @ task._prototypes
    assert task.eval_loss(lambda x: x) == pytest.approx(0.8, abs=0.03)  # 4 * flip_prob
    assert linear_floor(task) == pytest.approx(0.58, abs=0.02)
    assert float(((posterior - y) ** 2).mean()) == pytest.approx(0.18, abs=0.02)  # Bayes: what recall could reach


@pytest.mark.parametrize("leak, below_linear", [(True, True), (False, False)])
def test_a_denseam_retrieves_stored_patterns_only_with_the_leak(leak: bool, below_linear: bool) -> None:
    """The denoise readout returns x_T; with the leak (the modern Hopfield energy) x_T forgets the corrupted
    x_0 and settles on the retrieved pattern, beating every linear map of the input; without it x_T keeps x_0."""
    from scaleplan.train.config import TrialConfig
    from scaleplan.train.loop import train_trial

    torch.set_num_threads(1)
    cfg = TrialConfig(task="patterns", model="denseam", width=256, parametrization="denseam", base_width=256,
                      task_kwargs=RETRIEVAL, lr=0.03, steps=300, batch_size=64, beta0=16.0,
                      model_kwargs={"width_axis": "memories", "readout": "denoise", "steps": 8, "leak": leak})
    loss = train_trial(cfg).loss
    floor = linear_floor(get_task("patterns", **RETRIEVAL))
    assert (loss < floor - 0.05) == below_linear, (loss, floor)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("teacher-student", {"in_dim": "8"}, "option in_dim must be an integer, got '8'; fix it in [task] kwargs (default: in_dim = 32)"),
        ("teacher-student", {"in_dim": 8.0}, "option in_dim must be an integer, got 8.0"),
        ("teacher-student", {"n_eval": True}, "option n_eval must be an integer, got True"),
        ("teacher-student", {"noise_std": "x"}, "option noise_std must be a finite number, got 'x'"),
        ("teacher-student", {"noise_std": math.nan}, "option noise_std must be a finite number, got nan"),
        ("patterns", {"flip_prob": [0.1]}, "option flip_prob must be a finite number, got [0.1]"),
        ("charlm", {"seq_len": 1.5}, "option seq_len must be an integer, got 1.5"),
        ("charlm", {"seq_len": "abc"}, "option seq_len must be an integer, got 'abc'"),
        ("charlm", {"stdlib_dir": 3}, "option stdlib_dir must be a string or unset, got 3; fix it in [task] kwargs"),
    ],
)
def test_an_option_of_the_wrong_type_is_named_with_its_type(name: str, kwargs: dict, message: str) -> None:
    """Caught before the task is built (a quoted number or a fractional size fails deep in torch otherwise)."""
    with pytest.raises(SpecError, match=re.escape(f"task '{name}': {message}")):
        get_task(name, **kwargs)
