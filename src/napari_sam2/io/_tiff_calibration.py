"""A TIFF's calibration: its axis names, pixel size and units, from OME-XML or ImageJ metadata.

Read by :func:`~napari_sam2.io.stacks.open_stack` while the file is open for its damage
check (:mod:`._tiff_checks`), and carried to the labels it writes (NGFF scale and units).
Calibration is a bonus: metadata that does not parse gives no calibration, never an error.
"""

from __future__ import annotations

from typing import Any

#: NGFF unit names for the length and time units TIFF metadata spells in many ways
_LENGTH_UNITS = {
    "m": "meter", "meter": "meter", "cm": "centimeter", "centimeter": "centimeter", "mm": "millimeter",
    "millimeter": "millimeter", "um": "micrometer", "µm": "micrometer", "\u03bcm": "micrometer",
    "micron": "micrometer", "microns": "micrometer", "micrometer": "micrometer", "nm": "nanometer",
    "nanometer": "nanometer", "inch": "inch",
}  # fmt: skip
_TIME_UNITS = {"s": "second", "sec": "second", "second": "second", "ms": "millisecond", "millisecond": "millisecond",
               "min": "minute", "minute": "minute", "h": "hour", "hour": "hour"}  # fmt: skip


def _length_unit(text: Any) -> str | None:
    key = str(text or "").strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ").lower()
    return _LENGTH_UNITS.get(key)


#: a TIFF's axis names, pixel size and units, per axis of its first series (None where it says nothing)
TiffLayout = tuple[tuple[str, ...] | None, tuple[float, ...] | None, tuple[str | None, ...] | None]


def tiff_layout(tif: Any, axes: str) -> TiffLayout:
    """The axis names, pixel size and units of an open TIFF whose first series has ``axes``.

    Axis names come from the series axes tifffile reads from ImageJ and OME metadata
    (``T``, ``Z``; ``C`` of a 4-D hyperstack and ``S`` samples are channels; a plain stack's
    ``Q``/``I`` and the ``C`` tifffile gives any 3-D ImageJ stack are unknown, ``?``). Pixel
    size: OME ``PhysicalSizeX/Y/Z`` (+ units) and ``TimeIncrement``; else ImageJ's
    ``spacing``, ``finterval`` and ``unit`` with the X/Y resolution tags; else the resolution
    tags with a centimetre or inch unit.
    """
    ndim = len(axes)
    names = tuple(
        "c" if a == "S" or (a == "C" and ndim == 4) else a.lower() if a in "TZYX" else "?" for a in axes
    )
    try:
        sizes, units = _ome_sizes(tif.ome_metadata) if tif.is_ome else ({}, {})
        if not sizes:
            sizes, units = _imagej_sizes(tif.imagej_metadata or {}, tif.pages.first, imagej=tif.is_imagej)
    except Exception:  # noqa: BLE001 - calibration is a bonus: the file itself was judged sound
        return None, None, None
    if not sizes:
        return names, None, None
    return names, tuple(float(sizes.get(n, 1.0)) for n in names), tuple(units.get(n) for n in names)


def _ome_sizes(xml: str | None) -> tuple[dict[str, float], dict[str, str | None]]:
    import xml.etree.ElementTree as ET

    if not xml:
        return {}, {}
    root = ET.fromstring(xml)
    pixels = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
    if pixels is None:
        return {}, {}
    sizes: dict[str, float] = {}
    units: dict[str, str | None] = {}
    for axis in "xyz":
        value = pixels.get(f"PhysicalSize{axis.upper()}")
        if value is not None and float(value) > 0:
            sizes[axis] = float(value)
            units[axis] = _length_unit(pixels.get(f"PhysicalSize{axis.upper()}Unit", "µm"))
    if pixels.get("TimeIncrement") is not None and float(pixels.get("TimeIncrement")) > 0:
        sizes["t"] = float(pixels.get("TimeIncrement"))
        units["t"] = _TIME_UNITS.get(str(pixels.get("TimeIncrementUnit", "s")).lower())
    return sizes, units


def _imagej_sizes(meta: dict[str, Any], page: Any, *, imagej: bool) -> tuple[dict[str, float], dict[str, str | None]]:
    sizes: dict[str, float] = {}
    units: dict[str, str | None] = {}
    res_unit = getattr(page.tags.get("ResolutionUnit"), "value", 1)
    unit = _length_unit(meta.get("unit")) if imagej else {2: "inch", 3: "centimeter"}.get(int(res_unit))
    for axis, tag in (("x", "XResolution"), ("y", "YResolution")):
        value = getattr(page.tags.get(tag), "value", None)
        if unit is None or not value or value[0] <= 0 or value[1] <= 0 or tuple(value) == (1, 1):
            continue
        size = value[1] / value[0]  # the tag counts pixels per unit
        if unit in ("inch", "centimeter"):  # as resolution tags mean them: say it in micrometres
            size *= 25400.0 if unit == "inch" else 10000.0
        sizes[axis], units[axis] = size, "micrometer" if unit in ("inch", "centimeter") else unit
    if imagej and meta.get("spacing") and float(meta["spacing"]) > 0 and unit is not None:
        sizes["z"], units["z"] = float(meta["spacing"]), unit
    if imagej and meta.get("finterval") and float(meta["finterval"]) > 0:
        sizes["t"], units["t"] = float(meta["finterval"]), _TIME_UNITS.get(str(meta.get("tunit", "s")).lower(), "second")
    return sizes, units
