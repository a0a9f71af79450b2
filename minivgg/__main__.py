"""``python -m minivgg``: print the VGG16 table, as Keras' ``model.summary()`` would.

    python -m minivgg                        # with the top, 224x224, and each conv layer's method
    python -m minivgg --no-top --size 160 288
    python -m minivgg --weights PATH         # the table of what that file holds
"""
import argparse
import sys

from .conv import METHODS
from .errors import MinivggError
from .vgg16 import TOP_SIZE, VGG16, plan, summary


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minivgg", description=__doc__.splitlines()[0])
    p.add_argument("--no-top", action="store_true", help="leave out flatten, fc1, fc2, predictions")
    p.add_argument("--size", type=int, nargs="+", metavar="N", default=[TOP_SIZE], help="H [W] (default 224)")
    p.add_argument("--weights", help="a Keras weight file: the table of what it holds")
    p.add_argument("--method", default="auto", choices=("auto", *METHODS), help="conv method (default: auto)")
    args = p.parse_args(argv)
    if len(args.size) > 2:
        p.error("--size takes H, or H and W")
    h, w = (args.size * 2)[:2]
    try:
        if args.weights:
            model = VGG16(weights=args.weights, include_top=False if args.no_top else None, method=args.method)
            print(model.summary(h, w))
        else:
            print(summary(not args.no_top, h, w, plan(args.method)))
    except MinivggError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
