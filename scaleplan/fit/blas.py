"""One BLAS thread for loops of tiny linear-algebra calls (L-BFGS-B steps, small least squares)."""

from __future__ import annotations

import contextlib


def single_blas_thread() -> contextlib.AbstractContextManager:
    """Limit OpenBLAS to one thread: tiny BLAS calls ran 3-10x slower with 2 threads on a busy 2-core machine (measured).

    Uses threadpoolctl when installed; without it the fits are only slower.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
