"""Transformer shapes from parameter counts, and the per-token FLOP counts laws are written in.

Non-embedding parameters of a standard decoder (4x MLP, no biases): N = 12 * L * d^2.
Embeddings add vocab * d (tied) or 2 * vocab * d (untied: input table + output head).
"""

from __future__ import annotations

from dataclasses import dataclass

from scaleplan.errors import ScaleplanError

HEAD_DIM = 128
DEFAULT_ASPECT = 128  # d_model / n_layers, as LLaMA-7B (4096 / 32)
DEFAULT_SEQ_LEN = 4096  # tokens per sequence: the planner's batch in sequences
DEFAULT_VOCAB = 32000  # LLaMA's vocabulary: the embedding parameters


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer's shape and its parameter counts."""

    d_model: int
    n_layers: int
    n_heads: int
    vocab: int
    tied: bool
    non_embedding_params: float
    seq_len: int
    derived: str  # how the shape was chosen, shown to the user

    @property
    def embedding_params(self) -> float:
        return self.vocab * self.d_model * (1 if self.tied else 2)

    @property
    def total_params(self) -> float:
        return self.non_embedding_params + self.embedding_params

    @property
    def counted_params(self) -> float:
        """Non-embedding parameters d_model and n_layers hold, 12*L*d^2 (the count may be given apart from them)."""
        return 12.0 * self.n_layers * self.d_model**2

    def flops_per_token_deepseek(self) -> float:
        """DeepSeek LLM's M = 72*L*d^2 + 12*L*d*seq, written as 6*N + 12*L*d*seq so a given N is kept."""
        return 6.0 * self.non_embedding_params + 12.0 * self.n_layers * self.d_model * self.seq_len


def shape_for(
    non_embedding: float | None,
    *,
    vocab: int,
    tied: bool,
    seq_len: int,
    d_model: int | None = None,
    n_layers: int | None = None,
    aspect: float = DEFAULT_ASPECT,
) -> ModelShape:
    """Shape for a non-embedding parameter count (d a multiple of 128, d/L ~ aspect), or as given."""
    if d_model is not None and n_layers is not None:
        n = non_embedding if non_embedding is not None else 12.0 * n_layers * d_model**2
        return ModelShape(d_model, n_layers, max(1, d_model // HEAD_DIM), vocab, tied, n, seq_len, "given")
    if non_embedding is None:
        raise ScaleplanError("give --params, or both --d-model and --layers")
    fixed = f"d/L ~ {aspect:g}" if d_model is None and n_layers is None else ("d_model" if n_layers is None else "layers") + " as given"
    how = f"from N = 12*L*d^2, {fixed}, d a multiple of {HEAD_DIM}"
    if n_layers is None:
        if d_model is None:
            layers_guess = (non_embedding / (12.0 * aspect**2)) ** (1.0 / 3.0)
            d_model = max(HEAD_DIM, round(aspect * layers_guess / HEAD_DIM) * HEAD_DIM)
        n_layers = max(1, round(non_embedding / (12.0 * d_model**2)))
    else:
        d_model = max(HEAD_DIM, round((non_embedding / (12.0 * n_layers)) ** 0.5 / HEAD_DIM) * HEAD_DIM)
    return ModelShape(d_model, n_layers, max(1, d_model // HEAD_DIM), vocab, tied, non_embedding, seq_len, how)


def non_embedding_from_total(
    total: float, *, vocab: int, tied: bool, seq_len: int, d_model: int | None, n_layers: int | None, aspect: float,
    what: str | None = None, fix: str = "check --vocab or drop --params-total",
) -> ModelShape:
    """Shape whose total parameters (embeddings included) equal `total` (fixed-point on d); `what` names where the
    total came from and `fix` the remedy when it is smaller than the embeddings (default: --params with --params-total)."""
    n = total
    for _ in range(50):
        shape = shape_for(n, vocab=vocab, tied=tied, seq_len=seq_len, d_model=d_model, n_layers=n_layers, aspect=aspect)
        new = total - shape.embedding_params
        if new <= 0:
            raise ScaleplanError(f"{what or f'--params {total:.3g} total'} is smaller than the embeddings alone "
                                 f"({shape.embedding_params:.3g}); {fix}")
        if abs(new - n) <= 1e-9 * total:
            break
        n = new
    return shape_for(n, vocab=vocab, tied=tied, seq_len=seq_len, d_model=d_model, n_layers=n_layers, aspect=aspect)
