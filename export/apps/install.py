"""Install an exported artifact into the Android or iOS demo app (``mvit-export ... --app``).

Writes, atomically (temporary copy in the destination folder, then rename):

* Android, ``android_demo/app/src/main/assets/``: ``model.tflite`` + ``model_meta.json`` (float) or
  ``model_int8.tflite`` + ``model_int8_meta.json`` (int8), and ``labels.txt``;
* iOS, ``ios_demo/MVitDemo/Models/``: ``Model.mlpackage`` + ``model_meta.json`` (float) or
  ``ModelInt8.mlpackage`` + ``model_int8_meta.json`` (int8), and ``labels.txt``.

``labels.txt`` is shared by the two variants of an app, so installing a model whose labels differ
from the other installed variant's is refused unless ``replace_other=True`` (which removes the
stale variant). The metadata is validated against what the apps read (docs/model_meta.md) before
anything is written, so a broken export never reaches an app.

``plan_install`` decides, before anything is exported, which slot each exported (format, precision)
goes to (``mvit.export.apps.slots.SLOT_OF_PRECISION``) and refuses what an app cannot hold.

The command line (and ``mvit-export --app``) then re-records the app's golden cases of the installed
models (``shipped_models.json``, see ``mvit.export.apps.fixtures.write_shipped_fixtures``), which the
apps' core tests and tests/test_shipped_fixtures.py check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ...model.checkpoint import atomic_write
from ..metadata import meta_problems
from . import fixtures as app_fixtures
from .fixtures import shipped_command
from .slots import APPS, REPO, SLOT_OF_PRECISION, VARIANT_PRECISIONS


class AppInstallError(ValueError):
    """The artifact or its metadata cannot be installed into the app."""


def app_folder(app: str, app_root=None) -> Path:
    """The app's source folder (``android_demo`` / ``ios_demo``) in the checkout at ``app_root``.

    Raises AppInstallError (one line) for an unknown app, or when the folder is not there, as after
    ``pip install mvit`` from a wheel: the apps exist only in a source checkout.
    """
    if app not in APPS:
        raise AppInstallError(f"app must be one of {', '.join(sorted(APPS))}, got {app!r}")
    root = Path(app_root or REPO)
    folder = root / APPS[app]["project"]
    if not folder.is_dir():
        raise AppInstallError(
            f"the {app} app's source folder {APPS[app]['project']}/ is not in {root}: the demo apps live in "
            f"mvit's source checkout (git clone, then pip install -e .), not in an installed wheel"
        )
    return folder


def plan_install(app: str, formats, precisions, app_root=None) -> dict[tuple[str, str], str]:
    """Which app slot ("float" / "int8") each exported (format, precision) goes to, decided before
    anything is exported.

    Raises AppInstallError with one line when the app folder is missing, a format is one the app
    cannot run, a precision has no slot, or two precisions would land in the same slot.
    """
    app_folder(app, app_root)
    fmt = APPS[app]["format"]
    formats, precisions = list(dict.fromkeys(formats)), list(dict.fromkeys(precisions))
    foreign = [f for f in formats if f != fmt]
    if foreign:
        raise AppInstallError(
            f"the {app} app runs {fmt} models only, so --app {app} cannot install "
            f"{'/'.join(foreign)}: export --format {fmt}"
        )
    unknown = [p for p in precisions if p not in SLOT_OF_PRECISION]
    if unknown:
        slots = "; ".join(f"{s}: {'/'.join(ps)}" for s, ps in VARIANT_PRECISIONS.items())
        raise AppInstallError(f"no {app} app slot for precision {'/'.join(unknown)} (slots {slots})")
    by_slot: dict[str, list[str]] = {}
    for p in precisions:
        by_slot.setdefault(SLOT_OF_PRECISION[p], []).append(p)
    for slot, ps in by_slot.items():
        if len(ps) > 1:
            raise AppInstallError(
                f"{' and '.join(ps)} would both go to the {app} app's {slot} slot, which holds "
                f"one model: export one of them with --app {app}"
            )
    return {(f, p): SLOT_OF_PRECISION[p] for f in formats for p in precisions}


def validate_meta(meta: dict, app: str | None = None, variant: str | None = None) -> list[str]:
    """Check the fields the apps read; returns the labels. Raises AppInstallError with every problem."""
    errs = meta_problems(meta)
    if app is not None and meta.get("format") != APPS[app]["format"]:
        errs.append(f"format {meta.get('format')!r}: the {app} app needs {APPS[app]['format']!r}")
    if variant is not None and meta.get("precision") not in VARIANT_PRECISIONS[variant]:
        errs.append(
            f"precision {meta.get('precision')!r} does not fit the {variant} slot "
            f"(expected one of {VARIANT_PRECISIONS[variant]})"
        )
    if errs:
        raise AppInstallError("model_meta.json cannot be used by the app:\n  - " + "\n  - ".join(errs))
    return list(meta["labels"])  # valid here: meta_problems checked them


def _find_artifact(src: Path, suffix: str) -> Path:
    if src.suffix == suffix:
        return src
    if src.is_dir():
        found = sorted(p for p in src.iterdir() if p.suffix == suffix)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise AppInstallError(f"{src}: several {suffix} artifacts ({', '.join(p.name for p in found)}); pass one")
    raise AppInstallError(f"{src}: no {suffix} artifact")


def _find_meta(artifact: Path, meta: Path | None) -> Path:
    if meta is not None:
        return meta
    d = artifact.parent
    stem = artifact.name[: -len(artifact.suffix)]
    for cand in (
        d / f"{stem}.model_meta.json",
        d / f"{stem}_meta.json",
        d / f"{stem}.meta.json",
        d / "model_meta.json",
    ):
        if cand.is_file():
            return cand
    raise AppInstallError(f"no model_meta.json beside {artifact}")


def _atomic_write_bytes(dest: Path, data: bytes) -> None:
    atomic_write(dest, lambda tmp: Path(tmp).write_bytes(data))


def _atomic_copy(src: Path, dest: Path) -> None:
    if src.is_dir():  # .mlpackage: copy beside, then swap
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            shutil.rmtree(tmp)
            shutil.copytree(src, tmp)
            old = None
            if dest.exists():
                old = dest.with_name(f".{dest.name}.old")
                if old.exists():
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
                os.replace(dest, old)
            os.replace(tmp, dest)
            if old is not None:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    else:
        if dest.is_dir():
            shutil.rmtree(dest)
        atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def install_into_app(
    artifact_dir_or_file,
    app: str,
    variant: str | None = None,
    *,
    meta_path=None,
    labels_path=None,
    app_root=None,
    replace_other: bool = False,
) -> dict[str, Path]:
    """Copy an exported artifact, its ``model_meta.json`` and ``labels.txt`` into an app's assets.

    ``artifact_dir_or_file``: the ``.tflite`` file / ``.mlpackage`` folder, or the export folder that
    holds exactly one of them. ``variant``: the app slot, "float" or "int8" (default: the slot of the
    metadata's precision, ``SLOT_OF_PRECISION``). ``meta_path`` / ``labels_path`` default to the files beside it
    (``labels.txt`` is written from the metadata's labels when absent). ``app_root``: the repository
    (default: this one). Returns the installed paths by role.
    """
    app_folder(app, app_root)
    if variant is not None and variant not in VARIANT_PRECISIONS:
        raise AppInstallError(f"variant must be one of {sorted(VARIANT_PRECISIONS)}, got {variant!r}")
    spec = APPS[app]
    src = Path(artifact_dir_or_file)
    if not src.exists():
        raise AppInstallError(f"{src}: no such file or folder")
    artifact = _find_artifact(src, spec["suffix"])
    meta_file = _find_meta(artifact, Path(meta_path) if meta_path else None)
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise AppInstallError(f"{meta_file}: unreadable metadata ({e})") from None
    if variant is None:
        variant = SLOT_OF_PRECISION.get(meta.get("precision"))
        if variant is None:
            raise AppInstallError(f"{meta_file}: precision {meta.get('precision')!r} has no app slot; pass variant")
    labels = validate_meta(meta, app, variant)
    labels_file = Path(labels_path) if labels_path else artifact.parent / "labels.txt"
    if labels_file.is_file():
        file_labels = [ln.strip() for ln in labels_file.read_text(encoding="utf-8").splitlines()]
        while file_labels and not file_labels[-1]:
            file_labels.pop()
        if file_labels != labels:
            raise AppInstallError(f"{labels_file} does not list the metadata's {len(labels)} labels in order")
    if app == "android" and artifact.stat().st_size < 8:
        raise AppInstallError(f"{artifact}: empty artifact")

    dest_dir = Path(app_root or REPO) / spec["dir"]
    dest_dir.mkdir(parents=True, exist_ok=True)  # inside the app folder checked above
    model_name, meta_name = spec["names"][variant]
    other = "int8" if variant == "float" else "float"
    other_model, other_meta = (dest_dir / n for n in spec["names"][other])
    if other_meta.is_file():
        try:
            other_labels = json.loads(other_meta.read_text(encoding="utf-8")).get("labels")
        except (OSError, json.JSONDecodeError):
            other_labels = None
        if other_labels != labels:
            if not replace_other:
                raise AppInstallError(
                    f"the installed {other} model has other labels than this one and labels.txt is shared; "
                    f"install both variants of the same model, or pass replace_other=True to remove the {other} one"
                )
            _remove(other_model)
            _remove(other_meta)

    _atomic_copy(artifact, dest_dir / model_name)
    _atomic_write_bytes(dest_dir / meta_name, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    _atomic_write_bytes(dest_dir / "labels.txt", ("\n".join(labels) + "\n").encode("utf-8"))
    return {"model": dest_dir / model_name, "meta": dest_dir / meta_name, "labels": dest_dir / "labels.txt"}


def refresh_app_fixtures(app: str, variants=None) -> list[Path] | None:
    """Re-record the golden cases of ``app``'s installed models (``mvit.export.apps.fixtures``) after an install.

    Returns the written ``shipped_models.json`` paths; on failure prints a warning with the one
    command that does it and returns None (the install itself stands).
    """

    try:
        return app_fixtures.write_shipped_fixtures(apps=[app], variants=variants)
    except Exception as e:  # noqa: BLE001 - any runtime failure: say what to run instead
        print(
            f"warning: the {app} app's golden cases were not re-recorded ({type(e).__name__}: {e}); "
            f"run `{app_fixtures.shipped_command(app)}`",
            file=sys.stderr,
        )
        return None


def after_install(app: str, variants, refresh: bool = True) -> None:
    """After installing into ``app``: re-record its golden cases of ``variants``, or print the command."""

    if not refresh:
        print(f"golden cases of the {app} app not re-recorded: run `{shipped_command(app)}`")
        return
    for p in refresh_app_fixtures(app, variants) or []:
        print(f"golden cases: {p}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Install an exported artifact into a demo app.")
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--app", choices=sorted(APPS), required=True)
    ap.add_argument(
        "--variant",
        choices=sorted(VARIANT_PRECISIONS),
        help="app slot (default: the slot of the metadata's precision: fp32/fp16 float, dynamic/int8 int8)",
    )
    ap.add_argument("--meta", type=Path)
    ap.add_argument("--labels", type=Path)
    ap.add_argument("--replace-other", action="store_true")
    ap.add_argument(
        "--no-fixtures",
        dest="fixtures",
        action="store_false",
        help="do not re-record the app's golden cases (prints the command that does)",
    )
    a = ap.parse_args(argv)
    try:
        paths = install_into_app(
            a.artifact, a.app, a.variant, meta_path=a.meta, labels_path=a.labels, replace_other=a.replace_other
        )
    except AppInstallError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for role, p in paths.items():
        print(f"{role}: {p}")
    slot = next(v for v, (model, _) in APPS[a.app]["names"].items() if paths["model"].name == model)
    after_install(a.app, [slot], a.fixtures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
