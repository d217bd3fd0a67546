"""``ddl data pack``: copy a data set's files into a folder that travels with the checkout.

A GPU machine may have no package manager and no network.  Fashion-MNIST (and MNIST) are four gzip-compressed IDX
files, 30 MiB in all: ``ddl data pack --dataset fashion-mnist --to data/fashion-mnist`` copies them from where
they are installed (Debian's ``dataset-fashion-mnist`` by default, or ``--from DIR``) into a folder (``data/`` is
git-ignored), checks that they load, and ``--data-dir data/fashion-mnist`` reads them there.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path

from ddl.data.dataset import DEFAULT_DIRS, DataError, load_dataset
from ddl.data.sources import IDX_FILES, find_idx

PACKABLE = ("fashion-mnist", "mnist")  # IDX files; CIFAR-10's python batches (~180 MB) exceed the budget
MAX_BYTES = 64 * 2**20  # what a device run can carry with the working tree


def pack(dataset: str, to: str | Path, source: str | Path | None = None) -> list[Path]:
    """Write ``dataset``'s four IDX files, gzip-compressed, into ``to``; returns their paths.

    Raises :class:`DataError` (one line) when the data set cannot be packed or its files are missing or unreadable;
    the packed folder is checked by loading it exactly as ``--data-dir`` does.
    """
    if dataset not in PACKABLE:
        raise DataError(f"--dataset: only {', '.join(PACKABLE)} can be packed (got {dataset!r})")
    src = source if source is not None else DEFAULT_DIRS.get(dataset)
    if src is None:
        raise DataError(f"--from: required for --dataset {dataset} (the directory holding its IDX files)")
    src, dest = Path(src), Path(to)
    found = {stem: find_idx(src, stem) if src.is_dir() else None for stem in IDX_FILES}
    missing = [s for s, p in found.items() if p is None]
    if missing:
        raise DataError(f"--from: {dataset} not found in {src}: missing {', '.join(missing)}[.gz]")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, path in found.items():
        out = dest / f"{stem}.gz"
        if path.resolve() != out.resolve():
            if path.suffix == ".gz":
                shutil.copyfile(path, out)
            else:
                with open(path, "rb") as f, gzip.open(out, "wb") as g:
                    shutil.copyfileobj(f, g)
        written.append(out)
    size = sum(p.stat().st_size for p in written)
    if size > MAX_BYTES:
        raise DataError(f"--to: {dataset} takes {size / 2**20:.1f} MiB, more than the {MAX_BYTES // 2**20} MiB a "
                        "checkout can carry")  # fmt: skip
    try:
        load_dataset(dataset, data_dir=dest, train_per_class=1, test_per_class=1)  # loads as --data-dir will
    except DataError as e:
        raise DataError(f"--from: the {dataset} files in {src} do not load: {str(e).removeprefix('--data-dir: ')}") \
            from None
    return written


def add_data_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="{pack}",
                                parser_class=type(parser))  # fmt: skip
    p = sub.add_parser("pack", help="copy a data set's files into a folder to carry to a machine without network",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=PACKABLE)
    p.add_argument("--to", required=True, metavar="DIR", help="folder to write (e.g. data/fashion-mnist; data/ is "
                   "git-ignored); then train with --data-dir DIR")
    p.add_argument("--from", dest="source", default=None, metavar="DIR",
                   help="where the IDX files are (default for fashion-mnist: " + DEFAULT_DIRS["fashion-mnist"] + ")")
    p.set_defaults(func=run_data)
    return parser


def run_data(args: argparse.Namespace) -> int:
    written = pack(args.dataset, args.to, args.source)
    size = sum(p.stat().st_size for p in written) / 2**20
    print(f"wrote {len(written)} files ({size:.1f} MiB) to {args.to}; use --dataset {args.dataset} "
          f"--data-dir {args.to}")
    return 0
