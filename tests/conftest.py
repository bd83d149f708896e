"""Test-wide settings.

BPTT agents default to the ``compiled`` engine, whose first use in a process compiles its step for
each new batch shape (seconds to a minute). The tests build many small agents of many shapes, so
they run the ``eager`` engine (the same results to float32 rounding) unless a test names its
engine; ``tests/test_bptt_speed.py`` checks the compiled engine against the reference.
"""

import os

import pytest

os.environ.setdefault("SAVINGS_GYM_BPTT_ENGINE", "eager")


@pytest.fixture
def one_torch_thread():
    """SB3's small networks run fastest on one thread (two threads on a busy 2-core machine thrash)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
