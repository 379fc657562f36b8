"""Character-level language modelling on the Python standard library's own sources (offline).

The corpus is a pinned list of stdlib modules, joined and checked by sha256. By default it is read
from the copy shipped in scaleplan/tasks/data (taken from CPython 3.11.7; see its README), because
patch releases edit these files (Ubuntu's 3.12.3 differs from 3.12.1): the same experiment must see
the same text on every machine. `stdlib_dir=` reads the files from a Python install instead; the hash
check then raises a ScaleplanError if they differ (pass `sha256=` with the new hash to accept that
text knowingly). Bytes >= 128 map to token 127;
the vocabulary is the 128 ASCII codes. The last `val_fraction` of the text is the held-out split.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from scaleplan.errors import ScaleplanError
from scaleplan.tasks.base import Task
from scaleplan.train.config import LM_SEQ_LEN

STDLIB_FILES: tuple[str, ...] = (
    "_compression.py", "_markupbase.py", "_py_abc.py", "_threading_local.py",
    "asyncio/protocols.py", "asyncio/windows_utils.py", "curses/has_key.py", "difflib.py",
    "email/_encoded_words.py", "json/__init__.py", "multiprocessing/heap.py",
    "multiprocessing/reduction.py", "multiprocessing/sharedctypes.py", "optparse.py", "pyclbr.py",
    "tracemalloc.py", "unittest/suite.py", "unittest/util.py", "urllib/robotparser.py",
    "wsgiref/headers.py", "xml/dom/xmlbuilder.py", "xml/sax/handler.py", "xml/sax/saxutils.py",
)
PINNED_SHA256 = "4f8125cf999b9e33ffe1e5720af2774d016bac2aa73786e69172b157c649d1a1"
SHIPPED_CORPUS = Path(__file__).parent / "data" / "stdlib-corpus.txt.gz"
VOCAB = 128


@functools.lru_cache(maxsize=4)
def load_corpus(stdlib_dir: str | None = None, sha256: str = PINNED_SHA256) -> Tensor:
    """The pinned stdlib files, concatenated, as a uint8 tensor of token ids (hash-checked).

    `stdlib_dir=None` reads the shipped copy; "auto" reads this Python's stdlib; else that folder.
    """
    if stdlib_dir is None:
        root, data = SHIPPED_CORPUS, gzip.decompress(SHIPPED_CORPUS.read_bytes())
    else:
        root = Path(sysconfig.get_paths()["stdlib"] if stdlib_dir == "auto" else stdlib_dir)
        missing = [name for name in STDLIB_FILES if not (root / name).is_file()]
        if missing:
            raise ScaleplanError(f"charlm: standard library files missing under {root}: {', '.join(missing)}")
        data = b"\n".join((root / name).read_bytes() for name in STDLIB_FILES)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ScaleplanError(
            f"charlm: the stdlib text under {root} has sha256 {digest}, expected {sha256}; "
            f"this Python's copies of the pinned files differ - pass task kwarg sha256='{digest}' to use them anyway"
        )
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clamp(max=VOCAB - 1)


@dataclass
class CharLM(Task):
    """Next-character prediction on windows of seq_len characters; D counts tokens."""

    name: ClassVar[str] = "charlm"
    models: ClassVar[tuple[str, ...]] = ("gpt", "hf-gpt2")

    seq_len: int = LM_SEQ_LEN
    val_fraction: float = 0.1
    n_eval: int = 256
    sha256: str = PINNED_SHA256
    stdlib_dir: str | None = None
    _train: Tensor = field(init=False, repr=False)
    _eval: tuple[Tensor, Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.seq_len < 1 or self.n_eval < 1:
            raise ScaleplanError("charlm: seq_len and n_eval must be >= 1")
        if not 0.0 < self.val_fraction < 0.5:
            raise ScaleplanError(f"charlm: val_fraction must be in (0, 0.5), got {self.val_fraction}")
        tokens = load_corpus(self.stdlib_dir, self.sha256).long()
        split = int(len(tokens) * (1 - self.val_fraction))
        self._train, val = tokens[:split], tokens[split:]
        n_windows = min(self.n_eval, (len(val) - 1) // self.seq_len)
        if n_windows < 1:
            raise ScaleplanError(f"charlm: seq_len {self.seq_len} is longer than the held-out text")
        starts = torch.arange(n_windows) * self.seq_len
        self._eval = self._windows(val, starts)

    def _windows(self, tokens: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        index = starts[:, None] + torch.arange(self.seq_len + 1)
        window = tokens[index]
        return window[:, :-1], window[:, 1:]

    @property
    def model_kwargs(self) -> dict[str, int]:
        return {"vocab": VOCAB, "seq_len": self.seq_len}

    @property
    def units_per_example(self) -> int:
        return self.seq_len

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        starts = torch.randint(0, len(self._train) - self.seq_len - 1, (batch_size,), generator=generator)
        return self._windows(self._train, starts)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))

    def eval_set(self) -> tuple[Tensor, Tensor]:
        return self._eval
