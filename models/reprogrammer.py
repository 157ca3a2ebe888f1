"""The composed model every method trains: input transform -> source network -> label mapping."""
from __future__ import annotations

import torch
from torch import nn

from models.layers import full_precision


class ReprogrammingModel(nn.Module):
    """``label_mapping(network(input_transform(x)))`` for images ``x`` in ``[0, 1]``.

    Under autocast the input transform and the network run in reduced precision, but the label
    mapping always computes in float32 on float32 source logits (networks end in a float32
    output layer), so no prediction or mapping count depends on reduced-precision rounding of logits.

    The methods differ only in which of the three parts train: the visual prompt methods train
    the input transform (and a trainable mapping, if any), linear probing the network's new head,
    fine-tuning everything. A network that is not trained stays in eval mode even while the rest
    of the model trains, so its batch-norm statistics are never touched.

    It is one :class:`~algorithms.engine.trainable.Trainable` (the trainer's contract); the
    label mapping is its own business and its hook's (``MappingRefit``), not the trainer's.
    """

    def __init__(
        self,
        input_transform: nn.Module,
        network: nn.Module,
        label_mapping: nn.Module,
        *,
        train_network: bool = False,
        channels_last: bool = True,
        fold_batch_norm: bool = False,
        fast_frozen_ops: bool = True,
        recompute: bool = False,
    ) -> None:
        super().__init__()
        self.input_transform = input_transform
        self.network = network
        self.label_mapping = label_mapping
        self.train_network = train_network
        self.channels_last = channels_last
        self.rewrites: dict[str, int] = {}  # what prepare_frozen_network did, by kind
        if recompute and train_network:
            raise ValueError("recomputation is for frozen networks: a trained network's batch norms would update twice")
        if not train_network:  # rewrites that change a frozen network's speed or memory, not its outputs
            from models.frozen import prepare_frozen_network

            network, self.rewrites = prepare_frozen_network(network, fold_batch_norm, fast_frozen_ops, recompute)
            self.network = network
        if channels_last:
            self.network.to(memory_format=torch.channels_last)
            if hasattr(input_transform, "memory_format"):  # let the prompt write that layout directly
                input_transform.memory_format = torch.channels_last

    def train(self, mode: bool = True) -> ReprogrammingModel:
        super().train(mode)
        if not self.train_network:
            self.network.eval()
        return self

    def source_logits(self, x: torch.Tensor) -> torch.Tensor:
        inputs = self.input_transform(x)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return self.network(inputs)

    def forward(self, x: torch.Tensor, return_source: bool = False):
        source = self.source_logits(x)
        with full_precision(source):  # a mapping's product (BLM's omega, a linear map) in float32, as its logits
            target = self.label_mapping(source.float())
        return (target, source) if return_source else target

    def compile_frozen(self, **options) -> None:
        """``--compile``: the network body, where the time goes (the prompt and mapping are small)."""
        self.network.compile(**options)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def trained_modules(self) -> set[str]:
        """Names of the modules that hold a trainable parameter of their own."""
        return {name for name, module in self.named_modules() if any(p.requires_grad for p in module.parameters(recurse=False))}

    @property
    def trains_buffers(self) -> bool:
        """Whether a trained module keeps state besides its parameters (batch-norm running
        statistics of a mask network or of a fine-tuned network), which ranks must share."""
        trained = self.trained_modules()
        return any(key.rpartition(".")[0] in trained for key, _ in self.named_buffers())

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must hold: the prompt and mapping whole, plus every network module
        that has a trainable parameter (its buffers too, e.g. batch-norm statistics when fine-tuning)."""
        trained_modules = self.trained_modules()
        keep = {}
        for key, value in self.state_dict().items():
            owner = key.rpartition(".")[0]
            if key.startswith(("input_transform.", "label_mapping.")) or owner in trained_modules:
                keep[key] = value.detach().clone()
        return keep
