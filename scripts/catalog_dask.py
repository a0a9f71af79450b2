"""The neuron catalogue of a large image set on a Dask cluster: one task per shard, then the merge.

    pip install "dask[distributed]"              # the 'dask' extra: minivgg itself does not need it
    python scripts/catalog_dask.py /data/imagenet/val --shards 16 --scheduler tcp://10.0.0.5:8786 \\
        --out catalog -- --layers block3_conv1,block5_conv3 --weights vgg16_notop.h5
    python scripts/catalog_dask.py photos/ --shards 4 --out catalog        # a LocalCluster of 2 workers here

Each task runs ``minivgg-catalog IMAGES --shard I/N --out OUT/shards/I`` on a worker (the options after
``--`` go to every shard, and to the merge where they apply: --json, --projections); then
``minivgg-catalog --merge OUT/shards/* --out OUT`` makes the catalogue one run would have made.
The workers must see the images, the weights and OUT at the same paths (a shared file system). A shard
that was interrupted resumes when its task runs again (its state is in its folder).
"""
import argparse
import sys
from pathlib import Path

from minivgg.catalog import cli

MERGE_OPTIONS = ("--json", "--projections", "--batch")  # the options the merge uses too (with their value)


def shard_command(images, i, n, out, options):
    """One task's command line: shard i of n into ``out``. The task is ``cli.main`` itself (an importable
    function, so the workers need minivgg installed, not this script); it returns 1 if images failed."""
    return [*map(str, images), "--shard", f"{i}/{n}", "--out", str(out), "--quiet", *options]


def merge_options(options):
    kept, it = [], iter(options)
    for opt in it:
        name = opt.split("=")[0]
        if name in MERGE_OPTIONS:
            kept.append(opt)
            if "=" not in opt and name != "--projections":
                kept.append(next(it))
    return kept


def run(images, shards, out, options, client):
    """Scan ``shards`` shards as Dask tasks on ``client``, then merge into ``out``; returns an exit status."""
    out = Path(out)
    dirs = [out / "shards" / str(i) for i in range(1, shards + 1)]
    futures = [client.submit(cli.main, shard_command(images, i, shards, d, options), pure=False)
               for i, d in enumerate(dirs, 1)]
    statuses = client.gather(futures)
    if any(s not in (0, 1) for s in statuses):
        print(f"error: shard(s) {[i for i, s in enumerate(statuses, 1) if s not in (0, 1)]} failed "
              "(run this again: finished shards are kept, interrupted ones resume)", file=sys.stderr)
        return 1
    merged = cli.main(["--merge", *map(str, dirs), "--out", str(out), *merge_options(options)])
    return merged or max(statuses)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    options = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="catalog_dask.py", description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+", help="image files or folders (the same paths on every worker)")
    p.add_argument("--shards", type=int, default=4, help="how many tasks (default 4)")
    p.add_argument("--out", default=cli.DEFAULT_OUT, help=f"the catalogue's folder (default {cli.DEFAULT_OUT}/)")
    p.add_argument("--scheduler", help="a Dask scheduler's address (default: a LocalCluster of 2 workers)")
    args = p.parse_args(argv)
    from dask.distributed import Client, LocalCluster

    if args.scheduler:
        with Client(args.scheduler) as client:
            return run(args.images, args.shards, args.out, options, client)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        return run(args.images, args.shards, args.out, options, client)


if __name__ == "__main__":
    raise SystemExit(main())
