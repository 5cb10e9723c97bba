"""The demo apps' build settings that broke (or would break) a build on a developer's machine, read from
ios_demo/project.yml, Package.swift, Info.plist and the Gradle files: each rule is checked on the real
files and shown to catch its breakage on a copy. The app modules themselves cannot be built here (no
Android SDK, no Gradle plugin repository, no Xcode): see the apps' READMEs.
"""

from __future__ import annotations

import hashlib
import os
import plistlib
import re
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest_apps import ANDROID, IOS

SWIFT_LANGUAGE_MODES = {"4.0", "4.2", "5.0", "6.0"}  # what Xcode accepts for SWIFT_VERSION
MIN_CAMERAX = (1, 6, 2)  # stable CameraX when this was written (androidx.camera release notes)
# AGP major.minor -> the oldest Gradle it runs on (developer.android.com, "AGP / Gradle compatibility").
AGP_MIN_GRADLE = {(8, 9): (8, 11, 1), (8, 10): (8, 11, 1), (8, 11): (8, 13), (8, 12): (8, 13), (8, 13): (8, 13)}
# sha256 of the official gradle-wrapper.jar per Gradle version (the wrapper task's output).
WRAPPER_JARS = {"8.14.3": "7d3a4ac4de1c32b59bc6a4eb8ecb8e612ccd0cf1ae1e99f66902da64df296172"}


def _version(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", s))


# ---------------------------------------------------------------- iOS
def ios_problems(ios: Path) -> list[str]:
    """Settings of the XcodeGen spec, the package and Info.plist that stop Xcode from building or running the app."""
    p = []
    spec = yaml.safe_load((ios / "project.yml").read_text())
    settings = [("project", (spec.get("settings") or {}).get("base") or {})]
    settings += [(f"target {n}", (t.get("settings") or {}).get("base") or {}) for n, t in spec["targets"].items()]
    for where, base in settings:
        v = base.get("SWIFT_VERSION")
        if v is not None and str(v) not in SWIFT_LANGUAGE_MODES:
            p.append(
                f"project.yml {where}: SWIFT_VERSION {v!r} is not a Swift language mode Xcode accepts "
                f"({', '.join(sorted(SWIFT_LANGUAGE_MODES))})"
            )
    if not any("SWIFT_VERSION" in base for _, base in settings):
        p.append("project.yml sets no SWIFT_VERSION")
    pkg = (ios / "ClassifierCore" / "Package.swift").read_text()
    tools = re.match(r"// swift-tools-version:\s*([\d.]+)", pkg)
    if not tools or _version(tools.group(1)) < (5, 9):
        p.append("Package.swift: swift-tools-version must be >= 5.9 (first line)")
    pkg_ios = re.search(r"\.iOS\(\.v(\d+)\)", pkg)
    for name, t in spec["targets"].items():
        target = _version(str(t.get("deploymentTarget") or spec["options"]["deploymentTarget"]["iOS"]))
        if pkg_ios and target < (int(pkg_ios.group(1)),):
            p.append(f"target {name}: deploymentTarget {target} is below the package's iOS {pkg_ios.group(1)}")
        for src in t.get("sources", []):
            path = ios / src["path"]
            if not (path.is_dir() or (path.is_file() and src.get("buildPhase") == "resources")):
                p.append(
                    f"target {name}: source {src['path']} is missing (a single file must be a resources build phase)"
                )
        plist_file = ((t.get("settings") or {}).get("base") or {}).get("INFOPLIST_FILE")
        if not plist_file or not (ios / plist_file).is_file():
            p.append(f"target {name}: INFOPLIST_FILE {plist_file!r} is missing")
            continue
        info = plistlib.loads((ios / plist_file).read_bytes())
        if not str(info.get("NSCameraUsageDescription", "")).strip():
            p.append(f"{plist_file}: no NSCameraUsageDescription (iOS kills an app that opens the camera without it)")
    for name, pk in (spec.get("packages") or {}).items():
        if not (ios / pk["path"] / "Package.swift").is_file():
            p.append(f"package {name}: {pk['path']}/Package.swift is missing")
    return p


# ---------------------------------------------------------------- Android
def _accessor(alias: str) -> str:
    return re.sub(r"[-_.]", ".", alias)


def android_problems(android: Path) -> list[str]:
    """Settings of the Gradle build that fail it, or fail it on Android Studio's bundled JDK."""
    p = []
    catalog = tomllib.loads((android / "gradle" / "libs.versions.toml").read_text())
    versions, libs, plugins = catalog["versions"], catalog["libraries"], catalog["plugins"]
    for kind, table in (("library", libs), ("plugin", plugins)):
        for alias, spec in table.items():
            ref = (
                spec.get("version", {}).get("ref") if isinstance(spec.get("version"), dict) else spec.get("version.ref")
            )
            if ref is not None and ref not in versions:
                p.append(f"libs.versions.toml: {kind} {alias} refers to an undefined version {ref!r}")
    known = {_accessor(a) for a in libs} | {"plugins." + _accessor(a) for a in plugins}
    scripts = sorted(android.glob("**/*.gradle.kts"))
    scripts = [s for s in scripts if "build" not in s.relative_to(android).parts[:-1]]
    text = {s: re.sub(r"//[^\n]*", "", s.read_text()) for s in scripts}  # comments dropped
    for s, t in text.items():
        for ref in re.findall(r"\blibs\.([A-Za-z0-9_.]+)", t):
            if ref not in known:
                p.append(f"{s.relative_to(android)}: libs.{ref} is not in gradle/libs.versions.toml")
    camerax = versions.get("camerax")
    if camerax is None or _version(camerax) < MIN_CAMERAX:
        p.append(f"CameraX {camerax} is older than the stable {'.'.join(map(str, MIN_CAMERAX))}")
    for alias, spec in libs.items():
        if (
            str(spec.get("module", "")).startswith("androidx.camera:")
            and spec.get("version", {}).get("ref") != "camerax"
        ):
            p.append(f"libs.versions.toml: {alias} does not use the camerax version")
    ci_kotlin = re.search(r"^KOTLIN_VERSION=(\S+)", (android / "ci" / "test_core.sh").read_text(), re.M)
    if not ci_kotlin or ci_kotlin.group(1) != versions.get("kotlin"):
        p.append(
            f"ci/test_core.sh compiles with Kotlin {ci_kotlin and ci_kotlin.group(1)}, Gradle with {versions.get('kotlin')}"
        )
    settings = (android / "settings.gradle.kts").read_text()
    resolver = "foojay-resolver" in settings
    for s, t in text.items():
        rel = s.relative_to(android)
        if "jvmToolchain(" in t and not resolver:
            p.append(
                f"{rel}: jvmToolchain without a toolchain resolver fails where only another JDK is installed "
                "(Android Studio's bundled JDK 21)"
            )
        java = set(re.findall(r"(?:source|target)Compatibility\s*=\s*JavaVersion\.VERSION_(\d+)", t))
        kotlin = set(re.findall(r"JvmTarget\.JVM_(\d+)", t))
        if (java or kotlin) and (len(java | kotlin) != 1 or not java or not kotlin):
            p.append(f"{rel}: Java {sorted(java)} and Kotlin {sorted(kotlin)} bytecode targets must be set and equal")
        if re.search(r"\bcompose\s*=\s*true", t) and "libs.plugins.kotlin.compose" not in t:
            p.append(f"{rel}: compose = true needs the Kotlin Compose compiler plugin (libs.plugins.kotlin.compose)")
        if "libs.plugins.android.application" in t:
            sdk = {k: int(v) for k, v in re.findall(r"\b(compileSdk|targetSdk|minSdk)\s*=\s*(\d+)", t)}
            if sdk.get("targetSdk", 0) > sdk.get("compileSdk", 0):
                p.append(f"{rel}: targetSdk {sdk.get('targetSdk')} above compileSdk {sdk.get('compileSdk')}")
    for module in re.findall(r'"(:[\w-]+)"', settings):
        if not (android / module[1:] / "build.gradle.kts").is_file():
            p.append(f"settings.gradle.kts includes {module}, which has no build.gradle.kts")
    props = dict(
        ln.split("=", 1)
        for ln in (android / "gradle.properties").read_text().splitlines()
        if "=" in ln and not ln.startswith("#")
    )
    if props.get("android.useAndroidX") != "true":
        p.append("gradle.properties: android.useAndroidX=true is required by AndroidX dependencies")
    p += _wrapper_problems(android, versions.get("agp", ""))
    manifest = (android / "app" / "src" / "main" / "AndroidManifest.xml").read_text()
    if "android.permission.CAMERA" not in manifest:
        p.append("AndroidManifest.xml does not declare android.permission.CAMERA (CameraX cannot open the camera)")
    return p


def _wrapper_problems(android: Path, agp: str) -> list[str]:
    p = []
    wrapper = android / "gradle" / "wrapper"
    props = dict(
        ln.split("=", 1) for ln in (wrapper / "gradle-wrapper.properties").read_text().splitlines() if "=" in ln
    )
    m = re.search(r"gradle-([\d.]+)-(bin|all)\.zip$", props.get("distributionUrl", ""))
    if not m:
        return ["gradle-wrapper.properties: distributionUrl names no Gradle distribution"]
    gradle = m.group(1)
    need = AGP_MIN_GRADLE.get(_version(agp)[:2])
    if need is None:
        p.append(f"AGP {agp} is not in AGP_MIN_GRADLE: add its minimum Gradle (developer.android.com)")
    elif _version(gradle) < need:
        p.append(f"Gradle {gradle} is older than AGP {agp} needs ({'.'.join(map(str, need))})")
    if not re.fullmatch(r"[0-9a-f]{64}", props.get("distributionSha256Sum", "")):
        p.append("gradle-wrapper.properties: distributionSha256Sum missing (the download is not verified)")
    jar = wrapper / "gradle-wrapper.jar"
    if not jar.is_file():
        p.append("gradle/wrapper/gradle-wrapper.jar is missing: ./gradlew cannot start")
    elif hashlib.sha256(jar.read_bytes()).hexdigest() != WRAPPER_JARS.get(gradle):
        p.append(f"gradle-wrapper.jar is not the official jar of Gradle {gradle} (sha256 differs)")
    for script in ("gradlew", "gradlew.bat"):
        if not (android / script).is_file():
            p.append(f"{script} is missing")
    if (android / "gradlew").is_file() and not os.access(android / "gradlew", os.X_OK):
        p.append("gradlew is not executable")
    return p


# ---------------------------------------------------------------- tests
def test_the_ios_project_settings_build():
    assert ios_problems(IOS) == []


def test_the_android_build_settings_build():
    assert android_problems(ANDROID) == []


def _copy_android(tmp_path: Path) -> Path:
    """The build files of android_demo (not the models) in a scratch folder."""
    dst = tmp_path / "android_demo"
    for rel in (
        "settings.gradle.kts",
        "build.gradle.kts",
        "gradle.properties",
        "gradlew",
        "gradlew.bat",
        "gradle/libs.versions.toml",
        "gradle/wrapper/gradle-wrapper.properties",
        "gradle/wrapper/gradle-wrapper.jar",
        "ci/test_core.sh",
        "app/build.gradle.kts",
        "core/build.gradle.kts",
        "app/src/main/AndroidManifest.xml",
    ):
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ANDROID / rel, dst / rel)
    return dst


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


# One breakage per rule of android_problems, by the file it edits: (old text, new text, expected problem).
ANDROID_BREAKAGES = {
    "gradle/libs.versions.toml": [
        ('camerax = "1.6.2"', 'camerax = "1.5.1"', "CameraX 1.5.1 is older"),
        ('kotlin = "2.4.20"', 'kotlin = "2.3.0"', "ci/test_core.sh compiles with Kotlin"),
        ('version.ref = "lifecycle" }', 'version.ref = "lifecycles" }', "undefined version 'lifecycles'"),
    ],
    "app/build.gradle.kts": [
        ("kotlin {\n", "kotlin {\n    jvmToolchain(17)\n", "jvmToolchain without a toolchain resolver"),
        ("libs.camerax.view", "libs.camerax.viewfinder", "libs.camerax.viewfinder is not in"),
        ("    alias(libs.plugins.kotlin.compose)\n", "", "needs the Kotlin Compose compiler plugin"),
        ("targetSdk = 36", "targetSdk = 37", "targetSdk 37 above compileSdk 36"),
    ],
    "core/build.gradle.kts": [
        ("JvmTarget.JVM_17", "JvmTarget.JVM_21", "bytecode targets must be set and equal"),
    ],
    "gradle/wrapper/gradle-wrapper.properties": [
        ("gradle-8.14.3-bin.zip", "gradle-8.10-bin.zip", "older than AGP"),
        ("distributionSha256Sum=", "#distributionSha256Sum=", "distributionSha256Sum missing"),
    ],
}


@pytest.mark.parametrize(
    "file,old,new,expected", [(file, *breakage) for file, rows in ANDROID_BREAKAGES.items() for breakage in rows]
)
def test_each_android_rule_catches_its_breakage(tmp_path, file, old, new, expected):
    android = _copy_android(tmp_path)
    _edit(android / file, old, new)
    problems = android_problems(android)
    assert any(expected in p for p in problems), problems


def test_a_missing_or_foreign_wrapper_jar_is_caught(tmp_path):
    android = _copy_android(tmp_path)
    (android / "gradle" / "wrapper" / "gradle-wrapper.jar").write_bytes(b"PK\x03\x04 not the wrapper")
    os.chmod(android / "gradlew", 0o644)
    problems = android_problems(android)
    assert any("not the official jar" in p for p in problems) and any("not executable" in p for p in problems)


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ('SWIFT_VERSION: "5.0"', 'SWIFT_VERSION: "5.9"', "SWIFT_VERSION '5.9' is not a Swift language mode"),
        ('    deploymentTarget: "17.0"', '    deploymentTarget: "16.0"', "below the package's iOS 17"),
        (
            "INFOPLIST_FILE: MVitDemo/Info.plist",
            "INFOPLIST_FILE: MVitDemo/Missing.plist",
            "INFOPLIST_FILE 'MVitDemo/Missing.plist' is missing",
        ),
        (
            "golden/shipped_models.json\n",
            "golden/missing.json\n",
            "source ClassifierCore/Tests/ClassifierCoreTests/Resources/golden/missing.json is missing",
        ),
    ],
)
def test_each_ios_rule_catches_its_breakage(tmp_path, old, new, expected):
    ios = tmp_path / "ios_demo"
    shutil.copytree(IOS, ios, ignore=shutil.ignore_patterns("*.mlpackage", "golden"))
    _edit(ios / "project.yml", old, new)
    problems = ios_problems(ios)
    assert any(expected in p for p in problems), problems


def test_a_camera_app_without_a_usage_description_is_caught(tmp_path):
    ios = tmp_path / "ios_demo"
    shutil.copytree(IOS, ios, ignore=shutil.ignore_patterns("*.mlpackage", "golden"))
    plist = plistlib.loads((IOS / "MVitDemo" / "Info.plist").read_bytes())
    del plist["NSCameraUsageDescription"]
    (ios / "MVitDemo" / "Info.plist").write_bytes(plistlib.dumps(plist))
    assert any("NSCameraUsageDescription" in p for p in ios_problems(ios))
