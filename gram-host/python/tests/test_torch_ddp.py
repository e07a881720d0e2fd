"""gram.torch in DistributedDataParallel (gloo, two processes on the CPU) equals one process
on the whole batch: the loss and every gradient to float64 rounding, and the ranks' parameters
stay bit-identical (the script: ddp_train.py)."""
import pathlib
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install torch)")
if not torch.distributed.is_available():
    pytest.skip("this PyTorch has no torch.distributed", allow_module_level=True)

SCRIPT = pathlib.Path(__file__).with_name("ddp_train.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(world, tmp):
    port = free_port()
    outs = [tmp / f"w{world}_r{r}.pt" for r in range(world)]
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), str(r), str(world), str(port), str(o)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r, o in enumerate(outs)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    return [torch.load(o) for o in outs]


def test_two_ranks_equal_one_process_on_the_whole_batch(tmp_path):
    (single,) = run(1, tmp_path)
    ranks = run(2, tmp_path)
    for r in ranks:
        assert torch.allclose(r["loss"], single["loss"], rtol=1e-13, atol=0)
        for g, s in zip(r["grads"], single["grads"]):
            assert torch.allclose(g, s, rtol=1e-11, atol=1e-14), (g - s).abs().max()
        for p, s in zip(r["params"], single["params"]):
            assert torch.allclose(p, s, rtol=1e-11, atol=1e-14)
    # DDP keeps replicas identical: the same averaged gradient, the same update.
    for p, q in zip(ranks[0]["params"], ranks[1]["params"]):
        assert torch.equal(p, q)
