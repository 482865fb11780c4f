"""``python -m bridge.formats``: convert splat files and describe them.

    convert IN OUT [--sh-degree N] [--format F] [--spz-version V]
    info FILE [--json]

Exit codes: 0 done, 2 bad input (the message names the file and the problem).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import numpy as np

from . import FORMAT_NAMES, FormatError, FormatWarning, detect_format, read_splats, write_splats


def describe(path: str) -> dict:
    """What ``info`` reports, as plain JSON-ready values."""
    fmt = detect_format(path)
    splats = read_splats(path)
    alphas = splats.alphas()
    sizes = np.exp(splats.scales.astype(np.float64)).max(axis=1)
    return {
        "file": os.fspath(path),
        "format": fmt,
        "bytes": os.path.getsize(path),
        "splats": len(splats),
        "sh_degree": splats.sh_degree,
        "bounds_min": [float(v) for v in splats.means.min(axis=0)],
        "bounds_max": [float(v) for v in splats.means.max(axis=0)],
        "opacity": _stats(alphas) | {"below_1_percent": int((alphas < 0.01).sum())},
        "largest_axis": _stats(sizes),
        "extras": sorted(splats.extras),
    }


def _stats(values: np.ndarray) -> dict:
    p = np.percentile(values, [0, 50, 100])
    return {"min": float(p[0]), "median": float(p[1]), "max": float(p[2])}


def _print_info(info: dict) -> None:
    lo, hi = info["bounds_min"], info["bounds_max"]
    op, ax = info["opacity"], info["largest_axis"]
    print(f"{info['file']}: {info['format']}, {info['bytes']:,} bytes")
    print(f"  splats     {info['splats']:,}")
    print(f"  SH degree  {info['sh_degree']}")
    print("  bounds     " + "  ".join(f"{a} {lo[i]:.4g}..{hi[i]:.4g}" for i, a in enumerate("xyz")))
    print(f"  opacity    min {op['min']:.3f}  median {op['median']:.3f}  max {op['max']:.3f}"
          f"  ({op['below_1_percent']:,} below 0.01)")
    print(f"  scale      largest axis min {ax['min']:.3g}  median {ax['median']:.3g}  max {ax['max']:.3g}")
    if info["extras"]:
        print("  extras     " + ", ".join(info["extras"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.formats", description="Gaussian splat files.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="convert a splat file (format from OUT's extension)")
    convert.add_argument("input")
    convert.add_argument("output")
    convert.add_argument("--sh-degree", type=int, choices=range(4), help="keep this many SH bands")
    convert.add_argument("--format", choices=FORMAT_NAMES, help="output format (default: from OUT's name)")
    convert.add_argument("--spz-version", type=int, choices=(2, 3, 4), default=3, help="SPZ version to write")
    info = commands.add_parser("info", help="count, SH degree, bounds, opacity and scale statistics")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FormatWarning)
        try:
            if args.command == "convert":
                splats = read_splats(args.input)
                options = {"version": args.spz_version} if (args.format or "") == "spz" or (
                    not args.format and args.output.lower().endswith(".spz")) else {}
                write_splats(args.output, splats, fmt=args.format, sh_degree=args.sh_degree, **options)
                print(f"{args.output}: {len(splats):,} splats written", file=sys.stderr)
            elif args.json:
                print(json.dumps(describe(args.file)))
            else:
                _print_info(describe(args.file))
        except FormatError as exc:
            code = 2
            print(f"error: {exc}", file=sys.stderr)
        else:
            code = 0
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
