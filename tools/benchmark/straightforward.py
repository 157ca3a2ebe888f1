"""The same epoch as a researcher would first write it, the reference the engine is compared with.

fp32, NCHW, per-sample PIL decoding of the JPEG files through a ``torch.utils.data.DataLoader`` with
torchvision transforms, a separate mapping pass with host-side counting, ``.item()`` every step,
and the default allocator (this process never calls ``mallopt``).
"""
from __future__ import annotations

import time
from pathlib import Path

from tools.benchmark.measure import cpu_seconds, measure_floor, peak_memory_mb, sync


def straightforward_worker(spec: dict) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision
    from torch import nn
    from torchvision import transforms

    from algorithms.runtime import Runtime
    from data.tensors import stratified_subset
    from models.networks import load_network

    device = torch.device(spec["device"] if spec["device"] != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(7)
    net_info = load_network(spec["network"], spec["weights"])
    network = net_info.model.to(device).eval()
    size = spec["input_size"]

    class PadPrompt(nn.Module):
        def __init__(self, image: int = 32) -> None:
            super().__init__()
            self.l_pad = (size - image + 1) // 2
            self.r_pad = size - image - self.l_pad
            mask = torch.ones(3, size, size)
            mask[:, self.l_pad : self.l_pad + image, self.l_pad : self.l_pad + image] = 0
            self.register_buffer("mask", mask)
            self.program = nn.Parameter(torch.zeros(3, size, size))
            self.register_buffer("mean", torch.tensor(net_info.mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(net_info.std).view(1, 3, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.pad(x, (self.l_pad, self.r_pad, self.l_pad, self.r_pad), value=0) + torch.sigmoid(self.program) * self.mask
            return (x - self.mean) / self.std

    prompt = PadPrompt().to(device)
    root = Path(spec["data_root"]) / "cifar10"
    tf = transforms.Compose([transforms.ToTensor()])
    train_set = torchvision.datasets.ImageFolder(str(root / "train"), transform=tf)
    test_set = torchvision.datasets.ImageFolder(str(root / "test"), transform=tf)
    train_idx = stratified_subset(torch.tensor(train_set.targets), count=spec["n_train"], seed=0).tolist()
    test_idx = stratified_subset(torch.tensor(test_set.targets), count=spec["n_test"], seed=0).tolist()
    train_set, test_set = torch.utils.data.Subset(train_set, train_idx), torch.utils.data.Subset(test_set, test_idx)
    loader_args = dict(num_workers=spec["workers"], pin_memory=device.type == "cuda")
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=spec["batch_size"], shuffle=True, **loader_args)
    map_loader = torch.utils.data.DataLoader(train_set, batch_size=spec["batch_size"], shuffle=False, **loader_args)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=spec["batch_size"], shuffle=False, **loader_args)
    optimizer = torch.optim.Adam(prompt.parameters(), lr=0.01)

    # one untimed step so that library initialisation is not charged to the epoch
    x = torch.rand(2, 3, 32, 32, device=device)
    network(prompt(x)).sum().backward()
    optimizer.zero_grad()

    def timed(fn):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        return out, time.perf_counter() - t0

    def mapping_pass() -> list[int]:
        preds, targets = [], []
        with torch.no_grad():
            for x, y in map_loader:
                preds.append(network(prompt(x.to(device))).argmax(1).cpu())
                targets.append(y)
        counts = np.zeros((1000, 10))
        for p, t in zip(torch.cat(preds).tolist(), torch.cat(targets).tolist()):
            counts[p, t] += 1
        mapping = [0] * 10
        for _ in range(10):
            s, t = np.unravel_index(np.argmax(counts), counts.shape)
            mapping[t] = int(s)
            counts[s, :] = -1
            counts[:, t] = -1
        return mapping

    def train_epoch(mapping: list[int]) -> float:
        prompt.train()
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            logits = network(prompt(x))[:, mapping]
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * y.size(0)
            correct += (logits.argmax(1) == y).sum().item()
            seen += y.size(0)
        return total_loss / seen

    def test(mapping: list[int]) -> float:
        correct, seen = 0, 0
        with torch.no_grad():
            for x, y in test_loader:
                x, y = x.to(device), y.to(device)
                correct += (network(prompt(x))[:, mapping].argmax(1) == y).sum().item()
                seen += y.size(0)
        return 100.0 * correct / seen

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    c0 = cpu_seconds()
    mapping, t_map = timed(mapping_pass)
    _, t_train = timed(lambda: train_epoch(mapping))
    acc, t_test = timed(lambda: test(mapping))
    epoch = t_map + t_train + t_test
    epoch_cpu = cpu_seconds() - c0
    # The same network alone, laid out as this pipeline runs it (NCHW, batch norms kept, fp32):
    # its ratio to the engine's floor bounds what any exact pipeline can gain over this one.
    # (a Runtime built directly, not by setup_runtime, leaves the allocator as this pipeline has it)
    network_alone = measure_floor({**spec, "engine_rewrites": False, "channels_last": False}, Runtime(device, "fp32"))
    return {
        "epoch_cpu_seconds": epoch_cpu,
        "network_alone": network_alone,
        "phase_seconds": {"mapping": t_map, "train": t_train, "test": t_test},
        "epoch_seconds": epoch,
        "images_per_s": spec["n_train"] / epoch,
        "test_acc": acc,
        "peak_memory_mb": peak_memory_mb(device),
    }
