"""The authors' distributed pattern with gram.torch, as a script test_torch_ddp.py launches:
each rank embeds its part of the batch, all-gathers the embeddings with their gradient, and
computes the symmetric GRAM loss over the gathered volume matrix; DistributedDataParallel
averages the parameter gradients.

    python ddp_train.py RANK WORLD PORT OUT.pt   (WORLD = 1: one process on the whole batch)

Writes the loss and every parameter gradient of the first step, and the parameters after
STEPS steps of SGD, to OUT.pt.
"""
import sys

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch.nn.parallel import DistributedDataParallel

import gram.torch as gt

BATCH, STEPS, D_IN, D = 8, 3, 12, 6


class Towers(torch.nn.Module):
    """Three modality encoders: a linear layer and a tanh each, L2-normalised outputs."""

    def __init__(self):
        super().__init__()
        self.towers = torch.nn.ModuleList(torch.nn.Linear(D_IN, D) for _ in range(3))

    def forward(self, xs):
        return [torch.nn.functional.normalize(torch.tanh(t(x)), dim=1) for t, x in zip(self.towers, xs)]


def gram_loss(anchor, m1, m2, temperature=0.1):
    v = gt.volume_matrix(anchor, [m1, m2], path="device")
    logits = -v / temperature
    target = torch.arange(anchor.shape[0])
    return (torch.nn.functional.cross_entropy(logits, target)
            + torch.nn.functional.cross_entropy(logits.T, target)) / 2


def main(rank, world, port, out):
    torch.manual_seed(0)
    data = [torch.randn(BATCH, D_IN, dtype=torch.float64) for _ in range(3)]
    model = Towers().double()
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
        model = DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    part = BATCH // world
    mine = [x[rank * part:(rank + 1) * part] for x in data]
    first = None
    for _ in range(STEPS):
        emb = model(mine)
        if world > 1:
            emb = [torch.cat(dist_fn.all_gather(e)) for e in emb]
        loss = gram_loss(*emb)
        opt.zero_grad()
        loss.backward()
        if first is None:
            first = {"loss": loss.detach(), "grads": [p.grad.clone() for p in model.parameters()]}
        opt.step()
    first["params"] = [p.detach().clone() for p in model.parameters()]
    torch.save(first, out)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
