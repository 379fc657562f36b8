"""`scaleplan predict`: prescribe hyperparameters for a target size from a law (no torch import)."""

from __future__ import annotations

import click

from scaleplan.limits import (MAX_ASPECT, MAX_BATCH_SIZE, MAX_COMPUTE, MAX_LAYERS, MAX_PARAMS, MAX_SEQ_LEN, MAX_TARGET_WIDTH,
                              MAX_TOKENS, MAX_VOCAB)
from scaleplan.plan.prescribe import DEFAULT_TOKENS_LAW
from scaleplan.plan.shape import DEFAULT_ASPECT, DEFAULT_SEQ_LEN, DEFAULT_VOCAB
from scaleplan.plan.sizes import parse_size

# Sizes are checked against scaleplan.limits when parsed, before any law is read.
MOST = {"--params": MAX_PARAMS, "--tokens": MAX_TOKENS, "--compute": MAX_COMPUTE, "--width": float(MAX_TARGET_WIDTH),
        "--batch": float(MAX_BATCH_SIZE)}


def _size(what: str, text: str | None) -> float | None:
    return None if text is None else parse_size(text, what, MOST[what])


@click.command()
@click.option("--params", help="Target size, e.g. 7B: non-embedding parameters (or total with --params-total).")
@click.option("--tokens", help="Training tokens, e.g. 2T (default: compute-optimal from the tokens law).")
@click.option("--compute", help="FLOP budget C = 6ND, e.g. 1e23 (with --params: tokens follow; alone: N and D).")
@click.option("--width", help="Target width, for laws fitted on width (muP sweeps).")
@click.option("--depth", type=click.IntRange(1, MAX_LAYERS), help="Target depth, for laws fitted on depth or with CompleteP.")
@click.option("--batch", "--batch-size", "batch", help="Batch size to train with (in the unit of the law's D for a weight-decay "
              "law): for laws with a batch-size exponent (default: the predicted B*), and to turn a weight-decay timescale "
              "into lambda.")
@click.option("--law", "law_name", default="steplaw", show_default=True, help="Shipped law name or path to a law .json.")
@click.option("--tokens-law", default=DEFAULT_TOKENS_LAW, show_default=True, help="Loss law for compute-optimal tokens.")
@click.option("--seq-len", default=DEFAULT_SEQ_LEN, show_default=True, type=click.IntRange(1, MAX_SEQ_LEN), help="Sequence length (batch in sequences).")
@click.option("--vocab", default=DEFAULT_VOCAB, show_default=True, type=click.IntRange(1, MAX_VOCAB), help="Vocabulary size (embedding parameters).")
@click.option("--tied/--untied", default=False, show_default=True, help="Tied input/output embeddings.")
@click.option("--params-total", is_flag=True, help="--params counts all parameters, embeddings included.")
@click.option("--d-model", type=click.IntRange(1, MAX_TARGET_WIDTH), help="Model width (else derived from --params).")
@click.option("--layers", type=click.IntRange(1, MAX_LAYERS), help="Number of layers (else derived from --params).")
@click.option("--aspect", default=float(DEFAULT_ASPECT), show_default=True, type=click.FloatRange(1, MAX_ASPECT), help="d_model / layers when deriving a shape.")
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), default=None,
              help="Per-role lr rules (muP laws); default: the optimizer the law was fitted with.")
@click.option("--level", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999), help="Interval level.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True)
def predict(
    params: str | None, tokens: str | None, compute: str | None, width: str | None, depth: int | None,
    batch: str | None, law_name: str,
    tokens_law: str, seq_len: int, vocab: int, tied: bool, params_total: bool, d_model: int | None,
    layers: int | None, aspect: float, optimizer: str | None, level: float, fmt: str,
) -> None:
    """Prescribe lr, batch size and tokens for a target model size.

    \b
    Examples:
      scaleplan predict --params 7B --tokens 2T
      scaleplan predict --params 7B --tokens 2T --law deepseek --layers 30 --d-model 4096
      scaleplan predict --compute 1e23
      scaleplan predict --width 2048 --law fits/mlp-mup.json
      scaleplan predict --width 512 --params 3e5 --tokens 1e6 --batch 64 --law fits/mlp-mup-wd.json
      scaleplan predict --width 256 --depth 16 --tokens 2M --law fits/gpt-axes.json
    """
    from scaleplan.plan.prescribe import prescribe
    from scaleplan.plan.render import to_json, to_table, to_yaml

    result = prescribe(
        law_name,
        params=_size("--params", params),
        tokens=_size("--tokens", tokens),
        compute=_size("--compute", compute),
        width=_size("--width", width),
        depth=depth,
        batch_size=_size("--batch", batch),
        seq_len=seq_len, vocab=vocab, tied=tied, params_total=params_total,
        d_model=d_model, n_layers=layers, aspect=aspect, tokens_law=tokens_law, level=level, optimizer=optimizer,
    )
    click.echo({"table": to_table, "json": to_json, "yaml": to_yaml}[fmt](result), nl=fmt != "table")
