"""The fit loop end to end on tiny synthetic data: learning, checkpoints, resume, budget, DDP, predict."""

import csv
import json
import socket
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from seld_edge.errors import SeldEdgeError  # noqa: E402
from seld_edge.metrics.axes import AxisAgreementCounter  # noqa: E402
from seld_edge.models import SeldSystem  # noqa: E402
from seld_edge.synth import generate_dataset  # noqa: E402
from tests.faults import one_line_error  # noqa: E402
from training import fit as fit_module  # noqa: E402
from training.autocast_check import autocast_faults  # noqa: E402
from training.checkpoint import load_checkpoint  # noqa: E402
from training.config import resolve_config  # noqa: E402
from training.fit import Schedule, Trainer, main  # noqa: E402

FAST = ["batch_size=4", "model.rnn_size=32", "model.filters=16", "eval_hop_seconds=5"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fitdata")
    generate_dataset(root, n_train=2, n_test=1, seconds=10.0, seed=2, progress=False)
    return root


def run(data, out, *extra):
    return main(["--model", "seldnet", "--data", str(data), "--out", str(out), "--device", "cpu", *FAST, *extra])


# FFMamba at its published widths on 2 s chunks: a training step takes about a second on one core.
MAMBA_FAST = ["batch_size=4", "chunk_seconds=2", "model.rnn_size=32", "eval_hop_seconds=2"]
NO_AUGMENT = {"seldnet": ["augment.foa_rotation=false"], "ffmamba_tiny": ["augment.foa_rotation=false"]}


# FFMamba's blocks learn here at their tiny scale (the same blocks); the published size trains through the
# fit command below.
@pytest.mark.parametrize(("name", "fast"), [("seldnet", FAST), ("ffmamba_tiny", ["batch_size=4"])])
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(data, tmp_path, name, fast):
    config = resolve_config(name, str(data), str(tmp_path), overrides=[*fast, "lr=3e-3", *NO_AUGMENT[name]])
    trainer = Trainer(config)
    loss_fn = trainer.losses.at(0, trainer.epochs)
    features, targets = next(iter(trainer._loader(0)))

    def loss() -> float:
        trainer.system.eval()
        with torch.no_grad():
            return loss_fn(trainer.system(features), targets).item()

    before = loss()
    trainer.system.train()
    for _ in range(15):
        value = loss_fn(trainer.system(features), targets)
        trainer.optimizer.zero_grad()
        value.backward()
        trainer.optimizer.step()
    after = loss()
    print(f"{name} fixed-batch loss {before:.4f} -> {after:.4f}")
    assert after < 0.7 * before


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_the_fused_optimizer_steps_as_the_per_tensor_one(data, tmp_path, optimizer):
    """The trainer's optimizer is fused (one kernel for every tensor, for speed); its updates are the
    textbook per-tensor loop's, with weight decay, over several steps."""
    config = resolve_config("seldnet", str(data), str(tmp_path), overrides=[*FAST, f"optimizer={optimizer}",
                                                                            "weight_decay=0.05"])  # fmt: skip
    trainer = Trainer(config)
    assert trainer.optimizer.defaults["fused"] is True
    reference = SeldSystem("seldnet", config.model_args, trainer.system.mean, trainer.system.std)
    reference.load_state_dict(trainer.system.state_dict())
    loop = type(trainer.optimizer)(reference.parameters(), lr=config.lr, weight_decay=0.05, foreach=False)
    loss_fn = trainer.losses.at(0, trainer.epochs)
    features, targets = next(iter(trainer._loader(0)))
    trainer.system.eval(), reference.eval()  # no dropout: both see the same function
    for system, opt in ((trainer.system, trainer.optimizer), (reference, loop)):
        for _ in range(3):
            opt.zero_grad()
            loss_fn(system(features), targets).backward()
            opt.step()
    worst = max(
        (a - b).abs().max().item() for a, b in zip(trainer.system.parameters(), reference.parameters(), strict=True)
    )
    print(f"{optimizer}: fused vs per-tensor after 3 steps, max abs weight difference {worst:.2e}")
    assert worst < 1e-5


@pytest.mark.parametrize(
    ("flags", "native"),
    [("fpu sse avx512f amx_bf16 amx_tile", True), ("fpu avx512f avx512_bf16", True), ("fpu avx2 avx512f", False)],
)
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert fit_module.cpu_has_native_bfloat16(cpuinfo) is native
    assert fit_module.cpu_has_native_bfloat16(tmp_path / "absent") is False


@pytest.mark.parametrize("native", [True, False])
def test_cpu_amp_trains_in_bfloat16_only_where_the_cpu_has_it(data, tmp_path, monkeypatch, capsys, native):
    """cpu_amp autocasts the forward pass to bfloat16 on a CPU that computes it natively; elsewhere it
    would be emulated and slower, so training stays float32 and says so in one line."""
    monkeypatch.setattr(fit_module, "cpu_has_native_bfloat16", lambda: native)
    config = resolve_config("seldnet", str(data), str(tmp_path), overrides=[*FAST, "cpu_amp=true"], device="cpu")
    trainer = Trainer(config)
    seen = []
    conv = next(m for m in trainer.system.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    trainer._train_epoch(0, budget=None)
    note = "cpu_amp asked for, but this CPU has no native bfloat16" in capsys.readouterr().out
    assert (trainer.autocast, set(seen), note) == (
        (torch.bfloat16, {torch.bfloat16}, False) if native else (None, {torch.float32}, True)
    )
    assert all(p.dtype == torch.float32 and p.isfinite().all() for p in trainer.system.parameters())


class WrongUnderAutocast(torch.nn.Linear):
    """A layer whose autocast arithmetic is wrong, as oneDNN 3.12's is for some bfloat16 convolutions."""

    def forward(self, x):
        return super().forward(x) + (1.0 if torch.is_autocast_enabled("cpu") else 0.0)


def test_autocast_check_names_the_wrong_layer_and_leaves_the_module_as_it_was():
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), WrongUnderAutocast(16, 4), torch.nn.Dropout(0.5)
    ).train()
    statistics = net[1].running_mean.clone()
    faults = autocast_faults(net, (torch.randn(6, 8),), "cpu", torch.bfloat16)
    print("faults:", faults)
    assert [name for name, _ in faults] == ["2"] and faults[0][1] > 0.1
    assert net.training and torch.equal(net[1].running_mean, statistics)
    assert autocast_faults(net[:2], (torch.randn(6, 8),), "cpu", torch.bfloat16) == []


def test_cpu_amp_falls_back_to_float32_where_a_layer_is_wrong_under_autocast(data, tmp_path, monkeypatch, capsys):
    """A network that trained on a layer's wrong bfloat16 output would be of no use in float32."""

    class SystemWithAWrongLayer(SeldSystem):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.net.fc.__class__ = WrongUnderAutocast

    monkeypatch.setattr(fit_module, "cpu_has_native_bfloat16", lambda: True)
    monkeypatch.setattr(fit_module, "SeldSystem", SystemWithAWrongLayer)
    config = resolve_config("seldnet", str(data), str(tmp_path), overrides=[*FAST, "cpu_amp=true"], device="cpu")
    trainer = Trainer(config)
    out = capsys.readouterr().out
    print(out)
    assert trainer.autocast is None
    assert "note: bfloat16 autocast computes net.fc (relative error" in out and "training in float32" in out


def test_an_epoch_drops_a_partial_last_batch_unless_it_has_no_whole_one(data, tmp_path):
    """A lone last sample would fail a batch norm over pooled features (GLFER-Net's attention branches)."""
    trainer = Trainer(resolve_config("seldnet", str(data), str(tmp_path), overrides=FAST))
    chunks = len(trainer.dataset)
    for batch_size, sizes in ((chunks - 1, [chunks - 1]), (chunks // 2, [chunks // 2] * 2), (chunks + 3, [chunks])):
        trainer.batch_size = batch_size
        got = [len(features) for features, _ in trainer._loader(0)]
        print(f"{chunks} chunks, batch {batch_size}: batches of {got}")
        assert got == sizes and trainer._steps_per_epoch() == len(sizes)


def test_ffmamba_trains_through_the_fit_command(data, tmp_path):
    out = tmp_path / "run"
    argv = ["--model", "ffmamba", "--data", str(data), "--out", str(out), "--device", "cpu", *MAMBA_FAST]
    result = main([*argv, "--epochs", "1"])
    assert result["epochs"] == 1
    system, meta = load_checkpoint(out / "best.json")
    assert system.name == "ffmamba" and meta["train_config"]["model"] == "ffmamba"


def test_run_folder_holds_checkpoints_metrics_and_config_and_resumes(data, tmp_path):
    out = tmp_path / "run"
    result = run(data, out, "--epochs", "2")
    assert result["epochs"] == 2
    for name in ("best.json", "best.safetensors", "last.json", "last.safetensors", "last_state.json",
                 "last_state.safetensors", "config.json"):  # fmt: skip
        assert (out / name).is_file(), name
    meta = json.loads((out / "best.json").read_text())
    assert meta["model"] == "seldnet" and meta["output_format"] == "multi_accdoa" and len(meta["class_names"]) == 13
    assert set(meta["scores"]) == {"ER", "F", "LE", "LR", "SELD"}
    assert [i["feature_config"]["kind"] for i in meta["inputs"]] == ["foa_logmel_iv"]
    system, _ = load_checkpoint(out)
    assert system.model_args["rnn_size"] == 32
    with pytest.raises(SystemExit) as info:
        run(data, out, "--epochs", "3")
    assert info.value.code == 2
    result = run(data, out, "--epochs", "3", "--resume")
    assert result["epochs"] == 3
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["epoch", "1", "2", "3"]


def test_metrics_csv_logs_each_axis_agreement_of_the_validation(data, tmp_path, capsys):
    """Each epoch's row holds x_corr, y_corr and z_corr: seld_edge.metrics.axes over the validation's own
    (reference, predicted) pairs, so that a network dropping an axis shows while it trains."""
    config = resolve_config("seldnet", str(data), str(tmp_path / "run"), overrides=FAST, epochs=2, device="cpu")
    trainer = Trainer(config)
    trainer.fit()
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and {"x_corr", "y_corr", "z_corr"} <= set(rows[-1])
    pairs = [
        (events, trainer.postprocess.to_events(outputs, fmt, trainer.num_classes))
        for (fmt, outputs), events in trainer._validation_outputs(trainer.system)
    ]
    counter = AxisAgreementCounter()
    for reference, prediction in pairs:
        counter.update(reference, prediction)
    expected = counter.result()
    assert expected.pairs > 0, "the check needs validation frames where both sides have one event of a class"
    for axis in ("x", "y", "z"):
        logged, wanted = float(rows[-1][f"{axis}_corr"]), expected.correlation[axis]
        assert logged == pytest.approx(wanted, abs=1e-12, nan_ok=True)
    print(capsys.readouterr().out.splitlines()[-1])


def test_time_budget_stops_cleanly_with_a_validated_checkpoint(data, tmp_path):
    result = run(data, tmp_path / "budget", "--epochs", "1000", "--max-minutes", "0.05")
    assert 1 <= result["epochs"] < 1000
    assert (tmp_path / "budget" / "best.json").is_file() and result["last"]


def test_predict_then_eval_on_the_held_out_split(data, tmp_path, cli):
    from seld_edge.cli import main as cli_main

    run(data, tmp_path / "run", "--epochs", "1")
    audio = data / "foa_dev" / "dev-test-synth"
    result = cli.invoke(cli_main, ["predict", str(tmp_path / "run"), str(audio), "-o", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in (tmp_path / "pred").glob("*.csv")) == sorted(p.stem for p in audio.glob("*.wav"))
    result = cli.invoke(
        cli_main, ["eval", "--ref", str(data / "metadata_dev"), "--pred", str(tmp_path / "pred"), "--json"]
    )
    assert result.exit_code == 0 and set(json.loads(result.stdout)) == {"ER", "F", "LE", "LR", "SELD"}
    result = cli.invoke(cli_main, ["predict", str(tmp_path), str(audio), "-o", str(tmp_path / "p2")])
    assert result.exit_code == 2 and "not a seld-edge checkpoint" in result.output and not (tmp_path / "p2").exists()


@pytest.mark.parametrize("budget", [[], ["--max-minutes", "0.1"]], ids=["epochs", "time-budget"])
def test_ddp_with_gloo_on_two_cpu_processes(data, tmp_path, budget):
    """Two ranks; with a time budget they must agree on when to stop (rank 0's clock) or one would hang."""
    epochs = "2" if not budget else "200"
    with socket.socket() as probe:  # a free port: a fixed one can still be held by the previous run
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", port,
         "-m", "training.fit", "--model", "seldnet", "--data", str(data), "--out", str(tmp_path / "ddp"),
         "--device", "cpu", "--epochs", epochs, *budget, *FAST],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best SELD" in proc.stdout and proc.stdout.count("best SELD") == 1, "only rank 0 reports"
    assert (tmp_path / "ddp" / "best.safetensors").is_file()
    rows = (tmp_path / "ddp" / "metrics.csv").read_text().splitlines()
    reported = int(proc.stdout.split(" after ")[1].split()[0])
    assert len(rows) == 1 + reported, "one row per epoch, written by rank 0 only"
    assert reported == 2 if not budget else 1 <= reported < 200


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--model", "seldnett"], "unknown model 'seldnett'; did you mean seldnet"),
     (["--model", "seldnet", "colour=blue"], "unknown config key 'colour'")],
)  # fmt: skip
def test_bad_command_lines(data, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main([*args, "--data", str(data), "--out", str(tmp_path / "x")])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_data_folder_without_audio(tmp_path, capsys):
    (tmp_path / "foa_dev").mkdir()
    with pytest.raises(SystemExit):
        main(["--model", "seldnet", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert capsys.readouterr().err.strip().endswith("no audio files (.wav, .flac)")


def test_checkpoint_errors(tmp_path):
    (tmp_path / "best.json").write_text("{}")
    (tmp_path / "best.safetensors").write_bytes(b"nope")
    with pytest.raises(SeldEdgeError, match="not a seld-edge-checkpoint/1 checkpoint"):
        load_checkpoint(tmp_path)


def test_tuned_thresholds_are_stored_with_the_best_checkpoint(data, tmp_path):
    run(data, tmp_path / "tuned", "--epochs", "1", "tune_thresholds=true")
    meta = json.loads((tmp_path / "tuned" / "best.json").read_text())
    thresholds = meta["postprocess"]["thresholds"]
    assert isinstance(thresholds, list) and len(thresholds) == 13
    assert meta["scores"]["SELD"] <= meta["scores_untuned"]["SELD"], "tuning never scores worse than its start"


def test_models_command_lists_the_zoo(cli):
    from seld_edge.cli import main as cli_main

    result = cli.invoke(cli_main, ["models"])
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[1:]}
    assert rows["seldnet"][1:3] == ["0.737", "M"] and rows["seldnet"][-1] == "multi_accdoa"
    # MACs per 5 s clip as the runtime windows it: EINV2 25.1 G (the paper: 25), MFF-EINV2 81 G (84);
    # M2M-AST runs two 3 s windows of both networks (SED on each MIC capsule: 139 G a window).
    assert 24.5 < float(rows["einv2"][3]) < 25.5 and 78 < float(rows["mff_einv2"][3]) < 86
    assert rows["m2m_ast"][4] == "mic_logmel_ast,foa_logmel_iv_ast" and rows["m2m_ast"][5] == "sed_doa"
    assert float(rows["m2m_ast"][3]) == pytest.approx(2 * (139.23 + 35.22), rel=0.01)


def test_predict_with_rotation_tta_writes_the_same_files(data, tmp_path, cli):
    from seld_edge.cli import main as cli_main

    run(data, tmp_path / "run", "--epochs", "1")
    audio = next((data / "foa_dev" / "dev-test-synth").glob("*.wav"))
    result = cli.invoke(cli_main, ["predict", str(tmp_path / "run"), str(audio), "-o", str(tmp_path / "p"), "--tta"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / f"{audio.stem}.csv").is_file()


# ------------------------------------------------------------------ plan, budget, batch size, warnings


def test_a_replanned_schedule_continues_the_learning_rate_without_a_jump():
    """The machine slows at step 80 of 100: 5 steps are left instead of 20. The rate falls from where it is
    to the end in those 5 steps, evenly, where re-timing the whole decay jumped it to near its end."""
    schedule = Schedule("linear", 100, 0, end_factor=0.1)
    at_80 = schedule(80)
    schedule.replan(80, 85)
    steps = [schedule(s) for s in range(80, 86)]
    print("linear after the re-plan:", [f"{v:.3f}" for v in steps])
    assert steps[0] == pytest.approx(at_80) and steps[-1] == pytest.approx(0.1)
    assert np.allclose(np.diff(steps), -(at_80 - 0.1) / 5)
    schedule.replan(82, 200)  # and there is time again: it holds its value and falls more slowly
    assert schedule(82) == pytest.approx(steps[2]) and schedule(200) == pytest.approx(0.1)
    cosine = Schedule("cosine", 100, 10, end_factor=0.01)
    before = cosine(50)
    cosine.replan(50, 60)
    assert cosine(50) == pytest.approx(before) and cosine(60) == pytest.approx(0.01)
    assert all(cosine(s) >= cosine(s + 1) for s in range(50, 60))


def test_the_plan_holds_through_jitter_and_shrinks_only_as_far_as_the_time_requires(data, tmp_path, capsys):
    """Epoch times around 20 s, then the machine slows to 40 s, under a 600 s budget. By hand:
    after epoch 1 (21 s) 27 more fit: plan 28. Epochs 2-5 (mean of the last three ~20 s) would hold 29-30:
    within 10 % of 28, kept. Epoch 6 (mean 26.3 s, 460 s left): 17 more fit, plan 23; epoch 7 (mean 33 s,
    420 s left): 12 more, plan 19; epoch 8 (40 s, 380 s left): 9 more, plan 17; epoch 9: 8 more, kept."""
    trainer = Trainer(resolve_config("seldnet", str(data), str(tmp_path), overrides=FAST))
    steps_per_epoch = trainer._steps_per_epoch()
    plans = []
    times = [21, 19, 21, 20, 19, 40, 40, 40, 40]
    for done in range(1, len(times) + 1):
        trainer.epoch_seconds = times[:done]
        trainer.elapsed = sum(times[:done])
        step = done * steps_per_epoch
        rate = trainer.schedule(step)
        trainer.scheduler.last_epoch = step
        trainer._replan(done, budget=600.0)
        plans.append(trainer.epochs)
        assert trainer.schedule(step) == pytest.approx(rate), "the learning rate does not jump at a re-plan"
        assert trainer.schedule.total_steps == trainer.epochs * steps_per_epoch
    print("plans:", plans)
    assert plans == [28, 28, 28, 28, 28, 23, 19, 17, 17]
    assert "time: 4.3 of 10.0 min, 0.67 min per epoch: room for 8 more; plan 17 epochs" in capsys.readouterr().out


class FakeClock:
    """time for training.fit: a clock that moves only when a training batch runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_the_budget_is_checked_before_each_batch(data, tmp_path, monkeypatch):
    """Batches of 1 s (on a fake clock) under a 3.5 s budget: the third ends at 3 s, and a fourth would end
    past the budget, so training stops there (checking after each batch let the fourth run to 4 s)."""
    clock = FakeClock()
    monkeypatch.setattr(fit_module, "time", clock)
    config = resolve_config("seldnet", str(data), str(tmp_path), overrides=[*FAST, "batch_size=2"],
                            epochs=10, max_minutes=3.5 / 60)  # fmt: skip
    trainer = Trainer(config)
    forward = trainer.system.forward
    batch_ends = []

    def slow_forward(*features):
        if trainer.system.training:
            clock.now += 1.0
            batch_ends.append(clock.now)
        return forward(*features)

    monkeypatch.setattr(trainer.system, "forward", slow_forward)
    result = trainer.fit()
    print("training batches ended at", batch_ends)
    assert batch_ends == [1.0, 2.0, 3.0] and result["epochs"] == 1
    assert (tmp_path / "best.json").is_file(), "stopped mid-epoch, then validated and saved"


def test_a_best_checkpoint_that_detects_nothing_is_warned_about_in_one_line(data, tmp_path, capsys):
    run(data, tmp_path / "quiet", "--epochs", "1", "postprocess.thresholds=0.99")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    print(warnings)
    assert len(warnings) == 1
    assert "the best checkpoint (epoch 1) detects nothing on validation (no event predicted" in warnings[0]
    assert "train longer" in warnings[0] and "postprocess.thresholds" in warnings[0]


def test_an_allocation_failure_is_one_line_and_the_run_stays_resumable(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "oom"
    run(data, out, "--epochs", "1")
    forward = SeldSystem.forward

    def failing_forward(self, *features):
        if self.training:
            torch.empty(2**50, dtype=torch.uint8)  # the CPU allocator's own failure (a petabyte)
        return forward(self, *features)

    monkeypatch.setattr(SeldSystem, "forward", failing_forward)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run(data, out, "--epochs", "2", "--resume")
    assert info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    print(errors)
    assert len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith("error: out of memory training with batch_size 4 on 5 s chunks: lower batch_size")
    assert "chunk_seconds" in errors[0] and f"--resume continues {out} after epoch 1" in errors[0]
    assert json.loads((out / "last.json").read_text())["epoch"] == 1, "the last finished epoch's checkpoint"
    monkeypatch.undo()
    assert run(data, out, "--epochs", "2", "--resume")["epochs"] == 2


def test_auto_batch_size_keeps_the_largest_wanted_when_it_fits_and_trains_nothing(data, tmp_path, capsys):
    config = resolve_config("seldnet", str(data), str(tmp_path / "a"), overrides=[*FAST, "batch_size=auto",
                                                                                 "max_batch_size=4"])  # fmt: skip
    auto = Trainer(config)
    assert auto.batch_size == 4 and auto.config.batch_size == 4
    assert "batch size 4 (auto: max_batch_size 4 fits" in capsys.readouterr().out
    fixed = Trainer(resolve_config("seldnet", str(data), str(tmp_path / "f"), overrides=FAST))
    for (name, a), b in zip(auto.system.state_dict().items(), fixed.system.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{name} changed by measuring the batch size"


def test_ffmamba_fits_its_batch_to_the_memory_up_to_the_papers_60():
    config = resolve_config("ffmamba", "d", "o")
    assert (config.batch_size, config.max_batch_size) == ("auto", 60)


# --------------------------------------------------------------------------------------------------
# hostile or damaged checkpoints and resume states: one line each

ASSET = __import__("pathlib").Path(__file__).resolve().parents[1] / "seld_edge" / "assets" / "seldnet_synth"


def _edited_checkpoint(folder, meta_edit=None, weights_edit=None):
    from safetensors.torch import load_file, save_file

    folder.mkdir()
    meta = json.loads((ASSET / "best.json").read_text())
    (folder / "best.json").write_text(json.dumps(meta_edit(meta) if meta_edit else meta))
    weights = load_file(ASSET / "best.safetensors")
    save_file(weights_edit(weights) if weights_edit else weights, folder / "best.safetensors")
    return folder


def _nan_first(weights):
    name = next(k for k, v in weights.items() if v.is_floating_point() and k not in ("mean", "std"))
    return {**weights, name: torch.full_like(weights[name], float("nan"))}


@pytest.mark.parametrize(
    ("meta_edit", "weights_edit", "message"),
    [(lambda m: {k: v for k, v in m.items() if k != "model"}, None, "'model' is missing or not a str"),
     (lambda m: [], None, "not a seld-edge-checkpoint/1 checkpoint"),
     (lambda m: {**m, "model": 42}, None, "'model' is missing or not a str"),
     (lambda m: {**m, "train_config": {**m["train_config"], "chunk_seconds": "x"}}, None,
      "train_config.chunk_seconds must be a positive number, got 'x'"),
     (None, lambda w: {k: v for k, v in w.items() if k != "mean"}, "the weights have no 'mean'"),
     (None, lambda w: {**{k: v for k, v in w.items() if k != "net.fc.bias"}, "extra": torch.zeros(2),
                       "net.fc.weight": torch.zeros(3, 3)},
      "the weights do not fit seldnet (missing net.fc.bias; unexpected extra; net.fc.weight is (3, 3), the model's "
      "(128, 128))"),
     (None, _nan_first, "holds NaN or infinite values"),
     # these named no file (predict), or exported a model that run refuses (export)
     (lambda m: {**m, "class_names": ["a", "b"]}, None, "best.json: class_names: 2 names for the 13 classes"),
     (lambda m: {**m, "postprocess": 5}, None, "best.json: post-processing settings must be a mapping, got 5")],
    ids=["no model", "a list", "model 42", "chunk x", "no mean", "other tensors", "nan weights", "2 class names",
         "postprocess 5"],
)  # fmt: skip
@pytest.mark.parametrize("command", ["predict", "export"])
def test_damaged_checkpoints_are_one_line(tmp_path, cli, command, meta_edit, weights_edit, message):
    from seld_edge.cli import main as cli_main

    run = _edited_checkpoint(tmp_path / "run", meta_edit, weights_edit)
    generate_dataset(tmp_path / "d", n_train=0, n_test=1, seconds=2.0, seed=1, progress=False)
    wav = next((tmp_path / "d" / "foa_dev").rglob("*.wav"))
    args = [str(wav), "-o", str(tmp_path / "out")] if command == "predict" else ["-o", str(tmp_path / "m.onnx")]
    result = cli.invoke(cli_main, [command, str(run), *args])
    assert result.exit_code == 2, result.output
    one_line_error(result.output, message)  # export's step lines ("[1/5] load: ...") may come before it
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.onnx").exists()


def test_a_mismatched_state_dict_names_each_tensor(tmp_path):
    from training.checkpoint import load_checkpoint as load

    run = _edited_checkpoint(tmp_path / "run", None, lambda w: {**{k: v for k, v in w.items() if k != "net.fc.bias"},
                                                                 "extra": torch.zeros(2)})  # fmt: skip
    with pytest.raises(SeldEdgeError) as info:
        load(run)
    assert "missing net.fc.bias" in str(info.value) and "unexpected extra" in str(info.value)


@pytest.fixture(scope="module")
def one_epoch(data, tmp_path_factory):
    """The run folder of a 2-epoch run stopped after its first epoch, as by a crash (no dropout, so that a
    resumed run can repeat a straight one exactly)."""
    out = tmp_path_factory.mktemp("one") / "run"
    out.mkdir()  # as `python -m training.fit` leaves it after its first epoch
    overrides = [*FAST, "model.dropout=0"]
    config = resolve_config("seldnet", str(data), str(out), overrides=overrides, epochs=2, device="cpu")
    trainer = Trainer(config)
    loss = trainer._train_epoch(0, None)
    trainer._end_epoch(0, loss, trainer._validate())
    return out


def _copy(run_folder, to):
    import shutil

    shutil.copytree(run_folder, to)
    return to


def test_resume_continues_exactly_where_the_run_stopped(data, tmp_path, one_epoch):
    """One epoch and a resumed second equal two epochs straight: weights, optimizer state, learning rate and
    step count, though the resume state is now safetensors + JSON rather than a pickle."""
    from safetensors.torch import load_file

    from training.checkpoint import read_resume_state

    straight = tmp_path / "straight"
    run(data, straight, "--epochs", "2", "model.dropout=0")
    resumed = _copy(one_epoch, tmp_path / "resumed")
    run(data, resumed, "--epochs", "2", "--resume", "model.dropout=0")
    a, b = (read_resume_state(folder / "last_state") for folder in (straight, resumed))
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] > 0
    assert a["scheduler"]["_last_lr"] == b["scheduler"]["_last_lr"]
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert isinstance(b["optimizer"]["param_groups"][0]["betas"], tuple), "tuples and integer keys come back"
    for key, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][key][name]), (key, name)
    weights = [load_file(folder / "last.safetensors") for folder in (straight, resumed)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    rows = [(folder / "metrics.csv").read_text().splitlines() for folder in (straight, resumed)]
    lr = [[row.split(",")[2] for row in table] for table in rows]
    print("lr per epoch", lr[0][1:], "steps", a["scheduler"]["last_epoch"])
    assert lr[0] == lr[1] and len(rows[1]) == 3


@pytest.mark.parametrize(
    ("damage", "message"),
    [("json", "last_state.json: malformed resume state (state.optimizer has an unknown kind 'pickle')"),
     ("tensors", "last_state.safetensors: unreadable resume state tensor"),
     ("old pickle", "last_state.pt: resume state of an older seld-edge (a pickle, which is never loaded)")],
)  # fmt: skip
def test_a_crafted_resume_state_is_refused_in_one_line(data, tmp_path, one_epoch, capsys, damage, message):
    out = _copy(one_epoch, tmp_path / "run")
    if damage == "json":
        state = json.loads((out / "last_state.json").read_text())
        state["state"]["dict"]["optimizer"] = {"pickle": "cos\nsystem\n(S'echo owned'\ntR."}
        (out / "last_state.json").write_text(json.dumps(state))
    elif damage == "tensors":
        torch.save({"a": 1}, out / "last_state.safetensors")
    else:
        (out / "last_state.json").unlink()
        torch.save({"epoch": 1}, out / "last_state.pt")
    with pytest.raises(SystemExit) as info:
        run(data, out, "--epochs", "2", "--resume", "model.dropout=0")
    err = capsys.readouterr().err
    assert info.value.code == 2 and "weights_only" not in err
    one_line_error(err, message)


def test_resume_with_a_changed_model_setting_is_one_line(data, tmp_path, one_epoch, capsys):
    out = _copy(one_epoch, tmp_path / "run")
    with pytest.raises(SystemExit) as info:
        run(data, out, "--epochs", "2", "--resume", "model.dropout=0", "model.rnn_size=64")
    assert info.value.code == 2
    one_line_error(capsys.readouterr().err, "--resume: model.rnn_size 32 != 64 (the run's setting first)")


def test_stderr_ends_with_the_error_when_a_clip_halfway_through_is_bad(tmp_path):
    """A progress bar closed after the error line left stderr not ending with it."""
    generate_dataset(tmp_path / "d", n_train=2, n_test=1, seconds=2.0, seed=1, progress=False)
    bad = sorted((tmp_path / "d" / "metadata_dev").rglob("*.csv"))[1]
    bad.write_text("0,1,0,10\n")
    proc = subprocess.run(
        [sys.executable, "-m", "training.fit", "--model", "seldnet", "--data", str(tmp_path / "d"),
         "--out", str(tmp_path / "run"), "--device", "cpu"],
        capture_output=True, text=True, check=False, cwd=__import__("pathlib").Path(__file__).parents[1],
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.rstrip("\n").split("\n")[-1].startswith(f"error: {bad}:1: malformed row"), proc.stderr
    assert not (tmp_path / "run").exists()
