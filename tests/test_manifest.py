"""Hand-off manifests: a result folder moved to another machine can be re-hashed there."""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from pipesql.storage import manifest
from pipesql.storage.manifest import MANIFEST_NAME, verify_manifest, write_manifest
from pipesql.config.settings import option


@dataclass
class Settings:
    stage: ClassVar[str] = "demo"
    out: Path = option(Path("runs/x"), "where")
    steps: int = option(3, "steps")


def make_result(root: Path) -> Path:
    (root / "adapter").mkdir(parents=True)
    (root / "adapter" / "weights.bin").write_bytes(b"\1" * 100)
    (root / "adapter" / "nested" / "config.json").parent.mkdir()
    (root / "adapter" / "nested" / "config.json").write_text('{"r": 8}')
    (root / "metrics.json").write_text('{"loss": 1.5}')
    write_manifest(root, "train", Settings(out=root), inputs=[root / "metrics.json"],
                   outputs=[root / "adapter", root / "metrics.json", root / "never-written.txt"],
                   metrics={"loss": 1.5})
    return root


def test_outputs_are_recorded_relative_with_a_hash_per_file(tmp_path):
    root = make_result(tmp_path / "run")
    recorded = json.loads((root / MANIFEST_NAME).read_text())
    # recipe.yaml: the settings as a recipe to rerun with (written beside every manifest).
    assert set(recorded["outputs"]) == {"adapter", "metrics.json", "never-written.txt", "recipe.yaml"}
    adapter = recorded["outputs"]["adapter"]
    assert adapter["files"] == 2 and adapter["bytes"] == 100 + len('{"r": 8}')
    assert set(adapter["sha256"]) == {"weights.bin", "nested/config.json"}
    assert recorded["outputs"]["never-written.txt"] == {"missing": True}
    assert recorded["settings"] == {"out": str(root), "steps": 3}
    assert recorded["metrics"] == {"loss": 1.5}


def test_a_moved_folder_verifies_and_a_changed_file_is_named(tmp_path):
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(make_result(tmp_path / "run"), moved)
    shutil.rmtree(tmp_path / "run")
    check = verify_manifest(moved)
    assert check.ok and check.checked_files == 4 and not check.added

    (moved / "adapter" / "weights.bin").write_bytes(b"\2" * 100)  # same size, other bytes
    (moved / "metrics.json").unlink()
    (moved / "adapter" / "extra.txt").write_text("new")
    check = verify_manifest(moved)
    assert not check.ok
    assert sorted(check.problems) == ["adapter/weights.bin: sha256 differs from the one recorded",
                                      "metrics.json: missing"]
    assert check.added == ["adapter/extra.txt"]


def test_manifest_inside_an_output_folder_does_not_hash_itself(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    write_manifest(tmp_path, "fetch", None, outputs=[tmp_path])
    write_manifest(tmp_path, "fetch", None, outputs=[tmp_path])  # a rewrite must not list the old one
    recorded = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert list(recorded["outputs"]["."]["sha256"]) == ["data.txt"]
    assert verify_manifest(tmp_path).ok


def test_command_line_exit_status(tmp_path, capsys):
    root = make_result(tmp_path / "run")
    assert manifest.main([str(root)]) == 0
    assert "ok (4 files re-hashed)" in capsys.readouterr().out
    (root / "metrics.json").write_text("changed")
    assert manifest.main([str(root)]) == 1
    assert "metrics.json: size" in capsys.readouterr().out


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest"):
        verify_manifest(tmp_path)


def test_the_environment_is_recorded_and_checked(tmp_path, monkeypatch):
    """The lock the environment was installed from (sys.prefix/pipesql.lock) and the base image
    (PIPESQL_BASE_IMAGE) are recorded; verifying in another environment names the difference."""
    prefix = tmp_path / "venv"
    prefix.mkdir()
    (prefix / manifest.LOCK_IN_ENVIRONMENT).write_text("torch==2.13.0+cpu\n")
    monkeypatch.setattr(manifest.sys, "prefix", str(prefix))
    monkeypatch.setenv(manifest.BASE_IMAGE_VARIABLE, "nvidia/cuda:12.6.3-runtime-ubuntu22.04@sha256:" + "a" * 64)
    root = make_result(tmp_path / "run")
    recorded = json.loads((root / MANIFEST_NAME).read_text())["environment"]
    assert recorded["lock_sha256"] == manifest.sha256_file(prefix / manifest.LOCK_IN_ENVIRONMENT)
    assert recorded["base_image"].endswith("a" * 64)
    assert verify_manifest(root).ok

    (prefix / manifest.LOCK_IN_ENVIRONMENT).write_text("torch==2.14.0+cpu\n")
    monkeypatch.setenv(manifest.BASE_IMAGE_VARIABLE, "nvidia/cuda:12.6.3-runtime-ubuntu22.04@sha256:" + "b" * 64)
    check = verify_manifest(root)
    assert not check.ok and not check.problems
    assert [p.split(":")[0] for p in check.environment] == ["lock file sha256", "base image"]
    assert verify_manifest(root, check_environment=False).ok
    assert manifest.main(["--outputs-only", str(root)]) == 0
    assert manifest.main([str(root)]) == 1


# --- output folders appear whole, and inputs must match their manifest (issue #21, class 6) -------

def _validate(out: Path, limit: int) -> int:
    from pipesql.validate import Settings, run

    return run(Settings(benchmark="demo", split="dev", limit=limit, out=out, workers=1, googlesql=False,
                        variants=0, progress=False))


def test_a_stage_killed_in_its_final_writes_leaves_the_previous_folder_whole(tmp_path, monkeypatch):
    """The outputs are written into a fresh folder renamed into place at the end: a run that
    dies while writing leaves the previous run's folder as it was, its files matching its
    manifest (before: the new golden pairs beside the old manifest, and generate used them)."""
    out = tmp_path / "validate"
    assert _validate(out, 5) == 0
    before = (out / "golden_pairs.jsonl").read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the manifest")

    monkeypatch.setattr(manifest, "write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        _validate(out, 8)
    monkeypatch.undo()
    assert (out / "golden_pairs.jsonl").read_bytes() == before
    assert verify_manifest(out, check_environment=False).ok
    assert [p.name for p in tmp_path.iterdir()] == ["validate"]  # the staging folder is gone too


def test_generate_refuses_golden_pairs_that_do_not_match_their_manifest(tmp_path, capsys):
    from pipesql.generate import Settings, run

    out = tmp_path / "validate"
    assert _validate(out, 5) == 0
    golden = out / "golden_pairs.jsonl"
    golden.write_text(golden.read_text() + golden.read_text().splitlines()[0] + "\n")  # another run's line
    settings = Settings(golden_pairs=golden, benchmark="demo", output_dir=tmp_path / "generate", workers=1,
                        progress=False)
    with pytest.raises(SystemExit, match="golden_pairs.jsonl: size .* recorded"):
        run(settings)
    assert not (tmp_path / "generate").exists()


def test_a_stage_replaces_only_a_folder_it_made(tmp_path):
    """A stage's output folder replaces an earlier run of the same stage, never another folder."""
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    (elsewhere / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="was not made by pipesql validate"):
        _validate(elsewhere, 3)
    assert [p.name for p in elsewhere.iterdir()] == ["thesis.tex"]


def test_a_folder_that_cannot_be_renamed_has_its_contents_replaced(tmp_path, monkeypatch):
    """A mount point (a container's volume given as --out) cannot be renamed: the new outputs
    replace what it holds instead."""
    import errno
    import os

    from pipesql.storage import files

    target, staged = tmp_path / "validate", tmp_path / ".validate.staging-1"
    for folder, name in ((target, "old.jsonl"), (staged, "new.jsonl")):
        folder.mkdir()
        (folder / name).write_text(name)
    (target / files.STAGE_MARKER).write_text("validate\n")
    renamed = os.replace

    def busy(source, destination):
        if Path(source) == target:
            raise OSError(errno.EBUSY, "Device or resource busy")
        return renamed(source, destination)

    monkeypatch.setattr(files.os, "replace", busy)
    files.replace_folder(staged, target, "validate")
    assert sorted(p.name for p in target.iterdir()) == [files.STAGE_MARKER, "new.jsonl"]
    assert not staged.exists()
