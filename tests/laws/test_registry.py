import math
from pathlib import Path

import pandas as pd
import pytest

from scaleplan import load_law
from scaleplan.errors import ScaleplanError
from scaleplan.laws import LawFile, list_laws


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


def test_steplaw_warns_at_a_tokens_per_parameter_no_cell_trained():
    # 1.07B parameters on 4B tokens: N and D each inside the released grid's range, D/N = 3.7 below every cell's
    law = load_law("steplaw")
    cells = pd.read_csv(Path(__file__).parents[1] / "data" / "steplaw_dense_lr_bs_loss.csv")
    ratios = cells["D"] / cells["N"]
    assert law.fitted_ratios["D/N"] == (ratios.min(), ratios.max())  # the vendored grid's span, 18.6 to 466
    inside = law.evaluate(params=1.07e9, tokens=4e9).warnings
    assert list(inside) == ["extrapolating: D/N=3.74 is 4.98x below the fitted cells' range [18.6, 466] (each of D and N "
                            "may lie inside its own range: no fitted cell trained this D/N)"]
    assert not law.evaluate(params=1.07e9, tokens=5e10).warnings  # D/N = 47: a cell's


def test_a_ratio_of_undeclared_variables_or_a_bad_span_does_not_load():
    law = load_law("steplaw").to_dict()
    for ratios, fragment in (({"D/X": [1, 2]}, "'A/B' of two declared variables"), ({"DN": [1, 2]}, "'A/B'"),
                             ({"D/N": [2, 1]}, "0 < low <= high")):
        with pytest.raises(ScaleplanError, match=fragment):
            LawFile.from_dict({**law, "fitted_ratios": ratios})
