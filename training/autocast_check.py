"""Whether a network computes what it should under autocast: each layer against itself in float32.

Mixed precision is only a speed-up if every layer still computes its function. torch 2.13's oneDNN (3.12)
does not always: on AMX CPUs some bfloat16 convolutions with a stride above 1 come out with a relative
error near 1 where bfloat16 rounding gives a few 1e-3 (oneDNN pull request 5494, pytorch issue 169688;
here a 4-channel 16x16 stride-16 ViT patch projection). Their weight gradient is right, so a network
trains on the wrong outputs and fits them, and the float32 model it saves is of no use, with nothing but
a poor score to show for it. One forward pass with a hook on each layer finds such a layer before
training starts, and training falls back to float32.
"""

from typing import Any

import torch
from torch import nn

# A layer's autocast output against its float32 output on the same input, relative L2 error. bfloat16
# keeps 8 significant bits (about 4e-3 per rounding); the faults seen are about 1.
FAULT_RELATIVE_ERROR = 0.05


def autocast_faults(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], device_type: str, dtype: torch.dtype
) -> list[tuple[str, float]]:
    """(name, relative error) of each leaf layer with weights whose output under ``dtype`` autocast departs
    from float32 on the same input by more than FAULT_RELATIVE_ERROR. Runs in eval mode (batch-norm
    statistics are not touched) and leaves the module's mode as it was."""
    faults: list[tuple[str, float]] = []

    def check(name: str):
        def hook(layer: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                return
            as_float = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
            with torch.autocast(device_type, enabled=False):
                reference = layer.forward(*as_float, **kwargs)  # forward, not __call__: no hook recursion
            error = ((output.float() - reference).norm() / reference.norm().clamp_min(1e-12)).item()
            if error > FAULT_RELATIVE_ERROR:
                faults.append((name, error))

        return hook

    # Leaf layers with weights: where the arithmetic is (a container's check would repeat its layers').
    layers = [
        (n, m)
        for n, m in module.named_modules()
        if next(m.children(), None) is None and next(m.parameters(recurse=False), None) is not None
    ]
    handles = [m.register_forward_hook(check(n), with_kwargs=True) for n, m in layers]
    training = module.training
    try:
        module.eval()
        with torch.no_grad(), torch.autocast(device_type, dtype=dtype):
            module(*inputs)
    finally:
        module.train(training)
        for handle in handles:
            handle.remove()
    return faults
