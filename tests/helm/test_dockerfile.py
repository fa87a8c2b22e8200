"""Static checks of docker/Dockerfile and .dockerignore (no Docker engine runs here, so the image is never
built by the tests): the stages and their references, every COPY source against the build context that
.dockerignore leaves, every source file the CMake build needs copied before the build runs, the RUN
scripts' shell syntax, and the runtime stage's user and entrypoint.
Run: python3 tests/helm/test_dockerfile.py [WORD...]
"""
import json
import re
import shutil
import subprocess
import tempfile
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep tests/helm free of __pycache__
from checks import Skip, Suite, main

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

suite = Suite("dockerfile")


def instructions():
    """(keyword, arguments, line) for each instruction: comments dropped, continuations joined."""
    result = []
    pending, start = "", 0
    for number, raw in enumerate(DOCKERFILE.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, arguments = text.partition(" ")
        result.append((keyword.upper(), arguments.strip(), start))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return result


def stages():
    """[{name, base, instructions}] in order; ARGs before the first FROM are in stage None's list."""
    found, global_args = [], {}
    for keyword, arguments, line in instructions():
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", arguments, re.IGNORECASE)
            assert match, f"line {line}: cannot read FROM {arguments}"
            found.append({"name": match.group(2), "base": match.group(1), "instructions": [], "line": line})
        elif not found:
            assert keyword == "ARG", f"line {line}: only ARG may come before the first FROM, got {keyword}"
            name, _, default = arguments.partition("=")
            global_args[name] = default
        else:
            found[-1]["instructions"].append((keyword, arguments, line))
    return found, global_args


def copies(stage):
    """(from_stage or None, [sources], destination, line) for each COPY/ADD of a stage."""
    result = []
    for keyword, arguments, line in stage["instructions"]:
        if keyword not in ("COPY", "ADD"):
            continue
        assert keyword == "COPY", f"line {line}: use COPY, not ADD"
        words = arguments.split()
        source_stage = None
        while words and words[0].startswith("--"):
            flag = words.pop(0)
            if flag.startswith("--from="):
                source_stage = flag.split("=", 1)[1]
        assert len(words) >= 2, f"line {line}: COPY needs a source and a destination"
        result.append((source_stage, words[:-1], words[-1], line))
    return result


class DockerIgnore:
    """.dockerignore as Docker reads it: patterns in order, the last one matching a path (or any of its
    parent folders) decides, '!' re-includes; '*' and '?' stay within one path segment, '**' spans any."""

    def __init__(self, text):
        self.patterns = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:].strip() if negate else line
            pattern = pattern.strip("/")
            pattern = re.sub(r"/+", "/", pattern)
            self.patterns.append((negate, self._regex(pattern)))

    @staticmethod
    def _regex(pattern):
        out, i = "", 0
        while i < len(pattern):
            c = pattern[i]
            if pattern.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
                continue
            if pattern.startswith("**", i):
                out += ".*"
                i += 2
                continue
            out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
            i += 1
        return re.compile(out + r"\Z")

    def excluded(self, path):
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for negate, regex in self.patterns:
            if any(regex.match(candidate) for candidate in candidates):
                result = not negate
        return result


def context_files(source, ignore):
    """The repository files under `source` that the build context keeps."""
    path = ROOT / source
    assert path.exists(), f"COPY source {source} does not exist"
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return [f.relative_to(ROOT).as_posix() for f in files if not ignore.excluded(f.relative_to(ROOT).as_posix())]


def cmake_sources(options):
    """Every file the CMake configure and build of the project read: each CMakeLists.txt reached through
    add_subdirectory (with `options` deciding the if(OPTION) blocks of the top level), and the files named
    in add_executable/add_library/configure_file, relative to the repository."""
    needed = set()

    def visit(folder):
        cmake = folder / "CMakeLists.txt"
        assert cmake.exists(), f"{cmake} is missing"
        needed.add(cmake.relative_to(ROOT).as_posix())
        text = re.sub(r"#[^\n]*", "", cmake.read_text())
        skipping = []
        for line in text.splitlines():
            stripped = line.strip()
            condition = re.match(r"if\s*\(\s*(NOT\s+)?(\w+)\s*\)", stripped)
            if condition:
                value = options.get(condition.group(2))
                skipping.append(None if value is None else (not value if condition.group(1) is None else value))
                continue
            if re.match(r"if\s*\(", stripped):
                skipping.append(None)  # a compound condition (compiler checks): taken as not skipping
                continue
            if re.match(r"endif\s*\(", stripped):
                skipping.pop()
                continue
            if any(skipping):
                continue
            if re.match(r"return\s*\(\s*\)", stripped):
                return
            sub = re.match(r"add_subdirectory\s*\(\s*([\w/.-]+)", stripped)
            if sub:
                visit(folder / sub.group(1))
        for block in re.findall(r"(?:add_executable|add_library|configure_file)\s*\(([^)]*)\)", text):
            for word in block.split():
                if re.search(r"\.(cpp|cc|c|hpp|h|in)$", word) and "$" not in word:
                    needed.add((folder / word).relative_to(ROOT).as_posix())

    visit(ROOT)
    return needed


def build_stage():
    found, _ = stages()
    named = [s for s in found if s["name"] == "build"]
    assert named, "no stage named build"
    return named[0]


@suite.check
def stages_and_references():
    found, global_args = stages()
    assert len(found) >= 2, "a build stage and a runtime stage are expected"
    names = [s["name"] for s in found if s["name"]]
    assert len(names) == len(set(names)), f"stage names repeat: {names}"
    for index, stage in enumerate(found):
        for variable in re.findall(r"\$\{?(\w+)", stage["base"]):
            assert global_args.get(variable), f"FROM {stage['base']}: ARG {variable} has no default before FROM"
        earlier = [s["name"] for s in found[:index]] + [str(i) for i in range(index)]
        for source_stage, _, _, line in copies(stage):
            if source_stage is not None:
                assert source_stage in earlier, f"line {line}: COPY --from={source_stage} names no earlier stage"
    base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args[m.group(1)], build_stage()["base"])
    assert re.fullmatch(r"debian:(12|bookworm)([.-][\w.-]*)?", base), f"the build stage is not Debian 12: {base}"
    final = found[-1]
    assert final["name"] != "build" and final["base"] == "scratch", "the last stage must be the slim runtime"
    assert [c for c in copies(final) if c[0] == "build"], "the runtime stage copies nothing from the build stage"
    assert not [k for k, _, _ in final["instructions"] if k == "RUN"], "the runtime stage has no shell to RUN"


@suite.check
def copy_sources_exist_in_the_context():
    ignore = DockerIgnore(DOCKERIGNORE.read_text())
    found, _ = stages()
    for stage in found:
        for source_stage, sources, _, line in copies(stage):
            if source_stage is not None:
                continue
            for source in sources:
                assert not source.startswith(("/", "..")), f"line {line}: {source} is outside the context"
                kept = context_files(source.rstrip("/") or ".", ignore)
                assert kept, f"line {line}: .dockerignore leaves nothing of {source}"
    # The ignore file keeps the context small: no build trees, no .git, no VM lab.
    for heavy in ["build/bin/oomguard", ".git/HEAD", "tests/e2e/run-suite.sh", "helm/oomguard/Chart.yaml",
                  "build-asan/CMakeCache.txt"]:
        assert ignore.excluded(heavy), f"{heavy} would be sent to the Docker daemon"


@suite.check
def copies_from_the_build_stage_are_produced_there():
    found, _ = stages()
    build = build_stage()
    made = " ".join(arguments for keyword, arguments, _ in build["instructions"] if keyword in ("RUN", "WORKDIR"))
    for stage in found:
        for source_stage, sources, _, line in copies(stage):
            if source_stage != "build":
                continue
            for source in sources:
                assert source.rstrip("/") in made, f"line {line}: nothing in the build stage makes {source}"


@suite.check
def the_build_has_every_source_it_needs():
    build = build_stage()
    ignore = DockerIgnore(DOCKERIGNORE.read_text())
    run_cmake = [(a, l) for k, a, l in build["instructions"] if k == "RUN" and "cmake -S" in a]
    assert len(run_cmake) == 1, "expected one RUN that configures with cmake -S"
    cmake_line, cmake_at = run_cmake[0]
    options = {"OOMGUARD_TESTS": True, "OOMGUARD_BENCH": True, "OOMGUARD_FUZZ": False,
               "OOMGUARD_SANITIZE": False}
    for name, value in re.findall(r"-D(OOMGUARD_\w+)=(\w+)", cmake_line):
        options[name] = value.upper() in ("ON", "TRUE", "1", "YES")
    copied = set()
    for source_stage, sources, destination, line in copies(build):
        if source_stage is None and line < cmake_at:
            for source in sources:
                copied |= set(context_files(source.rstrip("/"), ignore))
    needed = cmake_sources(options)
    # Data the unit tests read at run time (OOMGUARD_FIXTURES, OOMGUARD_SOURCE_DIR/examples).
    needed |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "fixtures").rglob("*") if p.is_file()}
    needed.add("examples/oomguard.json")
    missing = sorted(n for n in needed if n not in copied)
    assert not missing, f"the build stage lacks files the build or the unit tests read: {missing[:20]}"
    # The targets it builds exist, and the unit tests run.
    targets = re.search(r"--target\s+((?:[\w-]+\s*)+)", cmake_line).group(1).split()
    declared = set()
    for cmake in ROOT.rglob("CMakeLists.txt"):
        if "build" not in cmake.relative_to(ROOT).parts[0]:
            declared |= set(re.findall(r"add_(?:executable|custom_target)\s*\(\s*([\w-]+)", cmake.read_text()))
    assert set(targets) <= declared, f"unknown targets {set(targets) - declared}"
    assert "oomguard" in targets and "unit_tests" in targets
    assert re.search(r"ctest --test-dir build -L unit\b", cmake_line), "the unit tests are not run"
    assert not options["OOMGUARD_FUZZ"], "the image is not a fuzzing build"


@suite.check
def dependencies_come_from_the_project_script():
    build = build_stage()
    steps = build["instructions"]
    script_copy = [line for s, sources, _, line in copies(build) if "scripts/install-deps.sh" in sources]
    uses = [line for keyword, arguments, line in steps if keyword == "RUN" and "scripts/install-deps.sh build" in
            arguments]
    assert script_copy and uses and script_copy[0] < uses[0], "install-deps.sh must be copied, then run with 'build'"
    assert (ROOT / "scripts" / "install-deps.sh").stat().st_mode & 0o111, "scripts/install-deps.sh is not executable"


@suite.check
def run_scripts_are_valid_shell():
    shell = shutil.which("dash") or shutil.which("sh")
    if not shell:
        raise Skip("no POSIX shell to check the RUN lines with")
    found, _ = stages()
    for stage in found:
        for keyword, arguments, line in stage["instructions"]:
            if keyword != "RUN" or arguments.startswith("["):
                continue
            result = subprocess.run([shell, "-n", "-c", arguments], capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, f"line {line}: {result.stderr}"


@suite.check
def runtime_stage_user_and_entrypoint():
    found, _ = stages()
    final = found[-1]
    keywords = {k: a for k, a, _ in final["instructions"]}
    user = keywords.get("USER", "0")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"the image's default user is root ({user}): the chart opts into uid 0"
    entrypoint = json.loads(keywords["ENTRYPOINT"])
    assert entrypoint == ["/usr/bin/oomguard"], entrypoint
    assert json.loads(keywords["CMD"]) == ["run"]
    made = " ".join(a for k, a, _ in build_stage()["instructions"] if k == "RUN")
    assert "/rootfs/usr/bin/oomguard" in made, "the build stage does not place the binary at /usr/bin/oomguard"
    assert "ldd" in made and "ld-linux" not in DOCKERFILE.read_text().split("FROM scratch")[1], \
        "the runtime libraries must come from ldd in the build stage"


@suite.check
def runtime_tree_script_works_here():
    """The build stage's RUN that assembles /rootfs, run on this machine against build/bin/oomguard with
    /rootfs moved to a temporary folder: it must produce a tree in which the binary runs under chroot."""
    binary = ROOT / "build" / "bin" / "oomguard"
    if not binary.exists():
        raise Skip("build/bin/oomguard is not built")
    if not shutil.which("ldd") or not shutil.which("chroot") or not shutil.which("strip"):
        raise Skip("ldd, chroot or strip is missing")
    runs = [a for k, a, _ in build_stage()["instructions"] if k == "RUN" and "/rootfs" in a]
    assert len(runs) == 1, "expected one RUN that assembles /rootfs"
    with tempfile.TemporaryDirectory() as work:
        module = ROOT / "build" / "lib" / "oomguard" / "liboomguard_kube_tls.so"
        script = (runs[0].replace("/rootfs", f"{work}/rootfs").replace("/tmp/libs", f"{work}/libs")
                  .replace("build/bin/oomguard", str(binary)).replace("build/lib/oomguard", str(module.parent)))
        result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120)
        if result.returncode != 0 and "chroot" in result.stderr and "Operation not permitted" in result.stderr:
            raise Skip("chroot is not permitted here (CAP_SYS_CHROOT)")
        assert result.returncode == 0, f"the RUN failed here:\n{result.stderr}"
        project = re.search(r"project\(oomguard VERSION ([\d.]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)
        assert project in result.stdout, f"oomguard --version under chroot printed {result.stdout!r}"
        # The Kubernetes client module (loaded by `run` only when kubernetes.enabled) loads in the image.
        assert "kubernetes client: /usr/lib/oomguard/liboomguard_kube_tls.so" in result.stdout, \
            f"the Kubernetes client module does not load under chroot: {result.stdout!r}"
        tree = sorted(p.relative_to(f"{work}/rootfs").as_posix() for p in Path(work, "rootfs").rglob("*")
                      if p.is_file())
        libraries = [line for line in Path(work, "libs").read_text().split() if line]
        assert tree == sorted(["usr/bin/oomguard", "usr/lib/oomguard/liboomguard_kube_tls.so"] +
                              [lib.lstrip("/") for lib in libraries]), tree


@suite.check
def versions_agree():
    project = re.search(r"project\(oomguard VERSION ([\d.]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)
    chart = (ROOT / "helm" / "oomguard" / "Chart.yaml").read_text()
    app_version = re.search(r'^appVersion:\s*"?([^"\n]+)"?', chart, re.MULTILINE).group(1)
    label = re.search(r"ARG OOMGUARD_VERSION=([\d.]+)", DOCKERFILE.read_text()).group(1)
    assert project == app_version == label, f"CMake {project}, chart appVersion {app_version}, image label {label}"


if __name__ == "__main__":
    main(suite)
