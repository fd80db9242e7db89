"""Pretrained weights from local files: a safe state-dict reader and the DeiT -> M2M-AST transfer.

Nothing is downloaded: the user passes a file. A ``.safetensors`` file is read with safetensors; a
``.pth``/``.pt`` file only with ``torch.load(weights_only=True)``, whose unpickler accepts tensors and
plain containers and refuses every other object before building it, so a file that needs a full
unpickle is refused rather than executed.

The DeiT transfer follows M2M-AST section 3.3, which does as AST does (Gong et al. 2021,
``ast_models.py``), for a timm-format DeiT state dict (deit_base_distilled_patch16_384, AST's default,
deit_base_distilled_patch16_224, deit_tiny_patch16_224, deit_tiny_distilled_patch16_224, ...):

- Patch embedding: DeiT's kernel (D, 3, 16, 16) is kept at 16x16; each of our input channels gets the
  mean of its three RGB kernels (the paper's "average weight of the three channels"; AST's code sums
  them instead, for its one channel). The stride is ours (10), not DeiT's 16; the bias is copied.
- Patch positional embeddings: DeiT's grid (24x24 at 384 px, 14x14 at 224 px) is mapped onto our
  (time 29, frequency 12) grid as AST maps it onto its (frequency, time) grid: the image width is the
  time axis and the height the frequency axis. Each axis separately is cut to its middle when ours is
  not longer (frequency: rows 6-17 of 24, or 1-12 of 14), else bilinearly interpolated along that
  axis alone (time: 24 or 14 -> 29; ``F.interpolate``, align_corners False). AST cuts or interpolates
  time first, then frequency; the two act on different axes, so the order does not change the result.
  With our grid no axis is both cut and interpolated.
- Output tokens: every one of the t' tokens, and every one of their positional embeddings, starts as
  the mean of DeiT's CLS and distillation token (resp. their positional embeddings); the CLS token
  alone for a DeiT without distillation token.
- Transformer blocks and the final norm are copied by name (our layout is timm's). DeiT's classifier
  heads (``head``, ``head_dist``) are not used; our head keeps its random init.

DeiT saw ImageNet-normalised pixels (about zero mean, unit variance); AST standardises its log-mel input
with data-set statistics before the transfer is of use. seld-edge's systems do the same: the normaliser
fitted on the training split (per channel and frequency) sits in front of every network.
"""

import pickle
import re
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file

from seld_edge.errors import SeldEdgeError
from seld_edge.models.m2m_ast import M2MAST

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")
_DEIT_HEADS = ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file, or of a .pth/.pt file read with ``torch.load(weights_only=True)``.

    A .pth holding ``{"model": state_dict}`` (how the DeiT authors publish theirs) is unwrapped.
    """
    path = Path(path)
    if path.suffix not in WEIGHT_SUFFIXES:
        raise SeldEdgeError(f"{path}: weights must be a .safetensors, .pth or .pt file")
    if not path.is_file():
        raise SeldEdgeError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise SeldEdgeError(f"{path}: unreadable safetensors file ({err})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\n|$)", str(err))
        detail = f" ({found[1].strip()})" if found else ""
        raise SeldEdgeError(
            f"{path}: refused: it holds more than tensors{detail} and is never unpickled; save its state dict "
            "as .safetensors or with torch.save(model.state_dict())"
        ) from None
    except (RuntimeError, OSError, EOFError) as err:
        raise SeldEdgeError(f"{path}: unreadable weights file ({str(err).splitlines()[0]})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SeldEdgeError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return state


def load_deit(model: M2MAST, path: str | Path) -> None:
    """Initialise ``model`` from the timm-format DeiT state dict in ``path`` (see the module docstring).

    The file must match the model's width and depth; otherwise one error names every missing,
    mis-shaped and unexpected key.
    """
    state = read_state_dict(path)
    width, patch = model.pos_embed.shape[-1], model.patch_embed.patch_size
    n_prefix = 2 if "dist_token" in state else 1
    expected = {
        "cls_token": (1, 1, width),
        "patch_embed.proj.weight": (width, 3, patch, patch),
        "patch_embed.proj.bias": (width,),
        **{f"blocks.{k}": tuple(v.shape) for k, v in model.blocks.state_dict().items()},
        **{f"norm.{k}": tuple(v.shape) for k, v in model.norm.state_dict().items()},
    }
    if n_prefix == 2:
        expected["dist_token"] = (1, 1, width)
    _check_keys(path, state, expected, width, n_prefix)

    pos_embed = state["pos_embed"][0]  # (prefix + side * side, width): CLS[, distillation], then the patch grid
    prefix = [state["cls_token"], state["dist_token"]] if n_prefix == 2 else [state["cls_token"]]
    token = torch.cat(prefix, dim=1).mean(dim=1)  # (1, width)
    token_pos = pos_embed[:n_prefix].mean(dim=0, keepdim=True)  # (1, width)
    side = round((pos_embed.shape[0] - n_prefix) ** 0.5)
    # DeiT's grid is (height, width, D); as in AST the width is time and the height frequency.
    grid = pos_embed[n_prefix:].reshape(side, side, width).permute(2, 1, 0).unsqueeze(0)  # (1, D, time, freq)
    grid = _fit_axis(_fit_axis(grid, 2, model.grid[0]), 3, model.grid[1])
    patch_pos = grid[0].flatten(1).T  # (time * freq, D), time-major like our patches
    n_tokens, in_channels = model.num_output_tokens, model.patch_embed.proj.in_channels
    kernel = state["patch_embed.proj.weight"].mean(dim=1, keepdim=True)  # (D, 1, 16, 16)
    mapped = {
        "output_tokens": token.expand(n_tokens, width).unsqueeze(0),
        "pos_embed": torch.cat([token_pos.expand(n_tokens, width), patch_pos]).unsqueeze(0),
        "patch_embed.proj.weight": kernel.expand(-1, in_channels, -1, -1),
        "patch_embed.proj.bias": state["patch_embed.proj.bias"],
        **{key: state[key] for key in expected if key.startswith(("blocks.", "norm."))},
    }
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    assert not unexpected and set(missing) == {"head.weight", "head.bias"}, (missing, unexpected)


def _fit_axis(grid: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    """Cut ``grid`` (1, D, H, W) to its middle ``size`` entries along ``axis`` (2 or 3) when that is not
    longer than the axis, else bilinearly interpolate along that axis alone (AST's rule)."""
    length = grid.shape[axis]
    if size <= length:
        return grid.narrow(axis, length // 2 - size // 2, size)
    target = [grid.shape[2], grid.shape[3]]
    target[axis - 2] = size
    return F.interpolate(grid, size=tuple(target), mode="bilinear", align_corners=False)


def _check_keys(
    path: str | Path, state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], width: int, n_prefix: int
) -> None:
    """One error naming every missing, mis-shaped and unexpected key of a DeiT state dict."""
    missing = [key for key in [*expected, "pos_embed"] if key not in state]
    wrong = [(key, tuple(state[key].shape), shape) for key, shape in expected.items()
             if key in state and tuple(state[key].shape) != shape]  # fmt: skip
    if "pos_embed" in state and not _is_square_grid(tuple(state["pos_embed"].shape), width, n_prefix):
        wrong.append(("pos_embed", tuple(state["pos_embed"].shape), f"(1, {n_prefix} + N*N, {width})"))
    unexpected = sorted(set(state) - set(expected) - {"pos_embed", *_DEIT_HEADS})
    if not (missing or wrong or unexpected):
        return
    blocks = sorted({key.split(".", 2)[2] for key in expected if key.startswith("blocks.")})
    parts = []
    if missing:
        parts.append("missing " + ", ".join(_compact([(key, "") for key in missing], blocks)))
    if wrong:
        shapes = [(key, f" {_shape(got)} for {_shape(want)}") for key, got, want in wrong]
        parts.append("wrong shape " + ", ".join(_compact(shapes, blocks)))
    if unexpected:
        parts.append("unexpected " + ", ".join(_compact([(key, "") for key in unexpected], blocks)))
    depth = len({key.split(".")[1] for key in expected if key.startswith("blocks.")})
    raise SeldEdgeError(f"{path}: not a DeiT state dict for width {width}, {depth} blocks: {'; '.join(parts)}")


def _is_square_grid(shape: tuple[int, ...], width: int, n_prefix: int) -> bool:
    """Whether a positional embedding of ``shape`` is (1, n_prefix + N * N, width) for some N >= 1."""
    if len(shape) != 3 or shape[0] != 1 or shape[2] != width or shape[1] <= n_prefix:
        return False
    side = round((shape[1] - n_prefix) ** 0.5)
    return side * side == shape[1] - n_prefix


def _shape(shape: tuple[int, ...] | str) -> str:
    return shape if isinstance(shape, str) else "(" + ", ".join(map(str, shape)) + ")"


def _compact(entries: list[tuple[str, str]], block_names: list[str]) -> list[str]:
    """Name (key, detail) entries compactly: a block whose every key has the same detail is ``blocks.N.*``,
    and per-block keys sharing a detail are folded over blocks and names, e.g. ``blocks.{0-11}.*`` or
    ``blocks.{3,5}.{attn.qkv.weight,norm1.bias} (..) for (..)``; other keys are listed as they are."""
    plain, per_block = [], defaultdict(list)
    for key, detail in entries:
        found = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
        if found:
            per_block[(int(found[1]), detail)].append(found[2])
        else:
            plain.append(key + detail)
    whole, per_name = defaultdict(list), defaultdict(list)
    for (block, detail), names in sorted(per_block.items()):
        if sorted(names) == block_names:
            whole[detail].append(block)
        else:
            for name in names:
                per_name[(name, detail)].append(block)
    folded = [f"blocks.{_ranges(blocks)}.*{detail}" for detail, blocks in whole.items()]
    names_by_blocks = defaultdict(list)
    for (name, detail), blocks in per_name.items():
        names_by_blocks[(_ranges(blocks), detail)].append(name)
    for (blocks, detail), names in names_by_blocks.items():
        folded.append(f"blocks.{blocks}.{names[0] if len(names) == 1 else '{' + ','.join(names) + '}'}{detail}")
    return plain + folded


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5] -> '{0-2,5}'; a single value bare."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    text = ",".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)
    return text if len(values) == 1 else "{" + text + "}"
