"""Packaging: what each install provides, the declared lower bounds, and a start-up that does not load torch.

Commands run in subprocesses where the question is which modules a fresh interpreter loads, or how it behaves
without an optional package (simulated by ``sys.modules[name] = None``, which makes ``import name`` fail).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import streamvggt
import streamvggt.train
from streamvggt.extras import EXTRA_PURPOSES, MissingExtraError, require
from tests.helpers import load_script

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "streamvggt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
REQUIREMENT = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[([^\]]*)\])?\s*(.*)")

# The newest API of each package that the code relies on, the first release that has it (read in that release's
# own source), and the text in src/ that shows the code uses it.
NEWEST_APIS = [
    ("torch", "2.6", "torch.serialization.get_unsafe_globals_in_checkpoint", "get_unsafe_globals_in_checkpoint"),
    ("torch", "2.5", "torch.serialization.safe_globals", "torch.serialization.safe_globals"),
    ("huggingface_hub", "0.34", "huggingface_hub.cli.auth", "hf auth login"),
    ("huggingface_hub", "0.25", "huggingface_hub.errors.GatedRepoError", "errors.GatedRepoError"),
    ("pillow", "10.1", "PIL.Image.Image.has_transparency_data", "has_transparency_data"),
    ("av", "14.1", "av.video.frame.VideoFrame.rotation", "frame.rotation"),
    ("pycolmap", "4.0", "pycolmap.Reconstruction.add_image_with_trivial_frame", "add_image_with_trivial_frame"),
    ("OpenEXR", "3.3", "OpenEXR.File", "openexr.File("),
]


def requirements(section: str) -> dict[str, str]:
    """Distribution name (lower case) -> version specifier, for the core (``""``) or an extra."""
    listed = PYPROJECT["dependencies"] if section == "" else PYPROJECT["optional-dependencies"][section]
    parsed = {}
    for text in listed:
        name, extras, spec = REQUIREMENT.fullmatch(text).groups()
        parsed[name.lower()] = f"[{extras}]" if extras else spec
    return parsed


def release(version: str) -> tuple[int, ...]:
    numbers = [int(part) for part in version.split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


# ------------------------------------------------------------------------------------------------ lazy start-up


def test_importing_the_package_does_not_load_torch():
    result = run_python("import sys, streamvggt; print('torch' in sys.modules)")
    assert result.stdout.strip() == "False", result.stderr


def test_help_of_every_command_answers_without_loading_torch():
    commands = [[], ["reconstruct"], ["reconstruct-many"], ["view"], ["demo"], ["eval"], ["train"], ["data"]]
    commands += [["data", "check"], ["data", "import"]]
    code = f"""
import contextlib, io, json, sys
from streamvggt.cli import main
seen = []
for command in {commands!r}:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*command, "--help"])
    seen.append([out.getvalue().startswith("usage: streamvggt"), "torch" in sys.modules])
print(json.dumps(seen))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[True, False]] * len(commands)


def test_public_names_load_on_first_use_as_the_defining_modules_objects():
    from streamvggt.config import ModelConfig
    from streamvggt.weights import load_model

    assert streamvggt.load_model is load_model
    assert streamvggt.ModelConfig is ModelConfig
    assert all(getattr(streamvggt, name) is not None for name in streamvggt.__all__)
    assert set(streamvggt.__all__) <= set(dir(streamvggt))
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        _ = streamvggt.nothing_here


@pytest.mark.parametrize("package", [streamvggt, streamvggt.train], ids=["streamvggt", "streamvggt.train"])
def test_lazy_names_agree_with_all_and_the_type_checking_imports(package):
    """Each lazily loaded name is in __all__ and imported for type checkers from the module it loads from."""
    tree = ast.parse(Path(package.__file__).read_text(encoding="utf-8"))
    (checking,) = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    imported = {alias.name: node.module for node in checking.body for alias in node.names}
    assert imported == package._PUBLIC
    assert sorted(package.__all__) == sorted(package._PUBLIC)


# ------------------------------------------------------------------------------------------------------ extras


def test_require_returns_the_module():
    assert require("json", "eval") is json


def test_missing_package_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "viser", None)
    with pytest.raises(MissingExtraError) as error:
        require("viser", "viewer")
    assert str(error.value) == "the viewer needs viser: pip install 'streamvggt[viewer]'"


def test_missing_parent_package_names_the_distribution(monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(MissingExtraError, match=r"^training needs pyyaml: pip install 'streamvggt\[train\]'$"):
        require("yaml", "train")
    for name in ("scipy", "scipy.spatial"):  # scipy.spatial may already be loaded: it would be found there
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingExtraError, match=r"^evaluation needs scipy: pip install 'streamvggt\[eval\]'$"):
        require("scipy.spatial", "eval")


def test_a_broken_installed_package_is_not_reported_as_missing(tmp_path, monkeypatch):
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("import a_dependency_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as error:
        require("brokenpkg", "viewer")
    assert not isinstance(error.value, MissingExtraError)
    assert error.value.name == "a_dependency_that_is_not_there"


def test_use_ba_without_pycolmap_names_the_eval_extra(monkeypatch):
    from streamvggt.evaluate.bundle_adjust import require_pycolmap
    from streamvggt.io.errors import InputError

    monkeypatch.setitem(sys.modules, "pycolmap", None)
    with pytest.raises(InputError) as error:
        require_pycolmap()
    assert str(error.value) == "--use-ba needs pycolmap: pip install 'streamvggt[eval]'"


VIEWER = "the viewer needs viser: pip install 'streamvggt[viewer]'"
EVAL_PLOTS = "evaluation needs matplotlib: pip install 'streamvggt[eval]'"
TRAIN_YAML = "training needs pyyaml: pip install 'streamvggt[train]'"
RECON = ["eval", "recon", "--dataset", "7scenes", "--root", ".", "-o", "out", "--no-plots"]
TINY_CONFIG = str(ROOT / "configs" / "synthetic_tiny.yaml")


@pytest.mark.parametrize(
    ("missing", "argv", "message"),
    [
        ("viser", ["view", "frames"], VIEWER),
        ("viser", ["reconstruct", "frames", "-o", "out", "--view"], VIEWER),
        ("matplotlib", ["demo", "-o", "out"], "the demo needs matplotlib: pip install 'streamvggt[eval]'"),
        ("matplotlib", ["eval", "synthetic", "-o", "out"], EVAL_PLOTS),
        ("scipy", RECON, "evaluation needs scipy: pip install 'streamvggt[eval]'"),
        ("yaml", ["train", "--config", "x.yaml"], TRAIN_YAML),
        ("yaml", ["data", "--help"], TRAIN_YAML),
    ],
    ids=["view", "reconstruct-view", "demo", "eval-plots", "eval-recon", "train", "data"],
)
def test_command_without_its_extra_says_which_install_fixes_it(tmp_path, missing, argv, message):
    result = run_without(missing, argv, tmp_path)
    expected = f"streamvggt {argv[0]}: error: {message}\n"
    assert (result.returncode, result.stderr, result.stdout) == (1, expected, "")
    assert list(tmp_path.iterdir()) == []  # checked before anything is written


def test_training_without_accelerate_stops_before_the_run(tmp_path):
    result = run_without("accelerate", ["train", "--config", TINY_CONFIG], tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2  # the training command's status for what stops a run before it starts
    assert len(lines) == 1 and lines[0].endswith("training needs accelerate: pip install 'streamvggt[train]'")
    assert list(tmp_path.iterdir()) == []


def run_without(missing: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``streamvggt ARGV`` in a fresh interpreter where ``import MISSING`` fails."""
    script = f"import sys\nsys.modules[{missing!r}] = None\nfrom streamvggt.cli import main\nsys.exit(main({argv!r}))"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_every_require_call_names_an_extra_that_lists_the_package():
    """``require(module, extra)`` anywhere in src/ points at an extra of pyproject.toml that installs the module."""
    from streamvggt.extras import DISTRIBUTIONS

    calls = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require":
                module, extra = (ast.literal_eval(arg) for arg in node.args[:2])
                calls.append((path.name, module, extra))
    assert len(calls) >= 10
    for name, module, extra in calls:
        top = module.partition(".")[0]
        distribution = DISTRIBUTIONS.get(top, top).lower()
        assert extra in EXTRA_PURPOSES, f"{name}: unknown extra '{extra}'"
        assert distribution in requirements(extra), f"{name}: {distribution} is not in the '{extra}' extra"


# -------------------------------------------------------------------------------------------- what installs what


def test_core_install_is_the_inference_stack():
    core = set(requirements(""))
    assert core == {"torch", "numpy", "safetensors", "huggingface_hub", "pillow", "av", "trimesh", "tqdm"}


def test_all_extra_is_every_runtime_extra_and_make_installs_it_with_dev():
    assert requirements("all") == {"streamvggt": "[viewer,train,eval,mapping]"}
    assert set(EXTRA_PURPOSES) == {"viewer", "train", "eval", "mapping"}
    assert '-e ".[all,dev]"' in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_lint_and_test_tools_are_pinned_to_exact_versions():
    pinned = {**requirements("dev"), **requirements("test")}
    for tool in ("ruff", "pytest", "pytest-timeout"):
        assert re.fullmatch(r"==\d+(\.\d+)+", pinned[tool]), f"{tool} {pinned[tool]}"


@pytest.mark.parametrize(("distribution", "first", "api", "used"), NEWEST_APIS, ids=[a[2] for a in NEWEST_APIS])
def test_declared_floor_has_the_newest_api_the_code_uses(distribution, first, api, used):
    declared = {
        name: spec
        for section in ["", *PYPROJECT["optional-dependencies"]]
        for name, spec in requirements(section).items()
    }[distribution.lower()]
    floor = re.search(r">=\s*([0-9.]+)", declared)
    assert floor is not None and release(floor[1]) >= release(first), f"{distribution} {declared}"
    assert any(used in path.read_text(encoding="utf-8") for path in SOURCE.rglob("*.py")), f"'{used}' not in src"
    root, *attributes = api.split(".")
    module = pytest.importorskip(root)
    target = module
    for index, attribute in enumerate(attributes):  # submodules import on the way
        if not hasattr(target, attribute):
            target = importlib.import_module(".".join([root, *attributes[: index + 1]]))
        else:
            target = getattr(target, attribute)
    assert target is not None


# ----------------------------------------------------------------------------------------------- floor pins


def load_floor_pins():
    return load_script(ROOT / ".ci" / "floor_pins.py")


def test_floor_pins_pin_core_lower_bounds_and_skip_extras():
    floor_pins = load_floor_pins()
    listed = ["torch>=2.6", "numpy >= 1.24, <3", 'viser>=1.0; extra == "viewer"', "huggingface_hub>=0.34"]
    assert floor_pins.floor_pins(listed) == ["torch==2.6", "numpy==1.24", "huggingface_hub==0.34"]
    with pytest.raises(ValueError, match="no lower bound in core requirement 'av'"):
        floor_pins.floor_pins(["av"])


def test_floor_pins_compare_releases_without_trailing_zeros_or_local_tags():
    floor_pins = load_floor_pins()
    assert floor_pins.release("2.6.0+cu124") == floor_pins.release("2.6") == (2, 6)
    assert floor_pins.release("12.0.0") == (12,)
    assert floor_pins.release("0.34.1") == (0, 34, 1)


def test_a_hub_older_than_the_floor_is_one_clear_error_before_any_download(monkeypatch):
    """huggingface_hub before 0.25 has no ``errors`` module: loading from a repo id says to upgrade instead of an
    ImportError raised while handling the download's own error."""
    import huggingface_hub

    from streamvggt.weights import CheckpointError, load_model

    downloads = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *args, **kwargs: downloads.append(args))
    monkeypatch.delattr(huggingface_hub, "errors", raising=False)
    monkeypatch.setitem(sys.modules, "huggingface_hub.errors", None)
    with pytest.raises(
        CheckpointError,
        match=r"^Hugging Face downloads need a newer huggingface_hub \(.*errors.*\): "
        r"pip install -U huggingface_hub$",
    ):
        load_model("someone/some-model", device="cpu")
    assert downloads == []
