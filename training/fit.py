"""`python -m training.fit --model NAME --data DIR --out RUN_DIR [--epochs N] [--max-minutes M]
[--config FILE] [--device cpu|cuda] [--resume] [key=value ...]`

One epoch = every training clip once in 5 s chunks at fresh random offsets; validation after every
epoch with the DCASE metric; the best checkpoint by SELD score (F for metrics without one) is kept.
``--max-minutes`` works like Ultralytics' ``time=``: after the first epoch the number of epochs is
planned to fit the budget, and the plan changes only when the remaining time no longer holds it (or
holds 10 % more); the learning rate continues from where it is when it does. Training stops within
an epoch when the next batch and the validation after it would end past the budget, and always ends
with a validation. ``batch_size=auto`` measures the batch that fits the memory (training.memory); an
allocation failure ends the run with one line saying what to lower, its folder resumable.
Training stages: ``init_from`` starts from another run's weights (``freeze`` keeps some fixed) and
``patience`` stops when validation has stopped improving; a two-stage recipe is two runs.
Multi-GPU / multi-node: launch with ``torchrun``; DistributedDataParallel and a DistributedSampler are
used whenever WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA).
"""

import csv
import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from runtime.pipeline import grid_outputs
from seld_edge.errors import USER_ERROR_EXIT_CODE, SeldEdgeError, user_message
from seld_edge.formats import Event
from seld_edge.formats.classes import STARSS23_CLASSES
from seld_edge.io import OutputSet, check_writable
from seld_edge.metrics import evaluate, selection_name, selection_score
from seld_edge.metrics.axes import AxisAgreementCounter
from seld_edge.models import SeldSystem, network_card
from seld_edge.models.system import system_metadata
from seld_edge.postprocess import PostProcessing, tune_thresholds
from seld_edge.process import keep_freed_memory
from training.augment import build_augmentations
from training.autocast_check import autocast_faults
from training.checkpoint import (
    load_checkpoint,
    load_weights,
    read_checkpoint,
    read_resume_state,
    save_checkpoint,
    save_resume_state,
)
from training.config import TrainConfig, resolve_config
from training.data import ChunkDataset, ClipData, Normalizer, load_clips
from training.losses import loss_schedule
from training.memory import fit_batch_size, is_out_of_memory
from training.predict import TorchModel


class Schedule:
    """Warm-up then cosine/linear decay to ``end_factor`` over a total step count that may be re-planned.

    Its attributes are its whole state: LambdaLR saves and restores them with the scheduler.
    """

    def __init__(self, kind: str, total_steps: int, warmup_steps: int, end_factor: float = 0.01) -> None:
        self.kind, self.total_steps, self.warmup_steps = kind, max(1, total_steps), warmup_steps
        self.end_factor = end_factor
        # The decay's progress is anchor_progress at anchor_step and reaches 1 at total_steps.
        self.anchor_step, self.anchor_progress = warmup_steps, 0.0

    def progress(self, step: int) -> float:
        span = max(1, self.total_steps - self.anchor_step)
        return min(1.0, self.anchor_progress + (1.0 - self.anchor_progress) * (step - self.anchor_step) / span)

    def replan(self, step: int, total_steps: int) -> None:
        """End the decay at total_steps instead, continuing from where it is at step: the learning rate
        does not jump, it falls (or holds) at the pace the remaining steps allow."""
        if step > self.anchor_step:
            self.anchor_step, self.anchor_progress = step, self.progress(step)
        self.total_steps = max(total_steps, self.anchor_step + 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = self.progress(step)
        if self.kind == "cosine":
            return self.end_factor + (1.0 - self.end_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.kind == "linear":
            return 1.0 - (1.0 - self.end_factor) * progress
        return 1.0


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        keep_freed_memory()
        self.config = config
        self.out = Path(config.out)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.main = self.rank == 0
        self.device = self._device()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self._seed(config.seed + self.rank)
        self.card = network_card(config.model)
        self.feature_config = self.card.feature_config()
        self.num_classes = config.model_args.get("num_classes", self.card.defaults.get("num_classes"))
        self.class_names = list(STARSS23_CLASSES[: self.num_classes])
        self.train_clips, self.val_clips = self._load_data()
        normalizer = Normalizer.fit(self.train_clips)
        self.system = SeldSystem(config.model, config.model_args, normalizer.mean, normalizer.std)
        if config.init_from is not None:
            self._init_from(config.init_from, config.init_strict)
        self.system.to(self.device)
        self._freeze(config.freeze)
        self.format = self.system.format
        self.losses = loss_schedule(self.format, config)
        dropped = sum(self.format.dropped(c.events) for c in self.train_clips)
        if dropped and self.main:
            tqdm.write(f"note: {dropped} training events are more than the {self.format.name} format holds in their "
                       "frame (too many simultaneous or same-class events); training leaves them out")  # fmt: skip
        self.postprocess = PostProcessing.from_dict(config.postprocess)
        self.dataset = ChunkDataset(
            self.train_clips,
            self.feature_config,
            self.card.label_rate_hz,
            config.chunk_seconds,
            config.train_hop_seconds,
            self.format,
            self.num_classes,
            augment=build_augmentations(config.augment, self.feature_config.kind),
            seed=config.seed,
        )
        self.amp = config.amp and self.device.type == "cuda"
        self.autocast = self._autocast_dtype(config)
        self.batch_size = self._batch_size(resume)
        self.config = config = replace(config, batch_size=self.batch_size)  # config.json records the number
        self.model = DistributedDataParallel(self.system) if self.world > 1 else self.system
        optimizer_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        trainable = [p for p in self.system.parameters() if p.requires_grad]
        # Fused: one kernel updates every tensor, where the default loops over them with several ops each.
        # Same arithmetic; on the 2-core machine mff_einv2_tiny's 794 tensors took 55 ms a step, fused 11 ms.
        self.optimizer = optimizer_cls(trainable, lr=config.lr, weight_decay=config.weight_decay, fused=True)
        steps = self._steps_per_epoch()
        self.schedule = Schedule(
            config.scheduler, steps * config.epochs, round(config.warmup_epochs * steps), config.lr_end_factor
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epochs = config.epochs
        self.start_epoch, self.best, self.elapsed, self.best_epoch = 0, math.inf, 0.0, 0
        # Timing for the budget (rank 0's clock on every rank) and what validation detected.
        self.planned, self.epoch_seconds, self.batch_seconds, self.validation_seconds = False, [], 0.0, 0.0
        self.detections: tuple[int, int] = (0, 0)  # (predicted, reference) events in the last validation
        # How each axis of the predicted directions follows the reference's in the last validation (outside
        # the metric, in metrics.csv): a network that drops an axis shows a correlation near 0 there.
        self.axes: dict[str, float] = {}
        self.best_detections: tuple[int, int] | None = None
        if resume:
            self._resume()

    # ---------------------------------------------------------------------------------- set-up
    def _device(self) -> torch.device:
        wanted = self.config.device
        if wanted == "cuda" and not torch.cuda.is_available():
            raise SeldEdgeError("--device cuda asked for, but torch sees no CUDA device")
        if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()):
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cpu")

    def _autocast_dtype(self, config: TrainConfig) -> torch.dtype | None:
        """float16 on CUDA (``amp``), bfloat16 on a CPU with native bfloat16 (``cpu_amp``), else None (float32);
        float32 too where a layer computes wrongly under autocast on this machine (training.autocast_check)."""
        if self.amp:
            dtype = torch.float16
        elif not config.cpu_amp or self.device.type != "cpu":
            return None
        elif not cpu_has_native_bfloat16():
            if self.main:
                tqdm.write("note: cpu_amp asked for, but this CPU has no native bfloat16 (AMX or AVX512-BF16) that "
                           "this system reports; training in float32")  # fmt: skip
            return None
        else:
            dtype = torch.bfloat16
        features, _ = self.dataset[0]
        faults = autocast_faults(self.system, (features[None].to(self.device),), self.device.type, dtype)
        if faults:
            # Every rank sees the same weights and sample, so every rank decides the same.
            if self.main:
                named = ", ".join(f"{name} (relative error {error:.2f})" for name, error in faults)
                precision = str(dtype).removeprefix("torch.")
                tqdm.write(f"note: {precision} autocast computes {named} wrongly on this machine (rounding alone "
                           "gives below 0.01); training in float32")  # fmt: skip
            return None
        return dtype

    @staticmethod
    def _seed(seed: int) -> None:
        """Model init and dropout; data randomness uses explicit numpy Generators seeded per epoch."""
        torch.manual_seed(seed)

    def _init_from(self, source: str, strict: bool) -> None:
        """Start from another run's weights, the normaliser included (the weights were trained under it).

        Anything that does not fit is named; with init_strict (the default) that is an error, and so is a
        run of the same model whose settings differ from the source's where its weights fit all the same
        (a pooling, an activation): they would load without a word into a network they were not trained in.
        """
        stem, meta, state = read_checkpoint(source)
        problems = load_weights(self.system, state, f"{stem}.safetensors", strict=strict)
        if strict and meta["model"] == self.system.name:
            self._check_same_settings(stem, meta["model_args"])
        if self.main:
            tqdm.write(f"initialised from {stem}" + (f"; not loaded: {'; '.join(problems)}" if problems else ""))

    def _check_same_settings(self, stem: Path, trained: dict[str, Any]) -> None:
        card = self.system.card
        trained = {**card.settings_added, **trained}  # a checkpoint from before a setting was built without it
        mine = self.system.model_args
        differ = [key for key in mine if key in trained and key not in card.init_args
                  and json.dumps(trained[key]) != json.dumps(mine[key])]  # fmt: skip
        if differ:
            given = ", ".join(f"{key}={json.dumps(trained[key])}" for key in differ)
            built = ", ".join(f"{key}={json.dumps(mine[key])}" for key in differ)
            raise SeldEdgeError(
                f"init_from: {stem} was trained with {given}, this run builds {built}; give "
                + " ".join(f"model.{key}={json.dumps(trained[key])}" for key in differ)
                + " to train the same network on, or init_strict=false to load its weights anyway"
            )

    def _freeze(self, prefixes: list[str]) -> None:
        """Keep the parameters under each prefix fixed (names as in the checkpoint, with or without 'net.')."""
        names = [name for name, _ in self.system.named_parameters()]
        for prefix in prefixes:
            full = prefix if prefix.startswith("net.") else f"net.{prefix}"
            frozen = [p for name, p in self.system.named_parameters() if name == full or name.startswith(full + ".")]
            if not frozen:
                modules = sorted({name.split(".")[1] for name in names})
                raise SeldEdgeError(f"freeze: no parameters under {prefix!r} (modules: {', '.join(modules)})")
            for parameter in frozen:
                parameter.requires_grad_(False)

    def _batch_size(self, resume: bool) -> int:
        """config.batch_size, or for ``auto`` the largest batch up to max_batch_size (else the training set)
        whose forward and backward pass fits the memory (training.memory). A resumed run keeps the batch
        its config.json recorded. Every rank takes the smallest choice."""
        config = self.config
        if config.batch_size != "auto":
            return config.batch_size
        saved = self.out / "config.json"
        if resume and saved.is_file() and isinstance(json.loads(saved.read_text()).get("batch_size"), int):
            return json.loads(saved.read_text())["batch_size"]
        chunks = self._chunks_per_rank()
        limit = min(config.max_batch_size or chunks, chunks)
        if config.max_batch_size is None or limit < config.max_batch_size:
            limit_name = f"the {chunks} training chunks"
        elif config.max_batch_size == self.card.training.get("max_batch_size"):
            limit_name = f"the {config.model} card's {limit}"
        else:
            limit_name = f"max_batch_size {limit}"
        features, targets = self.dataset[0]
        loss_fn = self.losses.at(0, config.epochs)

        def step(batch: int) -> None:
            x = features[None].expand(batch, *features.shape).contiguous().to(self.device)
            with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                outputs = self.system(x)
            truth = {k: v[None].expand(batch, *v.shape).to(self.device) for k, v in targets.items()}
            loss_fn({k: v.float() for k, v in outputs.items()}, truth).backward()
            self.system.zero_grad(set_to_none=True)

        # The measurement trains nothing: weights, batch-norm statistics and random state are put back.
        state = {k: v.clone() for k, v in self.system.state_dict().items()}
        rng = torch.get_rng_state()
        self.system.train()
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if self.device.type == "cpu" else 1
        fit = fit_batch_size(step, limit, self.device, share_with=local_ranks)
        self.system.load_state_dict(state)
        torch.set_rng_state(rng)
        chosen = torch.tensor([fit.batch_size], device=self.device)
        if self.world > 1:
            dist.all_reduce(chosen, op=dist.ReduceOp.MIN)
        if self.main:
            agreed = "" if chosen.item() == fit.batch_size else f"; {chosen.item()} on every rank"
            tqdm.write(fit.describe(limit_name) + agreed)
        return int(chosen.item())

    def _load_data(self) -> tuple[list[ClipData], list[ClipData]]:
        cfg = self.config

        def load(progress: bool) -> list[ClipData]:
            roots = [cfg.data] if isinstance(cfg.data, str) else cfg.data
            config, classes = self.feature_config, self.num_classes
            return [clip for root in roots for clip in load_clips(root, config, classes, cfg.cache_dir, progress)]

        if self.world > 1:  # rank 0 fills the feature cache, the others read it
            clips = load(True) if self.main else None
            dist.barrier()
            clips = clips if self.main else load(False)
        else:
            clips = load(True)
        train = [c for c in clips if c.clip.split == "train"]
        val = [c for c in clips if c.clip.split == cfg.val_split]
        if not train:
            raise SeldEdgeError(f"{cfg.data}: no training clips (folders whose name contains 'train')")
        if not val:
            raise SeldEdgeError(f"{cfg.data}: no validation clips in split {cfg.val_split!r}")
        return train, val

    def _loader(self, epoch: int) -> DataLoader:
        self.dataset.set_epoch(epoch)
        sampler = DistributedSampler(self.dataset, seed=self.config.seed) if self.world > 1 else None
        if sampler is not None:
            sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(self.config.seed + epoch)
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=sampler is None, sampler=sampler,
                          num_workers=self.config.num_workers, generator=generator,
                          drop_last=self._chunks_per_rank() >= self.batch_size)  # fmt: skip

    # ------------------------------------------------------------------------------- the loop
    def fit(self) -> dict[str, Any]:
        budget = None if self.config.max_minutes is None else self.config.max_minutes * 60.0
        epoch, scores = self.start_epoch, {}
        while epoch < self.epochs:
            started, elapsed_before = time.perf_counter(), self.elapsed
            loss = self._train_epoch(epoch, budget)
            validation_started = time.perf_counter()
            scores = self._validate()
            self.validation_seconds = time.perf_counter() - validation_started
            self.elapsed += time.perf_counter() - started
            self._sync_clock()
            self.epoch_seconds.append(self.elapsed - elapsed_before)
            self._end_epoch(epoch, loss, scores)
            if self.best_epoch == epoch + 1:
                self.best_detections = self.detections
            epoch += 1
            if self._out_of_patience(epoch):
                break
            if budget is not None:
                if self.elapsed + self.batch_seconds + self.validation_seconds > budget:
                    break  # not even one more batch and its validation would end within the budget
                self._replan(epoch, budget)
        if self.main and self.config.tune_thresholds:
            self._tune_thresholds()
        if self.main:
            self._warn_if_nothing_detected()
        if self.world > 1:
            dist.barrier()  # ranks leave together: tearing gloo down under a busy rank 0 aborted rank 1
            dist.destroy_process_group()
        return {"best": self.best, "epochs": epoch, "last": scores, "minutes": self.elapsed / 60.0}

    def _out_of_patience(self, epochs_done: int) -> bool:
        """patience: validation has not improved for that many epochs (every rank sees rank 0's verdict)."""
        if self.config.patience is None:
            return False
        stop = torch.tensor([float(epochs_done - self.best_epoch >= self.config.patience)], device=self.device)
        if self.world > 1:
            dist.broadcast(stop, src=0)
        if stop.item() and self.main:
            tqdm.write(f"stopping: no improvement for {self.config.patience} epochs (best at epoch {self.best_epoch})")
        return bool(stop.item())

    def _train_epoch(self, epoch: int, budget: float | None) -> float:
        self.model.train()
        loss_fn = self.losses.at(epoch, self.epochs)
        if self.main and (epoch == 0 or loss_fn != self.losses.at(epoch - 1, self.epochs)):
            tqdm.write(f"loss from epoch {epoch + 1}: {loss_fn.describe()}")
        losses = []
        start = last = time.perf_counter()
        # With a budget, the first epoch's total is not known until its time is (the plan follows it).
        desc = f"epoch {epoch + 1}" if budget is not None and not self.planned else f"epoch {epoch + 1}/{self.epochs}"
        bar = tqdm(self._loader(epoch), desc=desc, unit="batch", disable=not self.main)
        for features, targets in bar:
            features = features.to(self.device, non_blocking=True)
            targets = {k: v.to(self.device, non_blocking=True) for k, v in targets.items()}
            with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                outputs = self.model(features)
            loss = loss_fn({k: v.float() for k, v in outputs.items()}, targets)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.config.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.system.parameters(), self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            now = time.perf_counter()
            self.batch_seconds, last = now - last, now
            if budget is not None and self.world == 1:
                # Out of time: stop mid-epoch, still validate and checkpoint (ranks would disagree). The
                # check looks ahead: would the next batch, as long as this one, and the validation after
                # it (as long as the last one) end past the budget?
                if self.elapsed + (now - start) + self.batch_seconds + self.validation_seconds > budget:
                    break
        return float(np.mean(losses)) if losses else math.nan

    def _validation_outputs(self, system: SeldSystem) -> list[tuple[dict, list[Event]]]:
        """Grid outputs of every validation clip with its reference events, completed by the reference where
        the format predicts only part of SELD (a SED-only or DOA-only network: OutputFormat.oracle)."""
        system.eval()
        meta = system_metadata(system, self.class_names, self.config.chunk_seconds, self.postprocess)
        model = TorchModel(system, meta)
        completed = []
        for clip in self.val_clips:
            outputs = grid_outputs(
                model, {meta.inputs[0].name: clip.features}, hop_seconds=self.config.eval_hop_seconds
            )
            completed.append((self.format.oracle(outputs, clip.events, self.num_classes), clip.events))
        return completed

    def _validate(self) -> dict[str, float]:
        if not self.main:
            return {}
        pairs = [
            (events, self.postprocess.to_events(outputs, fmt, self.num_classes))
            for (fmt, outputs), events in self._validation_outputs(self.system)
        ]
        self.detections = (sum(len(p) for _, p in pairs), sum(len(r) for r, _ in pairs))
        self.axes = validation_axes(pairs)
        return evaluate(pairs, metric=self.config.metric, num_classes=self.num_classes)

    def _warn_if_nothing_detected(self) -> None:
        """One line when the best checkpoint finds nothing on validation: F = 0 (its tuned thresholds' F
        when tune_thresholds is set), though the references hold events."""
        path = self.out / "best.json"
        if self.best_detections is None or not path.is_file():
            return
        predicted, reference = self.best_detections
        if reference == 0 or json.loads(path.read_text())["scores"].get("F", math.nan) > 0:
            return
        found = "no event predicted" if predicted == 0 else f"{predicted} events predicted, none right: F 0"
        tqdm.write(
            f"warning: the best checkpoint (epoch {self.best_epoch}) detects nothing on validation ({found}, "
            f"{reference} in the references): train longer (more --max-minutes or --epochs), check that the "
            "loss falls, or lower the activity threshold (postprocess.thresholds=0.3, or tune_thresholds=true)",
            file=sys.stderr,
        )

    def _tune_thresholds(self) -> None:
        """Per-class thresholds for the best checkpoint, chosen on validation outputs, saved in it."""
        system, meta = load_checkpoint(self.out / "best", device=str(self.device))
        completed = self._validation_outputs(system)
        fmt = completed[0][0][0]
        clips = [(outputs, events) for (_, outputs), events in completed]
        tuned = tune_thresholds(clips, fmt, self.num_classes, self.config.metric, base=self.postprocess)
        scores = evaluate([(events, tuned.to_events(out, fmt, self.num_classes)) for out, events in clips],
                          metric=self.config.metric, num_classes=self.num_classes)  # fmt: skip
        info = {k: meta[k] for k in ("class_names", "epoch", "train_config")}
        save_checkpoint(self.out / "best", system, {**info, "postprocess": tuned.to_dict(), "scores": scores,
                                                    "scores_untuned": meta["scores"]})  # fmt: skip
        tqdm.write(f"tuned thresholds {tuned.thresholds}: " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))

    def _sync_clock(self) -> None:
        """Every rank takes rank 0's times (its clock includes validation), so all plan and stop alike."""
        if self.world > 1:
            times = [self.elapsed, self.batch_seconds, self.validation_seconds]
            clock = torch.tensor(times, dtype=torch.float64, device=self.device)
            dist.broadcast(clock, src=0)
            self.elapsed, self.batch_seconds, self.validation_seconds = clock.tolist()

    def _replan(self, done: int, budget: float) -> None:
        """Plan the epochs to fit the budget: first after one epoch; after that only when the remaining
        time no longer holds the plan (then by no more than it must) or holds 10 % more epochs, so that
        jitter in epoch times leaves it alone. The learning-rate schedule follows without a jump.

        An epoch's time is the mean of the last three. Every rank computes the same plan from rank 0's clock.
        """
        recent = self.epoch_seconds[-3:]
        per_epoch = sum(recent) / len(recent)
        remaining = budget - self.elapsed
        room = int(remaining / per_epoch)  # more epochs the remaining time holds
        plan = max(done + 1, done + room)
        keep = self.planned and self.epochs <= done + room <= 1.1 * self.epochs
        if self.main:
            tqdm.write(f"time: {self.elapsed / 60:.1f} of {budget / 60:.1f} min, {per_epoch / 60:.2f} min per "
                       f"epoch: room for {room} more; plan {self.epochs if keep else plan} epochs")  # fmt: skip
        if keep or plan == self.epochs:
            self.planned = True
            return
        self.epochs, self.planned = plan, True
        self.schedule.replan(self.scheduler.last_epoch, self._steps_per_epoch() * plan)

    def _chunks_per_rank(self) -> int:
        return math.ceil(len(self.dataset) / self.world)

    def _steps_per_epoch(self) -> int:
        """Whole batches only: an epoch drops its partial last batch (``_loader``), unless it has no whole one.

        The chunks' random offsets change their number from epoch to epoch, so some epochs end with a lone
        sample, and a batch norm over pooled features (GLFER-Net's attention branches) cannot train on a
        batch of one: ``Expected more than 1 value per channel when training``, 14 epochs into a run.
        """
        return max(self._chunks_per_rank() // self.batch_size, 1)

    # --------------------------------------------------------------------------- bookkeeping
    def _end_epoch(self, epoch: int, loss: float, scores: dict[str, float]) -> None:
        """The epoch's files as one set: checkpoints, resume state, metrics.csv and config.json all move into
        the run folder together, or (a full disk) none does and the previous epoch's stay whole."""
        if not self.main:
            return
        info = {"epoch": epoch + 1, "train_loss": loss, "lr": self.scheduler.get_last_lr()[0],
                "minutes": self.elapsed / 60.0, **scores, **self.axes}  # fmt: skip
        score = selection_score(scores)
        checkpoint_info = {"class_names": self.class_names, "scores": scores,
                           "epoch": epoch + 1, "postprocess": self.postprocess.to_dict(),
                           "train_config": asdict(self.config)}  # fmt: skip
        improved = score < self.best
        best, best_epoch = (score, epoch + 1) if improved else (self.best, self.best_epoch)
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict(), "epoch": epoch + 1, "best": best,
                 "best_epoch": best_epoch, "elapsed": self.elapsed, "epochs": self.epochs}  # fmt: skip
        with OutputSet(self.out) as outputs:
            if improved:
                save_checkpoint(self.out / "best", self.system, checkpoint_info, outputs)
            save_checkpoint(self.out / "last", self.system, checkpoint_info, outputs)
            save_resume_state(self.out / "last_state", state, outputs)
            outputs.write_text(self.out / "metrics.csv", _metrics_text(self.out / "metrics.csv", info))
            outputs.write_text(self.out / "config.json", self.config.to_json())
        self.best, self.best_epoch = best, best_epoch
        self._tensorboard(info)
        axes = " ".join(f"{k[0]} {v:.2f}" for k, v in self.axes.items() if not math.isnan(v))
        tqdm.write(f"epoch {epoch + 1}: loss {loss:.4f}  " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items())
                   + (f"  (axis correlation {axes})" if axes else ""))  # fmt: skip

    def _tensorboard(self, row: dict[str, Any]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        with SummaryWriter(self.out / "tensorboard") as tb:
            for key, value in row.items():
                if key != "epoch":
                    tb.add_scalar(key, value, row["epoch"])

    def _resume(self) -> None:
        """Continue the run in the run folder: its last weights, and the optimizer, scheduler and gradient
        scaler exactly where they were. The model and its settings must be the run's."""
        stem = self.out / "last_state"
        if not stem.with_suffix(".json").is_file():
            if stem.with_suffix(".pt").is_file():
                raise SeldEdgeError(
                    f"{stem}.pt: resume state of an older seld-edge (a pickle, which is never loaded); start a new "
                    f"run, with init_from={self.out / 'last.json'} to keep its weights"
                )
            raise SeldEdgeError(f"{self.out}: nothing to resume (no last_state.json)")
        stem_last, meta, weights = read_checkpoint(self.out / "last.json", device=str(self.device))
        changed = _changed_settings(meta, self.system)
        if changed:
            raise SeldEdgeError(
                f"--resume: {', '.join(changed)} (the run's setting first); resume with the run's settings, "
                "or start a new run (init_from= keeps weights)"
            )
        load_weights(self.system, weights, f"{stem_last}.safetensors", strict=True)
        state = read_resume_state(stem, device=str(self.device))
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            counters = {key: state[key] for key in ("epoch", "best", "elapsed", "best_epoch", "epochs")}
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise SeldEdgeError(f"{stem}.json: the resume state does not fit this run ({err})") from None
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in counters.values()):
            raise SeldEdgeError(f"{stem}.json: the resume state's counters are not numbers")
        self.start_epoch, self.best, self.elapsed = int(counters["epoch"]), float(counters["best"]), counters["elapsed"]
        self.best_epoch = int(counters["best_epoch"])
        self.epochs = max(self.epochs, int(counters["epochs"]))


def cpu_has_native_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU multiplies bfloat16 in hardware (x86 AMX or AVX512-BF16), from Linux's CPU flags.

    Elsewhere bfloat16 is converted to float32 op by op, and autocast makes training slower, not faster.
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "amx_bf16" in flags or "avx512_bf16" in flags


def validation_axes(pairs: list[tuple[list[Event], list[Event]]]) -> dict[str, float]:
    """x_corr, y_corr, z_corr: seld_edge.metrics.axes over (reference, predicted) event pairs, as
    ``seld-edge eval --axes`` gives them for CSVs."""
    counter = AxisAgreementCounter()
    for reference, prediction in pairs:
        counter.update(reference, prediction)
    return {f"{axis}_corr": value for axis, value in counter.result().correlation.items()}


def _metrics_text(path: Path, row: dict[str, Any]) -> str:
    """metrics.csv with row added: the earlier rows as they are (the file is rewritten whole, in the epoch's set)."""
    earlier = path.read_text() if path.is_file() else ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(row))
    if not earlier:
        writer.writeheader()
    writer.writerow(row)
    return earlier + buffer.getvalue()


def _changed_settings(meta: dict[str, Any], system: SeldSystem) -> list[str]:
    """The model and model settings that differ between a run's checkpoint and the system built now."""
    if meta["model"] != system.name:
        return [f"model {meta['model']} != {system.name}"]
    ours = json.loads(json.dumps(system.model_args, default=str))  # as the checkpoint stores them (lists, not tuples)
    theirs = meta["model_args"]
    return [f"model.{key} {theirs.get(key)!r} != {ours.get(key)!r}" for key in sorted(set(ours) | set(theirs))
            if ours.get(key) != theirs.get(key)]  # fmt: skip


def out_of_memory_advice(config: TrainConfig, trainer: Trainer | None) -> str:
    """The one line an allocation failure ends training with: what to lower, and how to go on. Checkpoints
    are written whole at the end of an epoch, so the last finished epoch's are intact."""
    batch = trainer.batch_size if trainer is not None else config.batch_size
    last = Path(config.out) / "last.json"
    finished = json.loads(last.read_text()).get("epoch") if last.is_file() else None
    then = (
        f"--resume continues {config.out} after epoch {finished}"
        if finished
        else "no epoch had finished, so run it again as it was"
    )
    return (
        f"out of memory training with batch_size {batch} on {config.chunk_seconds:g} s chunks: lower batch_size "
        f"(batch_size=auto fits it to the free memory) or chunk_seconds; {then}"
    )


def train(
    model: str,
    data: list[str],
    out: str,
    config_file: str | None = None,
    overrides: list[str] | None = None,
    resume: bool = False,
    **flags: Any,
) -> dict[str, Any]:
    """One training run as `seld-edge train` / `python -m training.fit` start it; ``flags`` are the
    settings that have their own option (epochs, max_minutes, device), None where not given. An
    allocation failure is a user error: one line saying what to lower and how to go on."""
    data_arg = data[0] if len(data) == 1 else list(data)
    config = resolve_config(model, data_arg, out, config_file, overrides, **flags)
    run_dir = Path(config.out)
    if not resume and (run_dir / "last.json").exists():
        raise SeldEdgeError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another -o")
    if int(os.environ.get("RANK", "0")) == 0:
        check_writable(run_dir)  # before reading any data; the run folder appears with the first epoch's files
    trainer = None
    try:
        trainer = Trainer(config, resume=resume)
        config = trainer.config
        result = trainer.fit()
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        raise SeldEdgeError(out_of_memory_advice(config, trainer)) from None
    if trainer.main:
        print(f"best {selection_name(config.metric)} {result['best']:.4f} after "
              f"{result['epochs']} epochs ({result['minutes']:.1f} min); checkpoints in {config.out}")  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`python -m training.fit`: the `seld-edge train` command (training/cli.py) under its own name, so the
    two take the same options from one definition."""
    import click

    from training.cli import train_command

    try:
        result = train_command.main(args=argv, prog_name="python -m training.fit", standalone_mode=False)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.Abort:
        sys.exit(1)
    except (SeldEdgeError, OSError) as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    if not isinstance(result, dict):  # --help: click's exit code
        sys.exit(result)
    return result


if __name__ == "__main__":
    main()
