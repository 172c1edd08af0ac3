#!/usr/bin/env python3
"""Seconds per iteration of autopty next to its peers (PtyLab, pty-chi, CDTools) on one dataset.

Run by hand, not in CI:

    python3 benchmarks/peers/run.py --markdown /tmp/peers.md

What it does, in one run so that the ratios share the machine's load:

1. finds the autopty binary (``--autopty``, or builds ``cargo build --release -p autopty-cli``);
2. simulates the dataset with ``autopty simulate --preset paper --distance 0.1`` (or takes
   ``--data FILE.cxi``);
3. creates a virtual environment with the peers (``--venv``, default under /tmp) from
   ``requirements.txt`` next to this file, unless it exists;
4. times every engine on the same frames, positions, wavelength, distance and pixel size, with
   one probe mode, every position once per iteration, object and probe updated, positions kept:
   autopty through its per-epoch JSON, each peer in its own Python process (``--worker``) with
   ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``torch.set_num_threads`` set to ``--threads``;
5. prints one table (median seconds per iteration after ``--warmup`` iterations) and writes it as
   markdown to ``--markdown``.

The orchestrating part uses only the standard library; the workers need numpy, h5py and the
peer packages, which the virtual environment provides.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# (tool, engine label, case name, positions per update). autopty runs twice per engine: with
# its default near-field padding (FFTs on a grid larger than the frame, so that light leaving
# the window does not wrap around) and with `padded_size = N`, the periodic N x N propagation
# that PtyLab and pty-chi use; the second is the like-with-like row the ratios refer to.
CASES = [
    ("autopty", "ePIE", "epie", 1),
    ("autopty", "ePIE, padded_size = N", "epie-periodic", 1),
    ("PtyLab", "ePIE", "ptylab-epie", 1),
    ("PtyLab", "mPIE", "ptylab-mpie", 1),
    ("pty-chi", "ePIE", "ptychi-epie", 1),
    ("autopty", "Adam (gradient)", "adam", 5),
    ("autopty", "Adam, padded_size = N", "adam-periodic", 5),
    ("pty-chi", "Autodiff + Adam", "ptychi-autodiff", 5),
    ("pty-chi", "LSQML", "ptychi-lsqml", 5),
    ("CDTools", "FancyPtycho + Adam", "cdtools-adam", 5),
]


# ----------------------------------------------------------------------------------------------
# Orchestrator
# ----------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--autopty", type=Path, help="autopty binary (default: build release in the repo)"
    )
    p.add_argument(
        "--data", type=Path, help="CXI file (default: simulate the paper preset at 0.1 m)"
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "autopty-peers",
        help="folder for the dataset, peer inputs and autopty outputs",
    )
    p.add_argument(
        "--venv",
        type=Path,
        default=Path(tempfile.gettempdir()) / "autopty-peers-venv",
        help="virtual environment with the peers (created if missing)",
    )
    p.add_argument("--iterations", type=int, default=20, help="iterations (epochs) per engine")
    p.add_argument("--warmup", type=int, default=2, help="first iterations left out of the median")
    p.add_argument("--threads", type=int, default=2, help="threads for every tool")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the whole list this many times, interleaved, and pool the times "
        "(spreads a shared machine's load over every engine)",
    )
    p.add_argument(
        "--only", help="comma-separated case names to run: " + ", ".join(c[2] for c in CASES)
    )
    p.add_argument("--markdown", type=Path, help="also write the table here as markdown")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.iterations <= args.warmup:
        p.error("--iterations must exceed --warmup")
    return args


def find_autopty(args) -> Path:
    if args.autopty:
        if not args.autopty.is_file():
            sys.exit(f"no autopty binary at {args.autopty}")
        return args.autopty
    print("building autopty (cargo build --release -p autopty-cli) ...", flush=True)
    subprocess.run(["cargo", "build", "--release", "-p", "autopty-cli"], cwd=REPO, check=True)
    return REPO / "target" / "release" / "autopty"


def find_data(args, autopty: Path) -> Path:
    if args.data:
        return args.data
    path = args.workdir / "paper.cxi"
    if not path.exists():
        subprocess.run(
            [str(autopty), "simulate", "--preset", "paper", "--distance", "0.1", "-o", str(path)],
            check=True,
        )
    return path


def venv_python(args) -> Path:
    python = args.venv / "bin" / "python"
    if not python.exists():
        print(f"creating the peers' virtual environment in {args.venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(args.venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-r", str(HERE / "requirements.txt")], check=True
        )
    return python


def thread_env(threads: int) -> dict:
    env = dict(os.environ)
    for name in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "RAYON_NUM_THREADS",
    ):
        env[name] = str(threads)
    env["MPLBACKEND"] = "Agg"
    return env


def frame_side(autopty: Path, data: Path) -> int:
    """N of the N x N frames, from `autopty info`."""
    info = subprocess.run(
        [str(autopty), "info", str(data)], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"frames N x N = (\d+) x \d+", info)
    if not match:
        sys.exit(f"`autopty info {data}` did not give the frame size")
    return int(match.group(1))


def run_autopty(args, autopty: Path, data: Path, case: str, batch: int) -> dict:
    """autopty's per-epoch times: differences of the cumulative `seconds` of its JSON lines."""
    engine, _, variant = case.partition("-")
    out = args.workdir / f"autopty_{case}"
    cmd = [
        str(autopty),
        "reconstruct",
        str(data),
        "--engine",
        engine,
        "--refine",
        "none",
        "--modes",
        "1",
        "--epochs",
        str(args.iterations),
        "--seed",
        "0",
        "--json",
        "-q",
        "-o",
        str(out),
    ]
    if engine != "epie":
        cmd += ["--batch", str(batch)]
    if variant == "periodic":
        job = args.workdir / "autopty_periodic.toml"
        job.write_text(f"[model]\npadded_size = {frame_side(autopty, data)}\n")
        cmd += ["--config", str(job)]
    proc = subprocess.run(cmd, env=thread_env(args.threads), capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-400:] or f"exit {proc.returncode}"}
    epochs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    epochs = [e for e in epochs if e.get("event") == "epoch"]
    cumulative = [0.0] + [e["seconds"] for e in epochs]
    times = [b - a for a, b in zip(cumulative, cumulative[1:])]
    losses = [e["loss"] for e in epochs]
    finite = all(math.isfinite(x) for x in losses)
    return {"times": times, "finite": finite, "losses": losses, "version": autopty_version(autopty)}


def autopty_version(autopty: Path) -> str:
    """`autopty --version`, with the repository's commit when the binary was built here."""
    proc = subprocess.run([str(autopty), "--version"], capture_output=True, text=True)
    words = proc.stdout.split()
    version = words[-1] if proc.returncode == 0 and words else "?"
    if autopty.resolve() != (REPO / "target" / "release" / "autopty").resolve():
        return version
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return f"{version} ({commit})" if commit else version


def run_worker(args, python: Path, data: Path, worker: str) -> dict:
    result = args.workdir / f"{worker}.json"
    result.unlink(missing_ok=True)
    cmd = [
        str(python),
        str(Path(__file__).resolve()),
        "--worker",
        worker,
        "--data",
        str(data),
        "--workdir",
        str(args.workdir),
        "--iterations",
        str(args.iterations),
        "--threads",
        str(args.threads),
        "--result",
        str(result),
    ]
    log = args.workdir / f"{worker}.log"
    with open(log, "w") as out:
        proc = subprocess.run(
            cmd, env=thread_env(args.threads), stdout=out, stderr=subprocess.STDOUT
        )
    if proc.returncode != 0 or not result.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(result.read_text())


def summarise(rows, args) -> list[list[str]]:
    # ratios against autopty's like-with-like row (periodic propagation) of the same batch size,
    # or its default row when the periodic one did not run
    reference = {}
    for r in rows:
        if r["tool"] == "autopty" and "median" in r:
            if r["case"].endswith("periodic") or r["batch"] not in reference:
                reference[r["batch"]] = r["median"]
    table = []
    for r in rows:
        if "error" in r:
            table.append(
                [
                    r["tool"],
                    r.get("version", "?"),
                    r["engine"],
                    str(r["batch"]),
                    "-",
                    "failed",
                    "-",
                    "-",
                    r["error"],
                    "-",
                ]
            )
            continue
        ref = reference.get(r["batch"])
        ratio = f"{r['median'] / ref:.2f}" if ref else "-"
        losses = r.get("losses") or []
        falls = f"{losses[-1] / losses[0]:.2f}" if len(losses) > 1 and losses[0] else "-"
        table.append(
            [
                r["tool"],
                r["version"],
                r["engine"],
                str(r["batch"]),
                str(len(r["kept"])),
                f"{r['median']:.4f}",
                f"{r['min']:.4f}",
                ratio,
                "yes" if r["finite"] else "NO (NaN/inf)",
                falls,
            ]
        )
    return table


HEADER = [
    "tool",
    "version",
    "engine",
    "positions/update",
    "timed its",
    "median s/it",
    "min s/it",
    "x autopty",
    "finite",
    "loss last/first",
]


def print_table(table):
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(HEADER)]
    line = "  ".join(h.ljust(w) for h, w in zip(HEADER, widths))
    print(line)
    print("-" * len(line))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def markdown(table, args, data: Path) -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()}: "
        f"{os.cpu_count()} CPUs ({cpu}), {args.threads} threads per tool; dataset `{data.name}`; "
        f"{args.iterations} iterations per run, {args.rounds} run(s) per engine, interleaved; "
        f"the first {args.warmup} of each run untimed ('timed its' = iterations in the median).",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    return "\n".join(lines) + "\n"


def main(args):
    args.workdir.mkdir(parents=True, exist_ok=True)
    autopty = find_autopty(args)
    data = find_data(args, autopty).resolve()
    only = set(args.only.split(",")) if args.only else None
    cases = [c for c in CASES if only is None or c[2] in only]
    python = venv_python(args) if any(c[0] != "autopty" for c in cases) else None
    rows = [
        dict(tool=tool, engine=engine, batch=batch, case=name, kept=[], finite=True)
        for tool, engine, name, batch in cases
    ]
    for round_ in range(args.rounds):
        for r in rows:
            if "error" in r:
                continue
            print(
                f"[round {round_ + 1}/{args.rounds}] {r['tool']} {r['engine']}: "
                f"{args.iterations} iterations ...",
                flush=True,
            )
            start = time.perf_counter()
            if r["tool"] == "autopty":
                result = run_autopty(args, autopty, data, r["case"], r["batch"])
            else:
                result = run_worker(args, python, data, r["case"])
            if "times" not in result:
                r["error"] = result["error"]
                print(f"  failed: {r['error']}")
                continue
            kept = result["times"][args.warmup :]
            r["kept"] += kept
            r["times"] = result["times"]
            r["finite"] = r["finite"] and result["finite"]
            r["losses"] = result.get("losses")
            r["version"] = result["version"]
            print(
                f"  median {statistics.median(kept):.4f} s/it "
                f"({time.perf_counter() - start:.0f} s in all)"
            )
    for r in rows:
        if r["kept"] and "error" not in r:
            r["median"] = statistics.median(r["kept"])
            r["min"] = min(r["kept"])
    table = summarise(rows, args)
    print()
    print_table(table)
    if args.markdown:
        args.markdown.write_text(markdown(table, args, data))
        print(f"\nmarkdown table written to {args.markdown}")


# ----------------------------------------------------------------------------------------------
# Workers (run inside the virtual environment, one process per engine)
# ----------------------------------------------------------------------------------------------


def load_cxi(path: Path) -> dict:
    """Frames, geometry and probe positions of a CXI file, in SI units, as autopty reads them.

    Positions are the probe's (y, x) in metres: minus the stage translation, centred on zero.
    """
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        det = f["entry_1/instrument_1/detector_1"]
        data_path = "entry_1/data_1/data" if "entry_1/data_1/data" in f else det.name + "/data"
        frames = np.asarray(f[data_path], dtype=np.float32)
        translation = np.asarray(f["entry_1/sample_1/geometry_1/translation"], dtype=np.float64)
        wavelength = float(f["entry_1/instrument_1/source_1/wavelength"][()])
        distance = float(det["distance"][()])
        pixel = float(det["x_pixel_size"][()])
        regime = "far"
        if "entry_1/autopty/regime" in f:
            regime = f["entry_1/autopty/regime"][()].decode().split("_")[0]
        mask = np.asarray(det["mask"]) if "mask" in det else None
    if translation.shape[0] == 3 and translation.shape[1] != 3:
        translation = translation.T
    positions = -translation[:, [1, 0]]
    positions -= 0.5 * (positions.max(axis=0) + positions.min(axis=0))
    n = frames.shape[-1]
    # sample-plane pixel: the detector's in near field (plane wave), lambda z / (N dx) in far field
    sample_pixel = pixel if regime == "near" else wavelength * distance / (n * pixel)
    if mask is not None and mask.any():
        frames = frames * (mask == 0)
    return dict(
        frames=np.clip(frames, 0, None),
        wavelength=wavelength,
        distance=distance,
        detector_pixel=pixel,
        sample_pixel=sample_pixel,
        positions=positions,
        regime=regime,
    )


def initial_probe(d: dict):
    """One probe mode for every peer: the mean measured amplitude taken back to the sample plane
    (near field: angular spectrum over -z; far field: inverse centred FFT), scaled so that its
    power equals the mean frame's total counts."""
    import numpy as np

    mean = d["frames"].mean(axis=0)
    amp = np.sqrt(mean).astype(np.complex128)
    n = amp.shape[-1]
    if d["regime"] == "near":
        f = np.fft.fftfreq(n, d=d["sample_pixel"])
        fy, fx = np.meshgrid(f, f, indexing="ij")
        arg = 1.0 - (d["wavelength"] * fx) ** 2 - (d["wavelength"] * fy) ** 2
        kz = 2 * np.pi / d["wavelength"] * np.sqrt(np.clip(arg, 0, None))
        probe = np.fft.ifft2(np.fft.fft2(amp) * np.exp(-1j * kz * d["distance"]))
    else:
        probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(amp), norm="ortho"))
    probe *= np.sqrt(mean.sum() / (np.abs(probe) ** 2).sum())
    return probe.astype(np.complex64)


def worker_ptylab(args, engine_name: str) -> dict:
    import h5py
    import numpy as np
    import PtyLab
    from PtyLab import Engines, ExperimentalData, Params, Reconstruction
    from PtyLab.Monitor.Monitor import DummyMonitor

    d = load_cxi(args.data)
    # PtyLab reads its own HDF5 layout; the encoder holds probe centres (row, col) in metres.
    h5 = args.workdir / "ptylab_input.hdf5"
    with h5py.File(h5, "w") as f:
        f["ptychogram"] = d["frames"]
        f["wavelength"] = d["wavelength"]
        f["encoder"] = d["positions"]
        f["dxd"] = d["detector_pixel"]
        f["zo"] = d["distance"]
    data = ExperimentalData(h5, "CPM")
    params = Params()
    params.gpuSwitch = False
    params.fftshiftSwitch = False
    params.propagatorType = "ASP" if d["regime"] == "near" else "Fraunhofer"
    params.positionOrder = "random"
    params.positionCorrectionSwitch = False
    params.probePowerCorrectionSwitch = False
    params.comStabilizationSwitch = False
    params.orthogonalizationSwitch = False
    params.intensityConstraint = "standard"
    rec = Reconstruction(data, params)
    if d["regime"] == "near":
        # PtyLab's zo setter assumes Fraunhofer sampling (lambda z / L); near field keeps the
        # detector pixel, so set it and size the object again.
        rec.dxp = d["sample_pixel"]
        del rec.No
        rec.computeParameters()
        rec.positions0 = rec.positions.copy()
    rec.npsm = 1
    rec.initializeObjectProbe()
    rec.probe = initial_probe(d).reshape(rec.probe.shape)
    engine_class = {"epie": Engines.ePIE, "mpie": Engines.mPIE}[engine_name]
    engine = engine_class(rec, data, params, DummyMonitor())
    engine.numIterations = args.iterations
    # One iteration: from the position order being drawn to the monitor's update after the
    # error metrics and constraints (both are called once per iteration by ePIE and mPIE).
    starts, ends = [], []
    draw_order, show = engine.setPositionOrder, engine.showReconstruction

    def timed_order(*a, **k):
        starts.append(time.perf_counter())
        return draw_order(*a, **k)

    def timed_show(*a, **k):
        result = show(*a, **k)
        ends.append(time.perf_counter())
        return result

    engine.setPositionOrder, engine.showReconstruction = timed_order, timed_show
    engine.reconstruct()
    times = [b - a for a, b in zip(starts, ends)]
    finite = bool(np.isfinite(rec.object).all() and np.isfinite(rec.probe).all())
    return {
        "times": times,
        "finite": finite,
        "losses": [float(e) for e in rec.error],
        "version": version_of("ptylab", PtyLab),
        "object_shape": list(rec.object.shape[-2:]),
    }


def worker_ptychi(args, engine_name: str) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import ptychi
    import ptychi.api as api
    from ptychi.api.task import PtychographyTask
    from ptychi.utils import get_suggested_object_size

    d = load_cxi(args.data)
    probe = initial_probe(d)
    positions_px = d["positions"] / d["sample_pixel"]  # probe centres (y, x) in object pixels
    if engine_name == "epie":
        options, batch = api.EPIEOptions(), 1
    elif engine_name == "lsqml":
        options, batch = api.LSQMLOptions(), 5
    else:
        options, batch = api.AutodiffPtychographyOptions(), 5
    near = d["regime"] == "near"
    options.data_options.data = d["frames"]
    options.data_options.wavelength_m = d["wavelength"]
    options.data_options.free_space_propagation_distance_m = d["distance"] if near else np.inf
    options.data_options.fft_shift = not near  # far field: autopty's frames are centred
    size = get_suggested_object_size(positions_px, probe.shape, extra=2)
    options.object_options.initial_guess = np.ones((1, *size), dtype=np.complex64)
    options.object_options.pixel_size_m = d["sample_pixel"]
    options.object_options.optimizable = True
    options.probe_options.initial_guess = probe[None, None]
    options.probe_options.optimizable = True
    options.probe_options.optimization_plan.start = 1  # as autopty: the probe from epoch 2
    options.probe_position_options.position_y_px = positions_px[:, 0]
    options.probe_position_options.position_x_px = positions_px[:, 1]
    options.probe_position_options.optimizable = False
    if engine_name == "autodiff":
        options.object_options.optimizer = api.Optimizers.ADAM
        options.object_options.step_size = 1e-1
        options.probe_options.optimizer = api.Optimizers.ADAM
        options.probe_options.step_size = 1e-1
    rec = options.reconstructor_options
    rec.num_epochs = args.iterations
    rec.batch_size = batch
    rec.default_device = api.Devices.CPU
    rec.random_seed = 0
    task = PtychographyTask(options)
    times = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        task.run(1)
        times.append(time.perf_counter() - start)
    obj = task.get_data_to_cpu("object", as_numpy=True)
    prb = task.get_data_to_cpu("probe", as_numpy=True)
    finite = bool(np.isfinite(obj).all() and np.isfinite(prb).all())
    losses = [float(x) for x in task.reconstructor.loss_tracker.table.iloc[:, 1]]
    return {
        "times": times,
        "finite": finite,
        "losses": losses,
        "version": version_of("ptychi", ptychi),
        "torch": torch.__version__,
        "object_shape": list(size),
    }


def worker_cdtools(args, engine_name: str) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import cdtools

    # CDTools reads the CXI file itself (frames, translations, wavelength, distance, basis).
    d = load_cxi(args.data)
    dataset = cdtools.datasets.Ptycho2DDataset.from_cxi(str(args.data))
    model = cdtools.models.FancyPtycho.from_dataset(
        dataset, n_modes=1, near_field=d["regime"] == "near"
    )
    # object and probe only: the positions, background and per-frame weights stay fixed
    for name, param in model.named_parameters():
        param.requires_grad = name in ("obj", "probe")
    recon = cdtools.reconstructors.AdamReconstructor(model, dataset)
    times, losses = [], []
    start = time.perf_counter()
    for loss in recon.optimize(args.iterations, batch_size=5, lr=0.005, thread=False):
        now = time.perf_counter()
        times.append(now - start)
        losses.append(float(loss))
        start = now
    obj = model.obj.detach().numpy()
    prb = model.probe.detach().numpy()
    finite = bool(np.isfinite(obj).all() and np.isfinite(prb).all())
    return {
        "times": times,
        "finite": finite,
        "losses": losses,
        "version": version_of("cdtools-py", cdtools),
        "torch": torch.__version__,
        "object_shape": list(obj.shape[-2:]),
    }


def version_of(dist: str, module) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return getattr(module, "__version__", "?")


def worker(args):
    tool, engine = args.worker.split("-", 1)
    if tool == "ptylab":
        result = worker_ptylab(args, engine)
    elif tool == "ptychi":
        result = worker_ptychi(args, engine)
    elif tool == "cdtools":
        result = worker_cdtools(args, engine)
    else:
        sys.exit(f"unknown worker {args.worker}")
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.worker:
        worker(ARGS)
    else:
        main(ARGS)
