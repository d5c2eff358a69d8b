"""Prompt files: napari's own Points/Shapes CSVs, our JSON format, and the Prompt dataclass."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from napari_sam2.errors import InputError
from napari_sam2.io import (
    Prompt,
    merge_prompts,
    napari_to_xy,
    prompts_to_dict,
    read_points_csv,
    read_prompts,
    read_prompts_json,
    read_shapes_csv,
    read_stack_kind,
    write_prompts_json,
    xy_to_napari,
)

# A non-square stack, (T, H, W) = (4, 30, 50), and coordinates whose x and y differ.
SHAPE = (4, 30, 50)


@pytest.fixture(scope="module")
def napari_layers() -> ModuleType:
    """napari's layer classes, with the builtin writers registered (no viewer, no Qt)."""
    pytest.importorskip("napari")
    from napari.plugins import _initialize_plugins

    _initialize_plugins()
    import napari.layers

    return napari.layers


def save_points(layers: ModuleType, path: Path, data: list, **features: list) -> Path:
    written = layers.Points(np.array(data, dtype=float), features=features or None).save(str(path))
    assert written == [str(path)]
    return path


def test_napari_points_csv_gives_xy_not_yx(napari_layers: ModuleType, tmp_path: Path) -> None:
    # (t, row, col): row = y, col = x
    data = [[2, 5.5, 40.25], [2, 20, 3], [0, 10, 45]]
    path = save_points(napari_layers, tmp_path / "pts.csv", data, object=[1, 1, 2], positive=[True, False, True])
    header = path.read_text().splitlines()[0]
    assert header == "index,axis-0,axis-1,axis-2,object,positive"  # what napari 0.9 writes
    prompts = read_points_csv(path, axis=0, ndim=3, shape=SHAPE)
    assert [(p.frame, p.obj_id) for p in prompts] == [(0, 2), (2, 1)]
    np.testing.assert_array_equal(prompts[0].points_xy, [[45, 10]])
    np.testing.assert_array_equal(prompts[1].points_xy, [[40.25, 5.5], [3, 20]])
    np.testing.assert_array_equal(prompts[1].labels, [1, 0])
    assert prompts[1].points_xy.dtype == np.float32 and prompts[1].labels.dtype == np.int32


def test_napari_points_csv_with_text_feature_writes_true_false(napari_layers: ModuleType, tmp_path: Path) -> None:
    data = [[1, 5, 40], [1, 6, 41]]
    path = save_points(
        napari_layers, tmp_path / "p.csv", data, object=[3, 3], positive=[False, True], note=["a,b", "c"]
    )
    assert path.read_text().splitlines()[1] == '0,1.0,5.0,40.0,3,False,"a,b"'
    (prompt,) = read_points_csv(path)
    assert (prompt.frame, prompt.obj_id) == (1, 3)
    np.testing.assert_array_equal(prompt.labels, [0, 1])


def test_napari_2d_points_without_features_are_positive_object_1(napari_layers: ModuleType, tmp_path: Path) -> None:
    path = save_points(napari_layers, tmp_path / "p2.csv", [[5, 40], [25, 2]])
    (prompt,) = read_points_csv(path, shape=(30, 50))
    assert (prompt.frame, prompt.obj_id) == (0, 1)
    np.testing.assert_array_equal(prompt.points_xy, [[40, 5], [2, 25]])
    np.testing.assert_array_equal(prompt.labels, [1, 1])


def test_points_axis_picks_the_frame_column(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("index,axis-0,axis-1,axis-2,object,positive\n0,5,40,3,1,1\n")
    (prompt,) = read_points_csv(path, axis=2, shape=(30, 50, 4))
    assert prompt.frame == 3
    np.testing.assert_array_equal(prompt.points_xy, [[40, 5]])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("0,1,5,40,1,maybe", "line 2: positive must be True/False"),
        ("0,1,5,40,0,1", "line 2: object must be a whole number >= 1"),
        ("0,1,5,abc,1,1", "line 2: axis-2 must be a number"),
        ("0,1,5,nan,1,1", "line 2: axis-2 is 'nan'"),
        ("0,1,5,40,1", "line 2: 5 values but the header has 6 columns"),
        ("0,1,5,40,1,1\n1,9,5,40,1,1", "line 3 (point 1): frame 9 is outside the stack (4 frames)"),
        ("0,1,5,50,1,1", "line 2 (point 0): x=50 is outside the image width 50"),
        ("0,1,-1,4,1,1", "line 2 (point 0): y=-1 is outside the image height 30"),
    ],
)
def test_bad_points_csv_names_file_and_line(tmp_path: Path, rows: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("index,axis-0,axis-1,axis-2,object,positive\n" + rows + "\n")
    with pytest.raises(InputError) as err:
        read_points_csv(path, shape=SHAPE)
    assert str(path) in str(err.value) and message in str(err.value)


def test_points_csv_structure_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("index,a,b\n0,1,2\n")
    with pytest.raises(InputError, match="no 'axis-0'"):
        read_points_csv(path)
    path.write_text("index,axis-0,axis-1,axis-2,axis-3\n0,1,2,3,4\n")
    with pytest.raises(InputError, match="4-D coordinates"):
        read_points_csv(path)
    path.write_text("index,axis-0,axis-1\n0,1,2\n")
    with pytest.raises(InputError, match="prompts are 2-D but the image is 3-D"):
        read_points_csv(path, ndim=3)
    with pytest.raises(InputError, match="not found"):
        read_points_csv(tmp_path / "missing.csv")


def test_napari_shapes_csv_rectangles_become_boxes(napari_layers: ModuleType, tmp_path: Path) -> None:
    rect_a = np.array([[1, 10, 20], [1, 10, 40], [1, 30, 40], [1, 30, 20]])  # rows 10-30 (y), cols 20-40 (x)
    rect_b = np.array([[0, 2, 3], [0, 2, 9], [0, 12, 9], [0, 12, 3]])
    path = tmp_path / "boxes.csv"
    napari_layers.Shapes([rect_a, rect_b], shape_type="rectangle").save(str(path))
    assert path.read_text().splitlines()[:2] == [
        "index,shape-type,vertex-index,axis-0,axis-1,axis-2",
        "0,rectangle,0,1.0,10.0,20.0",
    ]
    prompts = read_shapes_csv(path, shape=SHAPE)
    assert [(p.frame, p.obj_id) for p in prompts] == [(0, 2), (1, 1)]  # ids in file order
    # x0, y0, x1, y1; row 30 overshoots the 30-pixel-high image and is clipped to its edge
    np.testing.assert_array_equal(prompts[1].box, [20, 10, 40, 29.5])
    np.testing.assert_array_equal(read_shapes_csv(path)[1].box, [20, 10, 40, 30])  # no shape, no clipping
    np.testing.assert_array_equal(prompts[0].box, [3, 2, 9, 12])
    assert prompts[0].points_xy is None


def test_shapes_csv_other_shapes_are_errors(napari_layers: ModuleType, tmp_path: Path) -> None:
    rect = np.array([[0, 2, 3], [0, 2, 9], [0, 12, 9], [0, 12, 3]])
    poly = np.array([[0, 5, 5], [0, 8, 9], [0, 1, 9]])
    path = tmp_path / "s.csv"
    napari_layers.Shapes([rect, poly], shape_type=["rectangle", "polygon"]).save(str(path))
    with pytest.raises(InputError, match=r"s\.csv, line 6 \(shape 1\): a 'polygon' is not a box prompt"):
        read_shapes_csv(path)


def test_shapes_csv_object_column_and_frame_checks(tmp_path: Path) -> None:
    head = "index,shape-type,vertex-index,axis-0,axis-1,axis-2,object\n"
    path = tmp_path / "s.csv"
    path.write_text(head + "0,rectangle,0,2,1,1,7\n0,rectangle,1,2,5,9,7\n")
    (prompt,) = read_shapes_csv(path)
    assert (prompt.frame, prompt.obj_id) == (2, 7)
    np.testing.assert_array_equal(prompt.box, [1, 1, 9, 5])
    path.write_text(head + "0,rectangle,0,2,1,1,7\n0,rectangle,1,3,5,9,7\n")
    with pytest.raises(InputError, match="spans frames"):
        read_shapes_csv(path)
    second = "1,rectangle,0,2,3,3,7\n1,rectangle,1,2,6,6,7\n"
    path.write_text(head + "0,rectangle,0,2,1,1,7\n0,rectangle,1,2,5,9,7\n" + second)
    with pytest.raises(InputError, match="second box for object 7 on frame 2"):
        read_shapes_csv(path)


def test_json_round_trip_and_documented_example(tmp_path: Path) -> None:
    prompts = [
        Prompt(frame=0, obj_id=1, points_xy=np.array([[12.5, 40], [3, 4]]), labels=np.array([1, 0]), box=None),
        Prompt(frame=0, obj_id=2, points_xy=None, labels=None, box=np.array([5, 30, 20, 52])),
        Prompt(frame=3, obj_id=1, points_xy=np.array([[40.1, 7]]), labels=np.array([1]), box=np.array([1, 2, 3, 4])),
    ]
    path = tmp_path / "prompts.json"
    write_prompts_json(path, prompts, axis=0)
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and doc["axis"] == 0
    assert doc["objects"][0]["points"][0] == {"frame": 0, "x": 12.5, "y": 40.0, "positive": True}
    assert doc["objects"][0]["points"][2]["x"] == 40.1  # the shortest float32 repr, not 40.099998...
    assert read_prompts_json(path, axis=0, shape=(4, 60, 50)) == prompts
    assert read_prompts(path) == prompts
    example = {"version": 1, "axis": 0, "objects": [{"id": 1, "points": [{"frame": 0, "x": 12.5, "y": 40}]}]}
    path.write_text(json.dumps(example))
    (prompt,) = read_prompts_json(path)
    np.testing.assert_array_equal(prompt.labels, [1])  # "positive" defaults to true


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"version": 2, "objects": []}, "version: unsupported version 2"),
        ({"version": 1}, "missing field 'objects'"),
        ({"version": 1, "objects": [{"id": 0}]}, "objects[0].id: must be >= 1"),
        (
            {"version": 1, "objects": [{"id": 1, "points": [{"frame": 0, "x": "a", "y": 1}]}]},
            "objects[0].points[0].x: expected a finite number, got 'a'",
        ),
        (
            {"version": 1, "objects": [{"id": 1, "points": [{"frame": 0, "x": 1, "y": 1, "postive": True}]}]},
            "objects[0].points[0]: unknown field 'postive'",
        ),
        (
            {"version": 1, "objects": [{"id": 1, "boxes": [{"frame": 0, "x0": 5, "y0": 1, "x1": 2, "y1": 3}]}]},
            "objects[0].boxes[0]: a box needs x0 < x1",
        ),
        (
            {"version": 1, "objects": [{"id": 1, "points": [{"frame": 0, "x": 60, "y": 1}]}]},
            "objects[0].points[0]: x=60 is outside the image width 50",
        ),
        ({"version": 1, "axis": 1, "objects": []}, "axis: the prompts were made with video axis 1"),
        (
            {"version": 1, "objects": [{"id": 1, "boxes": [{"frame": 0, "x0": 60, "y0": 1, "x1": 70, "y1": 3}]}]},
            "objects[0].boxes[0]: the box lies outside the image",
        ),
        (
            {"version": 1, "objects": [{"id": 1, "boxes": [{"frame": 4, "x0": 0, "y0": 1, "x1": 7, "y1": 3}]}]},
            "objects[0].boxes[0]: frame 4 is outside the stack (4 frames)",
        ),
        ({"version": 1, "objects": [{"id": 1}, {"id": 1}]}, "objects[1].id: object id 1 appears twice"),
    ],
)
def test_bad_json_names_file_and_field(tmp_path: Path, doc: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError) as err:
        read_prompts_json(path, axis=0, shape=SHAPE)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_invalid_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"version": 1,\n "objects": [}\n')
    with pytest.raises(InputError, match=r"bad\.json, line 2 column 14: not valid JSON"):
        read_prompts_json(path)


def test_read_prompts_dispatches_on_suffix_and_header(tmp_path: Path) -> None:
    points = tmp_path / "p.csv"
    points.write_text("index,axis-0,axis-1\n0,5,40\n")
    boxes = tmp_path / "b.csv"
    boxes.write_text("index,shape-type,vertex-index,axis-0,axis-1\n0,rectangle,0,1,2\n0,rectangle,1,5,9\n")
    assert read_prompts(points)[0].points_xy is not None
    assert read_prompts(boxes)[0].box is not None
    with pytest.raises(InputError, match="Shapes CSV, not a Points CSV"):
        read_points_csv(boxes)
    with pytest.raises(InputError, match=r"unknown prompt file type '\.txt'"):
        read_prompts(tmp_path / "p.txt")


def test_merge_joins_points_and_boxes_of_the_same_object() -> None:
    clicks = [Prompt(frame=1, obj_id=1, points_xy=np.array([[3, 4]]), labels=np.array([1]), box=None)]
    boxes = [
        Prompt(frame=1, obj_id=1, points_xy=None, labels=None, box=np.array([0, 0, 9, 9])),
        Prompt(frame=0, obj_id=2, points_xy=None, labels=None, box=np.array([0, 0, 5, 5])),
    ]
    merged = merge_prompts(clicks, boxes)
    assert [(p.frame, p.obj_id) for p in merged] == [(0, 2), (1, 1)]
    assert merged[1].points_xy is not None and merged[1].box is not None
    other = [Prompt(frame=1, obj_id=1, points_xy=None, labels=None, box=np.array([1, 1, 9, 9]))]
    with pytest.raises(InputError, match="two different box prompts for object 1 on frame 1"):
        merge_prompts(boxes, other)


def test_prompt_validation_and_immutability() -> None:
    p = Prompt(frame=0, obj_id=1, points_xy=[[1, 2]], labels=[1], box=None)
    with pytest.raises(ValueError, match="read-only"):
        p.points_xy[0, 0] = 5
    for kwargs, message in [
        ({"points_xy": None, "labels": None, "box": None}, "needs points, a box or a mask"),
        ({"points_xy": [[1, 2]], "labels": [2], "box": None}, "labels must be 1"),
        ({"points_xy": [[1, np.inf]], "labels": [1], "box": None}, "NaN or infinite"),
        ({"points_xy": [[1, 2]], "labels": None, "box": None}, "given together"),
        ({"points_xy": None, "labels": None, "box": [5, 0, 5, 9]}, "x0 < x1"),
        ({"points_xy": None, "labels": None, "box": None, "mask": np.full((4, 4), 2)}, "only 0 and 1"),
    ]:
        with pytest.raises(InputError, match=message):
            Prompt(frame=0, obj_id=1, **kwargs)
    with pytest.raises(InputError, match="0 is background"):
        Prompt(frame=0, obj_id=0, points_xy=[[1, 2]], labels=[1], box=None)
    with pytest.raises(InputError, match="cannot be saved as JSON"):
        prompts_to_dict([Prompt(frame=0, obj_id=1, points_xy=None, labels=None, box=None, mask=np.ones((3, 3)))])


def test_coordinate_conversion_swaps_exactly_once() -> None:
    rc = np.array([[5.0, 40.0], [20.0, 3.0]])  # (row, col)
    xy = napari_to_xy(rc)
    np.testing.assert_array_equal(xy, [[40, 5], [3, 20]])
    np.testing.assert_array_equal(xy_to_napari(xy), rc)
    with pytest.raises(InputError, match=r"shape \(N, 2\)"):
        napari_to_xy(np.zeros((3, 3)))


def test_the_json_example_in_the_docs_reads(tmp_path: Path) -> None:
    docs = (Path(__file__).parents[1] / "docs" / "prompts.md").read_text()
    example = docs.split("```json\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.json"
    path.write_text(example)
    prompts = read_prompts(path, axis=0, shape=(10, 64, 96))
    assert [(p.frame, p.obj_id) for p in prompts] == [(0, 1), (3, 2), (9, 1)]
    np.testing.assert_array_equal(prompts[0].labels, [1, 0])
    np.testing.assert_array_equal(prompts[0].box, [5, 30, 20, 52])
    assert read_stack_kind(path) == "t"
    assert prompts_to_dict(prompts, stack_kind="t") == json.loads(example) | {
        "objects": [
            {
                **json.loads(example)["objects"][0],
                "points": [
                    {"frame": 0, "x": 12.5, "y": 40.0, "positive": True},
                    {"frame": 0, "x": 30.0, "y": 41.0, "positive": False},
                    {"frame": 9, "x": 14.0, "y": 44.0, "positive": True},
                ],
            },
            {"id": 2, "points": [], "boxes": [{"frame": 3, "x0": 60.0, "y0": 8.0, "x1": 90.0, "y1": 31.0}]},
        ]
    }
