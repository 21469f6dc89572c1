"""FedAvg (McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017).

Clients run SGD from the global weights; the server averages all weights (BatchNorm buffers
included) weighted by local training-set size. Personalisation: none — the personalised
evaluation uses the global model on each client's local test set.
"""

from __future__ import annotations

from strategies.federated import register
from strategies.federated.base import FederatedStrategy


@register("fedavg")
class FedAvg(FederatedStrategy):
    """The base behaviour, unchanged."""

    online_streams = True
