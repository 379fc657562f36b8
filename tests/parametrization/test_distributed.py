"""torch.distributed around a parametrized model (one process, gloo, in a subprocess so that no process group outlives
the test): FSDP2's fully_shard replaces every parameter by a DTensor one, which loses scaleplan's tag, and the optimizer
check still sees them; ZeroRedundancyOptimizer steps param_groups' groups with its inner Adam, which has muP's rules."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import sys, warnings
    import torch, torch.distributed as dist
    from torch import nn
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from scaleplan import apply_parametrization

    dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
    def mlp(width):
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3))
    torch.manual_seed(0)
    model = apply_parametrization(mlp(256), "mup", base=mlp(32))
    fully_shard(model, mesh=init_device_mesh("cpu", (1,)))
    assert type(model[2].weight.data).__name__ == "DTensor" and not hasattr(model[2].weight, "_scaleplan_lr_factors")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(torch.randn(4, 8)).pow(2).mean().backward()
        optimizer.step()
    print([str(w.message) for w in caught])
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from scaleplan import param_groups
    other = apply_parametrization(mlp(256), "mup", base=mlp(32))
    zero = ZeroRedundancyOptimizer(param_groups(other, 1e-3), optimizer_class=torch.optim.Adam)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        other(torch.randn(4, 8)).pow(2).mean().backward()
        zero.step()
    print("zero:", [str(w.message) for w in caught])
    raw = mlp(256)
    fully_shard(raw, mesh=init_device_mesh("cpu", (1,)))
    try:
        apply_parametrization(raw, "mup", base=mlp(32))
    except Exception as exc:
        print(type(exc).__name__, exc)
    dist.destroy_process_group()
""")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_a_sharded_model_is_still_checked_zero_is_not_a_false_alarm_and_sharding_first_is_refused(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "rendezvous")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    (messages,) = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert "zero: []" in done.stdout.splitlines()  # it warned "no muP rules for ZeroRedundancyOptimizer"
    assert "optimizer group 0 gives one lr to tensors of a muP model" in messages and "2.weight" in messages
    # applied after sharding: refused in one line, naming the order (it was an internal DTensor error)
    assert "ParametrizationError 0.weight is a DTensor (sharded by FSDP2's fully_shard" in done.stdout
