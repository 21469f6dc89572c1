"""The batched augmentation gives the same result on CUDA as on the CPU (opt-in, needs a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedlt.data.transforms import random_crop_flip, to_tensor

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_random_crop_flip_cuda_matches_cpu():
    images = np.random.default_rng(0).integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    x = to_tensor(images, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    cpu = random_crop_flip(x, torch.Generator().manual_seed(3), fill=-2.0)
    cuda = random_crop_flip(x.cuda(), torch.Generator().manual_seed(3), fill=-2.0)
    assert cuda.device.type == "cuda"
    assert torch.equal(cuda.cpu(), cpu)
