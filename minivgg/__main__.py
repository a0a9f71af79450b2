"""``python -m minivgg``: print the VGG16 table, as Keras' ``model.summary()`` would.

    python -m minivgg                    # with the top, 224x224
    python -m minivgg --no-top --size 160 288
    python -m minivgg --weights PATH     # the table of that file, with each conv layer's method
"""
import argparse
import sys

from .errors import MinivggError
from .vgg16 import MIN_SIZE, TOP_SIZE, VGG16, summary


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minivgg", description=__doc__.splitlines()[0])
    p.add_argument("--no-top", action="store_true", help="leave out flatten, fc1, fc2, predictions")
    p.add_argument("--size", type=int, nargs="+", metavar="N", default=[TOP_SIZE], help="H [W] (default 224)")
    p.add_argument("--weights", help="a Keras weight file: show its table and the conv plan")
    p.add_argument("--method", default="auto", help="conv method for --weights (default: auto)")
    args = p.parse_args(argv)
    h, w = (args.size * 2)[:2]
    try:
        if h < MIN_SIZE or w < MIN_SIZE:
            raise MinivggError(f"VGG16 needs at least {MIN_SIZE}x{MIN_SIZE}, got {h}x{w}")
        model = None
        if args.weights:
            model = VGG16(weights=args.weights, include_top=False if args.no_top else None, method=args.method)
        top = model.include_top if model else not args.no_top
        if top and (h, w) != (TOP_SIZE, TOP_SIZE):
            raise MinivggError(f"with its top, VGG16 takes {TOP_SIZE}x{TOP_SIZE} images; add --no-top")
        print(model.summary(h, w) if model else summary(top, h, w))
    except MinivggError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
