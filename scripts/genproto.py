"""Regenerate the protobuf and gRPC stubs shipped in ``router/_proto``.

    python scripts/genproto.py           # write the stubs
    python scripts/genproto.py --check   # exit 1 if the committed stubs are stale

The generated modules import each other as ``meshgate.v1``; they are rewritten
to import through ``router._proto`` so that the stubs live inside the package.
"""

from __future__ import annotations

import argparse
import filecmp
import pathlib
import re
import shutil
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "router" / "_proto"
IMPORT = re.compile(rb"^from meshgate\.v1 import", re.MULTILINE)


def generate(out: pathlib.Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    well_known = pathlib.Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for path in out.rglob("*.py*"):
        path.write_bytes(IMPORT.sub(b"from router._proto.meshgate.v1 import", path.read_bytes()))
    for package in [out, *[d for d in out.rglob("*") if d.is_dir()]]:
        (package / "__init__.py").touch()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if router/_proto is stale")
    opts = parser.parse_args()
    if not opts.check:
        shutil.rmtree(OUT_DIR, ignore_errors=True)
        OUT_DIR.mkdir(parents=True)
        generate(OUT_DIR)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = pathlib.Path(tmp)
        generate(fresh)
        stale = [
            str(p.relative_to(fresh))
            for p in fresh.rglob("*")
            if (p.is_file()
            and not (OUT_DIR / p.relative_to(fresh)).is_file())
            or (p.is_file()
            and not filecmp.cmp(p, OUT_DIR / p.relative_to(fresh), shallow=False))
        ]
    if stale:
        print("stale generated stubs (run `make proto`):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    print("generated stubs are fresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
