"""DevicePrefetcher: the loader's batches, in order, on the device."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from attribnet.runtime.prefetch import DevicePrefetcher


class Items(Dataset):
    """Item i: a clip filled with i, its label and its index."""

    def __len__(self) -> int:
        return 11

    def __getitem__(self, i: int) -> dict:
        return {"clip": torch.full((2, 3, 4, 4), float(i)), "label": i % 3, "index": i}


def loader(**kwargs) -> DataLoader:
    generator = torch.Generator().manual_seed(5)
    return DataLoader(Items(), batch_size=4, shuffle=True, generator=generator, **kwargs)


def assert_same_batches(got: list[dict], expected: list[dict], device: torch.device) -> None:
    assert len(got) == len(expected) == 3
    for a, b in zip(got, expected, strict=True):
        assert set(a) == set(b)
        for key in b:
            assert a[key].device.type == device.type
            assert torch.equal(a[key].cpu(), b[key]), key


def test_the_same_batches_in_the_same_order_on_the_cpu():
    device = torch.device("cpu")
    expected = list(loader())
    got = list(DevicePrefetcher(loader(), device))
    assert_same_batches(got, expected, device)
    assert [b["index"].tolist() for b in got] != [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]


def test_tensors_already_on_the_device_are_not_copied_and_other_values_pass():
    clip = torch.zeros(2, 3)
    (batch,) = DevicePrefetcher([{"clip": clip, "name": "a"}], torch.device("cpu"))
    assert batch["clip"] is clip and batch["name"] == "a"


def test_an_empty_loader_gives_no_batch():
    assert list(DevicePrefetcher([], torch.device("cpu"))) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_pinned_batches_arrive_in_order_and_whole():
    device = torch.device("cuda")
    expected = list(loader())
    got = []
    for batch in DevicePrefetcher(loader(pin_memory=True), device):
        got.append({k: v * 1 for k, v in batch.items()})  # used on the main stream
    torch.cuda.synchronize()
    assert_same_batches(got, expected, device)
