"""Test set-up: without a GPU, our Triton kernels run in Triton's interpreter. The switch must be
set before any kernel module is imported (triton.jit reads it when a kernel is decorated).

The CUDA check is made here once: a test that needs a GPU is marked ``@pytest.mark.gpu`` (or its
module sets ``pytestmark = pytest.mark.gpu``) and is skipped, with the reason, where there is none."""
import os
import sys

import pytest

try:
    import torch

    HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    HAS_CUDA = False

if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    needs_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(needs_gpu)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    # Calibration and other caches go to a temp dir so tests never read a developer's cache.
    os.environ["SOLBENCH_CACHE"] = str(tmp_path_factory.mktemp("solbench-cache"))
    yield


@pytest.fixture
def device():
    import torch

    return torch.device("cuda" if HAS_CUDA else "cpu")


def pytest_report_header(config):
    where = "CUDA" if HAS_CUDA else "CPU, TRITON_INTERPRET=" + os.environ.get("TRITON_INTERPRET", "")
    return f"solbench tests: {where}; python {sys.version.split()[0]}"
