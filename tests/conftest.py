"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Small tensors: one thread (on a shared machine, idle OpenMP workers make tiny ops take ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
