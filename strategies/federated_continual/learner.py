"""An online continual learner federated by FedAvg (docs/federated_continual.md).

Every client runs the stream engine's learner (``strategies.continual``) on its own stream:
the learner's ``train_step`` on each online step, its ``on_task_end`` at the end of each of
the client's tasks. What the learner *trains* is shared and averaged by the server, weighted
by the number of new stream samples each client consumed that round (FedAvg, McMahan et al.
2017):

    θ_shared ← Σ_k n_k · θ_shared^k / Σ_k n_k

Shared: the trainable parameters (``requires_grad``) and the floating buffers of the modules
that own them (BatchNorm statistics). For the prompt learners (L2P, DualPrompt, MVP, MVP-R)
that is the prompts, keys, logit mask and head: the frozen ViT backbone never travels (every
client rebuilds it from the model config, docs/continual.md). Everything else the learner
holds stays with its client (``client_state``): EWC++'s Fisher and anchor, LwF's teacher and
old classes, MVP's key-selection counts. The optimizer is created afresh every round, as
every federated strategy's is (docs/federated.md).
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fedlt.seeding import seeded_torch
from strategies.continual.base import ContinualLearner
from strategies.federated.base import (
    ClientData,
    FederatedStrategy,
    LocalResult,
    Predictor,
    StateDict,
    TrainConfig,
    cpu_state,
)

PRIVATE_PREFIX = "learner."
EXTRA_PREFIX = "learner_extra."


def shared_names(learner: nn.Module) -> list[str]:
    """State-dict names of what a federated learner shares (see the module docstring)."""
    names = [n for n, p in learner.named_parameters() if p.requires_grad]
    for module_name, module in learner.named_modules():
        if not any(p.requires_grad for p in module.parameters(recurse=False)):
            continue
        for buffer_name, buffer in module.named_buffers(recurse=False):
            if buffer.is_floating_point():
                names.append(f"{module_name}.{buffer_name}" if module_name else buffer_name)
    return names


class FederatedLearner(FederatedStrategy):
    """FedAvg over a continual learner's trained state; see the module docstring."""

    learner_class: ClassVar[type[ContinualLearner]]
    online_streams = True
    generic_modes = ("global",)
    personal_modes = ("global",)

    def __init__(
        self,
        options: Any,
        model_factory: Any,
        num_classes: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(options, model_factory, num_classes, device, seed)
        self.learner: ContinualLearner = self.model
        self.uses_memory = bool(self.learner_class.uses_memory)
        self.shared = shared_names(self.learner)
        state = self.learner.state_dict()
        shared = set(self.shared)
        self.private = [k for k in state if k not in shared and not k.endswith("_extra_state")]
        self._tensors = {
            **dict(self.learner.named_parameters()),
            **dict(self.learner.named_buffers()),
        }
        self._initial_global = cpu_state({k: self._tensors[k] for k in self.shared})
        self._initial_client = self._client_state()

    def working_model(self) -> nn.Module:
        """The learner, built under the ``model_init`` stream as the stream engine builds it
        (it makes its own model; no other model is built)."""
        with seeded_torch(self.seed, "model_init"):
            learner = self.learner_class(
                self.options, self.model_factory, self.num_classes, self.device, self.seed
            )
        return learner.to(self.device)

    # -- states -----------------------------------------------------------------------
    def _client_state(self) -> StateDict:
        state = self.learner.state_dict()
        private = cpu_state({k: state[k] for k in self.private}, PRIVATE_PREFIX)
        return {**private, **cpu_state(self.learner.private_tensors(), EXTRA_PREFIX)}

    def init_global_state(self) -> StateDict:
        return {k: v.clone() for k, v in self._initial_global.items()}

    def init_client_state(self, client_id: int) -> StateDict:
        return {k: v.clone() for k, v in self._initial_client.items()}

    @torch.no_grad()
    def load_global(self, global_state: StateDict) -> None:
        missing = [k for k in self.shared if k not in global_state]
        if missing:
            raise KeyError(f"{self.learner.name}: global state lacks {missing[:5]}")
        for key in self.shared:
            self._tensors[key].copy_(global_state[key])

    @torch.no_grad()
    def load_client(self, client_state: StateDict) -> None:
        state = client_state or self._initial_client
        for key in self.private:
            self._tensors[key].copy_(state[PRIVATE_PREFIX + key])
        extra = {k[len(EXTRA_PREFIX) :]: v for k, v in state.items() if k.startswith(EXTRA_PREFIX)}
        self.learner.load_private_tensors(extra)

    # -- training ---------------------------------------------------------------------
    def local_update(
        self,
        global_state: StateDict,
        client_state: StateDict,
        data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> LocalResult:
        self.load_global(global_state)
        self.load_client(client_state)
        self.learner.reset_optimizer()
        self.learner.train()
        task_end_hooks = getattr(data, "task_end_hooks", None)
        if task_end_hooks is not None:
            task_end_hooks.append(self.learner.on_task_end)
        loss_sum, steps = 0.0, 0
        for x, y in data.batches(train.batch_size, generator):
            exposed = data.exposed
            if exposed is None:  # a fixed data set: every class open
                exposed = torch.ones(self.num_classes, dtype=torch.bool, device=self.device)
            logs = self.learner.train_step(x, y, exposed)
            loss_sum += float(logs.get("loss", 0.0))
            steps += 1
        return LocalResult(
            update=cpu_state({k: self._tensors[k] for k in self.shared}),
            num_examples=len(data),
            client_state=self._client_state(),
            metrics={"train_loss": loss_sum / max(steps, 1)},
        )

    # -- evaluation -------------------------------------------------------------------
    def generic_predictor(self, global_state: StateDict) -> Predictor:
        self.load_global(global_state)
        self.learner.eval()
        learner = self.learner
        everything = torch.ones(self.num_classes, dtype=torch.bool, device=self.device)

        @torch.no_grad()
        def predict(x: Tensor) -> dict[str, Tensor]:
            # every class open here; the engine masks to the classes exposed so far
            return {"global": learner(x, everything)}

        return predict


@cache
def federated_learner(learner_class: type[ContinualLearner]) -> type[FederatedLearner]:
    """The :class:`FederatedLearner` of one continual learner (one class per learner)."""
    return type(
        f"Federated{learner_class.__name__}",
        (FederatedLearner,),
        {
            "learner_class": learner_class,
            "Options": learner_class.Options,
            "name": learner_class.name,
            "__doc__": f"{learner_class.name} on every client, federated by FedAvg.",
        },
    )
