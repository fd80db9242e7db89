"""``seld-edge compose``: one checkpoint of a composite model from the checkpoints of its trained parts.

M2M-AST trains its SED network (on the MIC array) and its DOA network (on FOA) apart; run as one, they
are a ``sed_doa`` model with two inputs. The composite checkpoint is an ordinary checkpoint (JSON +
safetensors) whose settings and weights are its parts', so export, run, predict and parity need
nothing else. The parts must agree on what makes their outputs combinable: class names and the
inference window. The composite's post-processing is its first part's (the card's order: the part
whose activity the thresholds apply to comes first).
"""

from pathlib import Path

from seld_edge.errors import SeldEdgeError
from seld_edge.io import file_sha256
from seld_edge.models import CompositeCard, CompositeSystem, SeldSystem, model_card
from training.checkpoint import chunk_seconds_of, load_checkpoint, resolve_checkpoint, save_checkpoint


def compose_checkpoint(model: str, parts: dict[str, Path], out_dir: Path) -> Path:
    """Write OUT_DIR/best.{json,safetensors} for the composite ``model``; returns the stem."""
    card = model_card(model)
    if not isinstance(card, CompositeCard):
        raise SeldEdgeError(f"{model} is not a composite model; only composites are composed")
    if set(parts) != set(card.parts):
        wanted = " ".join(f"{part}=CHECKPOINT" for part in card.parts)
        raise SeldEdgeError(f"{model} is composed as `{wanted}`, got parts {', '.join(sorted(parts))}")
    systems: dict[str, SeldSystem] = {}
    metas = {}
    for part in card.parts:
        system, meta = load_checkpoint(parts[part])
        if system.name != card.parts[part]:
            raise SeldEdgeError(
                f"{parts[part]}: the {part} part of {model} must be a {card.parts[part]}, not {system.name}"
            )
        systems[part], metas[part] = system, meta
    first, *rest = card.parts
    for part in rest:
        for key, read in (
            ("class names", lambda m: m.get("class_names")),
            ("window (chunk_seconds)", chunk_seconds_of),
        ):
            if read(metas[part]) != read(metas[first]):
                raise SeldEdgeError(f"{parts[part]} and {parts[first]} differ in their {key}: they cannot be composed")
    composite = CompositeSystem(model, systems)
    info = {
        "class_names": metas[first]["class_names"],
        "postprocess": metas[first].get("postprocess", {}),
        "train_config": {"chunk_seconds": chunk_seconds_of(metas[first])},
        "composed_from": {
            part: {
                "checkpoint": str(parts[part]),
                "sha256": file_sha256(resolve_checkpoint(parts[part]).with_suffix(".safetensors")),
            }
            for part in card.parts
        },
    }
    stem = Path(out_dir) / "best"
    save_checkpoint(stem, composite, info)
    return stem
