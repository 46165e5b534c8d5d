"""Print the install prefix of a dependency that came as a PyPI wheel.

Used by CMakeLists.txt: ``python locate_wheel_deps.py DIST RELATIVE_FILE``
prints the directory ``P`` such that ``P/RELATIVE_FILE`` is a file installed by
the distribution ``DIST`` (found through its RECORD, so it works inside pip's
isolated build environments, virtual environments and user installs alike).
Exits with status 1 and prints nothing when the distribution is not installed.
"""
import sys
from importlib import metadata


def main(dist_name: str, relative: str) -> int:
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return 1
    suffix = relative.replace("\\", "/")
    for f in dist.files or ():
        posix = str(f).replace("\\", "/")
        if posix.endswith(suffix):
            path = str(f.locate().resolve()).replace("\\", "/")
            print(path[: -len(suffix)].rstrip("/"))
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
