"""minivgg's speed-up with threads, beside PyTorch's and NumPy's sgemm (issue 20's 16-core table).

    python scripts/threads_benchmark.py --json threads.json      # 1, 2, 4, ... threads, up to every core
    python scripts/threads_benchmark.py --threads 1,2 --size 64 --batch 2 --repeats 2     # a quick look

For each thread count, ``scripts/benchmark.py`` runs twice, each time in a process of its own (a
thread count is fixed before NumPy loads): the forward pass without the top at ``--batch`` images (8),
and the input gradient of a class score with the top at one image (at 224x224; at other sizes without
the top, the mean of a block5_conv3 channel), minivgg's ``auto`` plan beside PyTorch's CPU kernels
where PyTorch is installed. As in every benchmark.py run, each result is checked against a float64 pass
before it is timed, the first call (JIT compile or cache load) is left out, and NumPy's sgemm is
measured at the same thread count. Then one table (``minivgg/benchmarks/scaling.py``): per thread
count, the sgemm rate, each side's median time for each pass with its speed-up over the fewest threads,
and minivgg's time over PyTorch's; and, with ``--json``, one file with the table and every run.

Where minivgg is not installed (the 16-core machine of issue 20: NumPy, Numba, h5py, Pillow and
PyTorch, no TensorFlow), run it from the repository's root with ``PYTHONPATH=.``.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BENCHMARK = Path(__file__).with_name("benchmark.py")


def parse_args(argv):
    p = argparse.ArgumentParser(description="minivgg's speed-up with threads, beside PyTorch's and NumPy's sgemm.")
    p.add_argument("--threads", help="comma-separated thread counts (default: 1, 2, 4, ... up to every core)")
    p.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    p.add_argument("--batch", type=int, default=8, help="images in the forward pass (default 8)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per side and pass (default 5)")
    p.add_argument("--no-pytorch", action="store_true", help="minivgg alone")
    p.add_argument("--json", metavar="PATH", help="write the table and every run as JSON")
    args = p.parse_args(argv)
    try:
        args.counts = sorted({int(t) for t in args.threads.split(",")}) if args.threads else None
    except ValueError:
        p.error(f"--threads takes comma-separated whole numbers, got {args.threads!r}")
    if args.counts is not None and (not args.counts or args.counts[0] < 1):
        p.error("--threads: every count must be at least 1")
    for name, least in (("size", 32), ("batch", 1), ("repeats", 1)):
        if getattr(args, name) < least:
            p.error(f"--{name} must be at least {least}")
    return args


def benchmark(threads, layer, batch, methods, args, tmp):
    """One benchmark.py run in a process of its own; its JSON. Raises MinivggError with the run's
    last line of error if it failed (a result that disagrees with the float64 pass, say)."""
    from minivgg.errors import MinivggError

    path = os.path.join(tmp, f"{layer}_{threads}.json")
    cmd = [sys.executable, str(BENCHMARK), "--threads", str(threads), "--size", str(args.size), "--batch", str(batch),
           "--layers", layer, "--methods", methods, "--repeats", str(args.repeats), "--json", path]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise MinivggError(f"benchmark.py --threads {threads} --layers {layer} failed: {last}")
    with open(path) as f:
        return json.load(f)


def main(argv=None):
    args = parse_args(argv)
    from minivgg.benchmarks import scaling
    from minivgg.benchmarks.harness import check_writable
    from minivgg.errors import MinivggError

    try:
        if args.json:
            check_writable(args.json)  # fail now rather than after the run
        counts = args.counts or scaling.thread_counts()
        pytorch = not args.no_pytorch and importlib.util.find_spec("torch") is not None
        if not pytorch and not args.no_pytorch:
            print("note: PyTorch is not installed: minivgg alone")
        methods = "auto,pytorch" if pytorch else "auto"
        runs = {}
        with tempfile.TemporaryDirectory() as tmp:
            for t in counts:
                runs[t] = {name: benchmark(t, name, args.batch if name == "forward" else 1, methods, args, tmp)
                           for name in scaling.PASSES}
                row = scaling.rows({t: runs[t]})[0]
                print(f"{t} thread{'s' if t > 1 else ''}: sgemm {row['sgemm']:.0f} GFLOP/s; " + "; ".join(
                    f"{name} " + ", ".join(f"{side} {row[f'{name}_{side}']:.1f} ms" for side in scaling.SIDES
                                           if row[f"{name}_{side}"] is not None) for name in scaling.PASSES), flush=True)
        table = scaling.rows(runs)
        machine = runs[counts[0]]["forward"]["machine"]
        print(f"\n{machine['cpu']}, {machine['cores']} cores; size {args.size}x{args.size}, {args.repeats} repeats; "
              "(x): speed-up over the fewest threads")
        print(scaling.markdown(table, args.batch))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": machine, "settings": {k: getattr(args, k) for k in ("size", "batch", "repeats")},
                           "table": table, "runs": {str(t): r for t, r in runs.items()}}, f, indent=1)
            print(f"\nwrote {args.json}")
    except (MinivggError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
