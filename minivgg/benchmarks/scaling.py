"""How a pass speeds up with threads: the table ``scripts/threads_benchmark.py`` makes.

The script runs ``scripts/benchmark.py`` once per thread count and pass, each in a process of its own
(thread counts are fixed before NumPy loads), and keeps each run's JSON. This file turns those runs
into one table: per thread count, NumPy's sgemm rate, each side's median time for each pass, its
speed-up over the fewest threads measured, and minivgg's time over PyTorch's. The question it answers
(issue 20): does minivgg gain from more cores at least what a BLAS GEMM gains on the same machine?

    runs = {threads: {"forward": benchmark.py's JSON, "gradients": ...}}
"""
import os

PASSES = ("forward", "gradients")  # benchmark.py's --layers names of the two whole passes
SIDES = ("auto", "pytorch")  # minivgg's plan and PyTorch's CPU kernels


def thread_counts(cores=None):
    """1, 2, 4, ... up to the cores, and the cores themselves: [1, 2, 4, 8, 16] on 16, [1, 2, 4, 6] on 6.
    Default: the cores this process may run on (as benchmark.py's default thread count)."""
    cores = cores or len(os.sched_getaffinity(0))
    counts = [1 << i for i in range(cores.bit_length()) if 1 << i <= cores]
    return counts + ([cores] if counts[-1] != cores else [])


def _median(run, kind, method):
    """The median ms of ``method``'s row of ``kind`` in one benchmark.py JSON, or None (not run)."""
    for row in (run or {}).get("results", []):
        if row["kind"] == kind and row["method"] == method:
            return row["median_ms"]
    return None


def rows(runs):
    """One dict per thread count, fewest first: threads, sgemm (GFLOP/s, from the forward run, else the
    gradient run) and sgemm_x (its speed-up); per pass and side ``{pass}_{side}`` (median ms) and
    ``{pass}_{side}_x`` (speed-up over the fewest threads), and ``{pass}_ratio`` = minivgg / PyTorch.
    A figure that was not measured is None."""
    counts = sorted(runs)
    table = []
    for t in counts:
        run = runs[t]
        machine = (run.get("forward") or run.get("gradients") or {}).get("machine", {})
        row = {"threads": t, "sgemm": machine.get("sgemm_gflops")}
        for name in PASSES:
            for side in SIDES:
                row[f"{name}_{side}"] = _median(run.get(name), name, side)
            a, p = row[f"{name}_auto"], row[f"{name}_pytorch"]
            row[f"{name}_ratio"] = a / p if a and p else None
        table.append(row)
    first = table[0] if table else {}
    for row in table:  # speed-ups: time (or rate) against the fewest threads'
        row["sgemm_x"] = row["sgemm"] / first["sgemm"] if row["sgemm"] and first["sgemm"] else None
        for name in PASSES:
            for side in SIDES:
                key, base = f"{name}_{side}", first[f"{name}_{side}"]
                row[key + "_x"] = base / row[key] if base and row[key] else None
    return table


def markdown(table, batch):
    """The rows as a Markdown table (the README's form), "-" where a figure is missing."""
    def cell(v, spec):
        return "-" if v is None else format(v, spec)

    head = (f"| threads | sgemm GFLOP/s (x) | forward, batch {batch}: minivgg ms (x) | PyTorch ms (x) | minivgg / PyTorch "
            "| input gradient, batch 1: minivgg ms (x) | PyTorch ms (x) | minivgg / PyTorch |")
    lines = [head, "|" + "---:|" * 8]
    for r in table:
        lines.append(
            f"| {r['threads']} | {cell(r['sgemm'], '.0f')} ({cell(r['sgemm_x'], '.1f')}) | "
            + " | ".join(f"{cell(r[f'{n}_auto'], '.1f')} ({cell(r[f'{n}_auto_x'], '.1f')}) | "
                         f"{cell(r[f'{n}_pytorch'], '.1f')} ({cell(r[f'{n}_pytorch_x'], '.1f')}) | "
                         f"{cell(r[f'{n}_ratio'], '.2f')}" for n in PASSES) + " |")
    return "\n".join(lines)
