"""The ``poreloop`` command line: twin list / generate / show and the one-line error policy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from scipy import ndimage

from poreloop.agent.cli import main
from poreloop.twins.manufacturing import TWINS
from poreloop.twins.manufacturing.base import Shape
from poreloop.twins.microstructure import Microstructure
from poreloop.twins.space import Recipe

SCRIPT = Path(sys.executable).with_name("poreloop")
PORELOOP = str(SCRIPT) if SCRIPT.is_file() else shutil.which("poreloop")
needs_script = pytest.mark.skipif(
    PORELOOP is None, reason="the poreloop console script is not installed"
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, pattern: str) -> None:
    assert code == 2
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert err.startswith("poreloop: error: ")
    assert "Traceback" not in err
    assert re.search(pattern, err), err


# --- help and usage ---------------------------------------------------------------------


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "twin" in out
    code, out, _ = run(capsys, "twin", "generate", "--help")
    assert code == 0
    assert "--set KEY=VALUE" in out


@pytest.mark.parametrize(
    ("phases", "named"),
    [
        ("0=pore,0=active", "phase id 0 is named twice"),
        ("0=pore,1=pore", "a phase name is given to two ids"),
    ],
)
def test_phases_are_checked_before_anything_is_read(
    capsys: pytest.CaptureFixture[str], phases: str, named: str
) -> None:
    code, _, err = run(capsys, "critic", "evaluate", "missing.tif", "--phases", phases)
    assert code == 2 and named in err and err.count("\n") == 1


def test_version_is_the_installed_one(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"poreloop {version('poreloop')}")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["twin"],
        ["twin", "bogus"],
        ["twin", "generate", "toy_field"],  # no --out
        ["twin", "generate", "toy_field", "--set", "solid_fraction", "--out", "x.tif"],
        ["twin", "generate", "toy_field", "--shape", "32,x", "--out", "x.tif"],
        ["twin", "generate", "toy_field", "--size", "0", "--out", "x.tif"],
        ["twin", "generate", "toy_field", "--size", "32", "--shape", "32,32,32", "--out", "x.tif"],
        ["twin", "list", "--yaml"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], toy_twin, argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("poreloop: error: ") and err.count("\n") == 1  # one line, no usage dump


# --- twin list --------------------------------------------------------------------------


def test_list_table(capsys: pytest.CaptureFixture[str], toy_twin) -> None:
    code, out, _ = run(capsys, "twin", "list")
    assert code == 0
    block = out[out.index("toy_field") :].split("\n\n")[0]
    assert "phases: 0 pore, 1 solid" in block
    assert "constraint: 1*solid_fraction + 0.01*n_grains <= 1.2" in block
    rows = {line.split()[0]: line.split() for line in block.splitlines()[2:]}
    assert rows["solid_fraction"][:5] == ["solid_fraction", "continuous", "1", "[0.2,", "0.8]"]
    assert rows["n_grains"][:6] == ["n_grains", "integer", "1", "[1,", "64]", "8"]
    assert rows["mode"][3:6] == ["{blobs,", "sheets}", "blobs"]
    assert rows["voxel_size_um"][:3] == ["voxel_size_um", "continuous", "um"]
    assert rows["voxel_size_um"][-4:] == ["edge", "of", "one", "voxel"]


def test_list_json(capsys: pytest.CaptureFixture[str], toy_twin) -> None:
    code, out, _ = run(capsys, "twin", "list", "--json")
    assert code == 0
    entries = json.loads(out)
    assert [e["name"] for e in entries] == sorted(TWINS)
    toy = next(e for e in entries if e["name"] == "toy_field")
    assert set(toy) == {"name", "description", "phases", "dims", "parameters", "constraints"}
    assert toy["phases"] == {"0": "pore", "1": "solid"}
    assert toy["dims"] == [3]
    assert toy["constraints"] == ["1*solid_fraction + 0.01*n_grains <= 1.2"]
    keys = {"name", "kind", "unit", "low", "high", "default", "choices", "description"}
    assert all(set(p) == keys for p in toy["parameters"])
    params = {p["name"]: p for p in toy["parameters"]}
    assert list(params) == ["solid_fraction", "n_grains", "mode", "voxel_size_um"]
    assert params["n_grains"] | {"description": ""} == {
        "name": "n_grains",
        "kind": "integer",
        "unit": "1",
        "low": 1,
        "high": 64,
        "default": 8,
        "choices": None,
        "description": "",
    }
    assert params["mode"]["choices"] == ["blobs", "sheets"]
    assert params["mode"]["low"] is None
    assert params["voxel_size_um"]["unit"] == "um"


def test_list_of_an_empty_registry(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setattr("poreloop.twins.manufacturing.TWINS", {})
    assert run(capsys, "twin", "list") == (0, "no twins registered\n", "")
    assert run(capsys, "twin", "list", "--json")[:2] == (0, "[]\n")


# --- twin generate ----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tif", ".npz"])
def test_generate_writes_a_structure_that_loads_back(
    capsys: pytest.CaptureFixture[str], toy_twin, tmp_path: Path, suffix: str
) -> None:
    out_path = tmp_path / f"toy{suffix}"
    code, out, err = run(
        capsys,
        "twin", "generate", "toy_field",
        "--set", "solid_fraction=0.35",
        "--set", "mode=sheets",
        "--set", "n_grains=4",
        "--shape", "24,20,16",
        "--seed", "5",
        "--out", str(out_path),
    )  # fmt: skip
    assert (code, err) == (0, "")
    micro = Microstructure.load(out_path)
    assert micro.shape == (24, 20, 16)
    assert micro.voxel_size_um == 1.0
    assert micro.provenance.twin == "toy_field"
    assert micro.provenance.seed == 5
    assert micro.provenance.recipe == {
        "solid_fraction": 0.35,
        "n_grains": 4,
        "mode": "sheets",
        "voxel_size_um": 1.0,  # the default fills what --set leaves out
    }
    fractions = micro.phase_fractions()
    assert fractions["solid"] == pytest.approx(0.35, abs=1 / micro.labels.size)
    assert f"wrote {out_path}" in out
    assert "shape 24x20x16" in out
    for name, fraction in fractions.items():
        assert f"  {name:<5}  {fraction:.4f}" in out


def test_generate_is_reproducible_per_seed(
    capsys: pytest.CaptureFixture[str], toy_twin, tmp_path: Path
) -> None:
    labels = []
    for seed, name in [("1", "a"), ("1", "b"), ("2", "c")]:
        path = tmp_path / f"{name}.npz"
        assert (
            run(
                capsys,
                "twin",
                "generate",
                "toy_field",
                "--size",
                "16",
                "--seed",
                seed,
                "--out",
                str(path),
            )[0]
            == 0
        )
        labels.append(Microstructure.load(path).labels)
    assert labels[0].shape == (16, 16, 16)
    np.testing.assert_array_equal(labels[0], labels[1])
    assert not np.array_equal(labels[0], labels[2])


def test_generate_with_a_reference(
    capsys: pytest.CaptureFixture[str],
    toy_reference_twin,
    toy_micro: Microstructure,
    tmp_path: Path,
) -> None:
    reference = toy_micro.save(tmp_path / "measured.tif")
    out_path = tmp_path / "twin.npz"
    code, _, err = run(
        capsys,
        "twin", "generate", "toy_reference", "--reference", str(reference),
        "--size", "16", "--out", str(out_path),
    )  # fmt: skip
    assert (code, err) == (0, "")
    made = Microstructure.load(out_path).phase_fractions()["solid"]
    assert made == pytest.approx(toy_micro.phase_fractions()["solid"], abs=1e-3)


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["toy_fild"], r"unknown twin 'toy_fild'; did you mean 'toy_field'\?"),
        (
            ["toy_field", "--set", "solid_fraction=0.9"],
            r"'solid_fraction' = 0.9 is above its upper bound 0.8",
        ),
        (["toy_field", "--set", "n_grains=0"], r"'n_grains' = 0 is below its lower bound 1"),
        (
            ["toy_field", "--set", "solid_fractio=0.5"],
            r"unknown parameter 'solid_fractio'; did you mean 'solid_fraction'\?",
        ),
        (["toy_field", "--set", "n_grains=abc"], r"'n_grains' expects an integer, got 'abc'"),
        (
            ["toy_field", "--set", "solid_fraction=half"],
            r"'solid_fraction' expects a number, got 'half'",
        ),
        (["toy_field", "--set", "n_grains=2.5"], r"'n_grains' expects an integer, got 2.5"),
        (["toy_field", "--set", "n_grains=nan"], r"'n_grains' expects an integer, got nan"),
        (["toy_field", "--set", "solid_fraction=inf"], r"'solid_fraction' expects a finite number"),
        (
            ["toy_field", "--set", "mode=wavy"],
            r"'mode' expects one of \['blobs', 'sheets'\], got 'wavy'",
        ),
        (["toy_field", "--set", "mode=blobs", "--set", "mode=sheets"], r"'mode' is set twice"),
        (
            ["toy_field", "--set", "solid_fraction=0.8", "--set", "n_grains=60"],
            r"breaks the constraint 1\*solid_fraction \+ 0.01\*n_grains <= 1.2",
        ),
        (["toy_field", "--shape", "32,4,16"], r"at least 8 voxels, got \(32, 4, 16\)"),
        (["toy_field", "--shape", "32,32"], r"makes 3-D boxes, got the 2-D shape \(32, 32\)"),
        (["toy_field", "--reference", "measured.tif"], r"twin 'toy_field' takes no --reference"),
        (["toy_reference"], r"twin 'toy_reference' needs a measured structure: add --reference"),
        (["toy_reference", "--reference", "absent.tif"], r"no such file: 'absent.tif'"),
    ],
)
def test_generate_user_mistakes_are_one_line(
    capsys: pytest.CaptureFixture[str],
    toy_twin,
    toy_reference_twin,
    tmp_path: Path,
    argv: list[str],
    pattern: str,
) -> None:
    code, out, err = run(capsys, "twin", "generate", *argv, "--out", str(tmp_path / "x.tif"))
    assert_one_line_error(code, err, pattern)
    assert out == ""
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.parametrize(
    ("out", "pattern"),
    [
        ("x.png", r"cannot write 'x.png': expected a suffix .tif, .tiff, .npz"),
        ("no/such/dir/x.tif", r"no directory 'no/such/dir'; create it first"),
    ],
)
def test_generate_checks_the_output_first(
    capsys: pytest.CaptureFixture[str], toy_twin, out: str, pattern: str
) -> None:
    assert_one_line_error(*run(capsys, "twin", "generate", "toy_field", "--out", out)[::2], pattern)


def test_a_bug_is_not_hidden_as_a_user_error(toy_twin, monkeypatch, tmp_path: Path) -> None:
    class Broken(toy_twin):
        name: ClassVar[str] = "broken"

        def _generate(self, recipe: Recipe, shape: Shape, rng: np.random.Generator) -> np.ndarray:
            raise RuntimeError("a bug in a twin")

    monkeypatch.setitem(TWINS, "broken", Broken)
    with pytest.raises(RuntimeError, match="a bug in a twin"):
        main(["twin", "generate", "broken", "--size", "8", "--out", str(tmp_path / "x.tif")])


# --- twin show --------------------------------------------------------------------------


def test_show_writes_a_png(
    capsys: pytest.CaptureFixture[str], toy_micro: Microstructure, tmp_path: Path
) -> None:
    path = toy_micro.save(tmp_path / "toy.tif")
    code, out, err = run(capsys, "twin", "show", str(path), "--voxel-size-um", "0.5")
    assert (code, err) == (0, "")
    png = tmp_path / "toy.png"  # the default: FILE with .png
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in out
    assert "shape 24x20x16" in out


@pytest.mark.parametrize(
    ("name", "content", "extra", "pattern"),
    [
        ("absent.tif", None, [], r"no such file: '.*absent.tif'"),
        ("noise.tif", b"\x00\x01not a tiff" * 50, [], r"cannot read '.*noise.tif': TiffFileError"),
        ("notes.txt", b"hello", [], r"cannot read '.*notes.txt': expected a .tif, .tiff or .npz"),
        ("ok.npz", "micro", ["--out", "slices.xyz"], r"cannot write a picture to 'slices.xyz'"),
    ],
)
def test_show_bad_files_are_one_line(
    capsys: pytest.CaptureFixture[str],
    toy_micro: Microstructure,
    tmp_path: Path,
    name: str,
    content: bytes | str | None,
    extra: list[str],
    pattern: str,
) -> None:
    path = tmp_path / name
    if content == "micro":
        toy_micro.save(path)
    elif content is not None:
        path.write_bytes(content)
    code, out, err = run(capsys, "twin", "show", str(path), *extra)
    assert_one_line_error(code, err, pattern)
    assert out == ""


# --- the installed console script -------------------------------------------------------


@needs_script
@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["twin", "show", "absent.tif"], r"no such file: 'absent.tif'"),
        (["twin", "generate", "no_such_twin", "--out", "x.tif"], r"unknown twin 'no_such_twin'"),
    ],
)
def test_console_script_prints_one_line_and_exits_2(
    tmp_path: Path, argv: list[str], pattern: str
) -> None:
    done = subprocess.run(
        [PORELOOP, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.stdout == ""
    assert_one_line_error(done.returncode, done.stderr, pattern)


@needs_script
def test_console_script_lists_twins_as_json(tmp_path: Path) -> None:
    done = subprocess.run(
        [PORELOOP, "twin", "list", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stderr) == (0, "")
    entries = json.loads(done.stdout)
    assert isinstance(entries, list)
    for entry in entries:
        assert {"name", "phases", "parameters"} <= set(entry)
        assert any(p["name"] == "voxel_size_um" for p in entry["parameters"])
        assert "0" in entry["phases"]  # id 0 is always pore


def test_help_and_list_do_not_import_matplotlib() -> None:
    probe = (
        "import sys; from agent.cli import main; "
        "codes = [main(['--help']), 'matplotlib' in sys.modules, main(['twin', 'list']), "
        "'matplotlib' in sys.modules]; print(codes, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.stderr.strip() == "[0, False, 0, False]"


def test_generate_reads_a_recipe_file_and_set_overrides_it(toy_twin, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("solid_fraction: 0.3\nmode: sheets\n")
    out = tmp_path / "x.npz"
    argv = ["twin", "generate", "toy_field", "--recipe", str(recipe), "--set", "mode=blobs"]
    assert main([*argv, "--size", "16", "--out", str(out)]) == 0
    provenance = Microstructure.load(out).provenance
    assert provenance.recipe["solid_fraction"] == 0.3
    assert provenance.recipe["mode"] == "blobs"


@pytest.mark.parametrize(
    ("text", "message"),
    [("- 1\n- 2\n", "must be a YAML mapping"), ("a: [\n", "cannot read recipe")],
)
def test_a_bad_recipe_file_is_one_line_exit_2(toy_twin, tmp_path, capsys, text, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    argv = [
        "twin",
        "generate",
        "toy_field",
        "--recipe",
        str(recipe),
        "--out",
        str(tmp_path / "x.npz"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def _micrograph(tmp_path):
    """A 48 x 48 two-phase micrograph (smoothed noise, 0.5 µm voxels) for the reconstruct twin."""
    rng = np.random.default_rng(0)
    image = (ndimage.gaussian_filter(rng.standard_normal((48, 48)), 2, mode="wrap") > 0).astype(
        np.uint8
    )
    reference = tmp_path / "micrograph.tif"
    Microstructure(image, 0.5, {0: "pore", 1: "solid"}).save(reference)
    return reference


def test_generate_reports_how_close_a_reconstruction_came(tmp_path, capsys):
    reference = _micrograph(tmp_path)
    out = tmp_path / "recon.tif"
    argv = ["twin", "generate", "reconstruct", "--reference", str(reference), "--shape", "48,48"]
    assert main([*argv, "--out", str(out)]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("reconstruction"))
    error = float(re.search(r"correlation error ([0-9.]+)", line).group(1))
    assert error < 0.02 and "converged" in line
    assert Microstructure.load(out).shape == (48, 48)


def test_generate_reconstruct_shows_its_sweeps_unless_quiet(tmp_path, capsys):
    reference = _micrograph(tmp_path)
    argv = ["twin", "generate", "reconstruct", "--reference", str(reference), "--shape", "48,48"]
    argv += ["--set", "tolerance=0.0001", "--set", "max_sweeps=5", "--out", str(tmp_path / "r.tif")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "5 sweeps" in captured.out
    lines = captured.err.splitlines()
    assert [
        int(re.fullmatch(r"reconstruct: sweep (\d+), S2 correlation error [0-9.]+", line)[1])
        for line in lines
    ] == [1, 2, 3, 4, 5]
    assert main([*argv, "--quiet"]) == 0
    assert capsys.readouterr().err.count("reconstruct: sweep") == 0


def test_train_gan_writes_a_generator_the_gan_twin_uses(tmp_path, capsys):
    field = ndimage.gaussian_filter(np.random.default_rng(0).standard_normal((32, 32, 32)), 2)
    image = tmp_path / "image.npz"
    Microstructure((field > 0).astype(np.uint8), 0.5, {0: "pore", 1: "solid"}).save(image)
    model = tmp_path / "gan.pt"
    train = ["twin", "train-gan", str(image), "--out", str(model), "--steps", "2"]
    assert main(train) == 0
    assert capsys.readouterr().out.startswith(f"wrote {model}: 2 steps")
    out = tmp_path / "made.npz"
    argv = ["twin", "generate", "gan", "--model", str(model), "--size", "40", "--out", str(out)]
    assert main(argv) == 0
    assert Microstructure.load(out).shape == (40, 40, 40)
    code, _, err = run(capsys, *train, "--patch", "64")
    assert_one_line_error(code, err, r"patches of 64 voxels a side; the training image is")


def test_a_voxel_size_nobody_gave_is_said_to_be_assumed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A foreign stack without a voxel size: the 1 µm assumed is said on stderr and in the JSON;
    --voxel-size-um replaces it and the warning goes."""
    import tifffile

    labels = np.zeros((16, 16, 16), dtype=np.uint8)
    labels[:, :, 8:] = 1
    tifffile.imwrite(tmp_path / "foreign.tif", np.moveaxis(labels, 2, 0))
    path = str(tmp_path / "foreign.tif")
    code, out, err = run(capsys, "critic", "evaluate", path, "--json")
    assert code == 0 and "stores no voxel size: assumed 1 µm" in err
    assert json.loads(out)["assumed"] == {"voxel_size_um": 1.0}
    code, out, err = run(capsys, "critic", "evaluate", path, "--json", "--voxel-size-um", "0.5")
    assert (code, err) == (0, "") and json.loads(out)["assumed"] == {}
    assert json.loads(out)["voxel_size_um"] == 0.5


def test_a_twin_s_file_wraps_where_the_twin_s_boxes_do_unless_told_otherwise(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from poreloop.twins.manufacturing.electrode import ElectrodeTwin

    path = (
        ElectrodeTwin()
        .generate({"voxel_size_um": 0.5}, shape=(24, 24, 24))
        .save(tmp_path / "electrode.tif")
    )
    taus = {}
    for periodic in ([], ["--periodic", "x,y"], ["--periodic", "none"]):
        code, out, _ = run(
            capsys, "critic", "evaluate", str(path), "--axes", "z", "--json", *periodic
        )
        assert code == 0
        taus[tuple(periodic)] = json.loads(out)["properties"]["tau_pore_z"]
    assert taus[()] == taus[("--periodic", "x,y")] != taus[("--periodic", "none")]
    code, _, err = run(capsys, "critic", "evaluate", str(path), "--periodic", "xy")
    assert code == 2 and "expected axes among x,y,z like x,y, or none, got 'xy'" in err


# --- grey-value scans -------------------------------------------------------------------


def test_a_scan_is_shown_refused_as_labels_and_segmented(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from poreloop.instruments.tomography import render, write_scan
    from poreloop.twins.manufacturing.electrode import ElectrodeTwin

    micro = ElectrodeTwin().generate({}, shape=(32, 32, 32), seed=1)
    grey = render(micro, micro.voxel_size_um, 1.0, np.random.default_rng(0))
    scan = tmp_path / "scan.tif"
    write_scan(scan, grey, micro.voxel_size_um, "S00001")

    code, out, err = run(capsys, "twin", "show", str(scan))
    assert (code, err) == (0, "") and "grey-value scan" in out
    assert (tmp_path / "scan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run(capsys, "critic", "evaluate", str(scan))
    assert_one_line_error(code, err, r"grey values .*segment it first: poreloop segment")

    labels = tmp_path / "labels.tif"
    code, out, err = run(
        capsys, "segment", str(scan), "--phases", "pore,active,cbd", "--out", str(labels)
    )
    assert (code, err) == (0, "") and "segmented by tomograph" in out
    segmented = Microstructure.load(labels)
    assert segmented.phases == micro.phases and segmented.voxel_size_um == micro.voxel_size_um
    assert np.mean(segmented.labels == micro.labels) > 0.85


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--phases", "pore,1=active"], r"expected ID=NAME,\.\.\. like 0=pore"),
        (["--phases", "pore,glass"], r"no X-ray attenuation known for phase 'glass'"),
        (["--phases", "pore,active", "--method", "unet"], r"unknown segmentation method 'unet'"),
        (["--phases", "pore,active", "--out", "no/dir/x.tif"], r"no directory 'no/dir'"),
    ],
)
def test_segment_mistakes_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], pattern: str
) -> None:
    import tifffile

    scan = tmp_path / "scan.tif"
    tifffile.imwrite(scan, np.random.default_rng(0).integers(0, 60000, (8, 8, 8), np.uint16))
    out = ["--out", str(tmp_path / "labels.tif")] if "--out" not in argv else []
    code, _, err = run(capsys, "segment", str(scan), *argv, *out)
    assert_one_line_error(code, err, pattern)
