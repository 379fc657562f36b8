import math

import pytest

from scaleplan import load_law
from scaleplan.errors import ScaleplanError
from scaleplan.laws import list_laws


def test_shipped_presets_cite_their_sources():
    laws = {law.name: law for law in list_laws()}
    assert {"steplaw", "deepseek", "chinchilla", "epoch-chinchilla"} <= set(laws)
    for name in ("steplaw", "deepseek", "chinchilla", "epoch-chinchilla"):
        assert laws[name].provenance.source == "published"
        assert "arxiv.org" in laws[name].provenance.url


def test_steplaw_matches_the_paper():
    law = load_law("steplaw")
    lr, bs = law.power_laws
    assert (round(lr.coefficient, 3), lr.exponents) == (1.79, {"N": -0.713, "D": 0.307})
    assert (round(bs.coefficient, 3), bs.exponents) == (0.58, {"D": 0.571})
    assert law.variable("N").convention == "non-embedding"


def test_chinchilla_presets():
    a3 = load_law("chinchilla").loss_law
    assert (a3.E, a3.A, a3.B, a3.alpha, a3.beta) == (1.69, 406.4, 410.7, 0.34, 0.28)
    ep = load_law("epoch-chinchilla").loss_law
    assert (ep.E, ep.A, ep.B, ep.alpha, ep.beta) == (1.817, 482.0, 2085.4, 0.3478, 0.3658)
    # Epoch's refit puts the compute-optimal point near 20 tokens per parameter
    n, d = ep.compute_optimal(1e23)
    assert 15 < d / n < 30


def test_deepseek_preset_reproduces_its_7b_choice():
    law = load_law("deepseek")
    m = 72 * 30 * 4096**2 + 12 * 30 * 4096 * 4096  # DeepSeek LLM 7B, seq 4096
    p = law.predict(compute=m * 2e12)
    assert math.isclose(p.lr, 0.3118 * (m * 2e12) ** -0.125, rel_tol=1e-12)
    assert abs(p.lr - 4.2e-4) / 4.2e-4 < 0.03  # the paper used 4.2e-4
    assert abs(p.batch_size / 4096 - 2304) / 2304 < 0.05  # and 2304 sequences of 4096


def test_unknown_name_suggests_close_match():
    with pytest.raises(ScaleplanError, match="did you mean 'steplaw'"):
        load_law("steplw")
