"""What the chart suites share (test_chart.py, test_chart_hardening.py): helm itself, rendering the chart
into parsed objects, the oomguard binary that checks the rendered config, and the config keys that
docs/config.md documents and the values schema knows.

Environment (tests/helm/run.sh sets it): HELM, KUBECTL (binaries), OOMGUARD (build/bin/oomguard, may be
missing), K8S_MODELS (node_modules with kubernetes-models, may be missing), NODE (node, may be missing).
"""
import copy
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import yaml

from checks import Skip

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "oomguard"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
NAMESPACE = "guard"
RELEASE = "og"
SCHEMA_ERROR = "values don't meet the specifications of the schema"

DEFAULT_ARGS = ["run", "--config", "/etc/oomguard/config.json", "--proc-root", "/host/proc", "--cgroup-root",
                "/host/sys/fs/cgroup", "--metrics-listen", "0.0.0.0:9743"]
CAPABILITIES = {"KILL", "SYS_RESOURCE", "DAC_OVERRIDE", "SYSLOG", "IPC_LOCK"}
# The exec probes' command with the default values: the image's binary, the loopback health listener.
HEALTH_COMMAND = ["/usr/bin/oomguard", "health", "--address", "127.0.0.1:9744", "--timeout-ms", "2000"]


def tool(name):
    path = os.environ.get(name.upper(), "")
    if not path or not os.access(path, os.X_OK):
        found = shutil.which(name.lower())
        if not found:
            raise Skip(f"{name.lower()} not found (tests/helm/run.sh installs it)")
        path = found
    return path


def helm(*args, check=True):
    result = subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HOME": os.environ.get("HOME", "/tmp")})
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def template_args(values=None, sets=(), chart=CHART, kube_version=None):
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    if kube_version:
        args += ["--kube-version", kube_version]
    for path in values or []:
        args += ["--values", str(path)]
    for item in sets:  # "json:a.b=[1]" is passed with --set-json (--set reads 0.1 as a string)
        args += ["--set-json", item[5:]] if item.startswith("json:") else ["--set", item]
    return args


def render(values=None, sets=(), chart=CHART, kube_version=None):
    text = helm(*template_args(values, sets, chart, kube_version)).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def refused(sets=(), values=None):
    """helm template's stderr for values the chart must refuse (it fails if they are accepted)."""
    result = helm(*template_args(values, sets), check=False)
    assert result.returncode != 0, f"accepted: --set {' '.join(sets)} {values or ''}"
    return result.stderr


def one(objects, kind):
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}: {[o['kind'] for o in objects]}"
    return found[0]


def container(objects):
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1, pod["containers"]
    return pod, pod["containers"][0]


def config_of(objects):
    data = one(objects, "ConfigMap")["data"]
    assert sorted(data) == ["config.json"], sorted(data)
    config = json.loads(data["config.json"])
    return config, config.get("kubernetes")


def oomguard_binary():
    path = os.environ.get("OOMGUARD", str(ROOT / "build" / "bin" / "oomguard"))
    if not os.access(path, os.X_OK):
        raise Skip(f"{path} is not built (cmake --build build --target oomguard)")
    return path


@functools.lru_cache(maxsize=None)
def has_health_subcommand(binary):
    """Whether this build has `oomguard health` and the config key metrics.health_listen (issue 16): a
    binary from before that refuses the chart's config for that one key."""
    result = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    return any(line.split()[:1] == ["health"] for line in result.stdout.splitlines())


NOTES = []  # what a check could not cover with this build; the suites print them before their summary


def without_health_listen(config):
    config = copy.deepcopy(config)
    config.get("metrics", {}).pop("health_listen", None)
    return config


def check_config(config):
    binary = oomguard_binary()
    if not has_health_subcommand(binary) and "health_listen" in config.get("metrics", {}):
        config = without_health_listen(config)
        note = (f"{binary} predates `oomguard health`: the rendered configs were checked without "
                "metrics.health_listen")
        if note not in NOTES:
            NOTES.append(note)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    try:
        result = subprocess.run([binary, "check-config", f.name], capture_output=True, text=True, timeout=30)
    finally:
        os.unlink(f.name)
    assert result.returncode == 0, f"oomguard check-config rejects the rendered config:\n{result.stderr}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def documented_config_keys():
    """The leaf keys docs/config.md documents, as dotted paths ("cgroups[].match"): the first column of its
    tables ("`a` / `b`" and "`a.b`, `c`" name several keys; "…act.x" is under cgroups[].act and host.act),
    the trigger sentence's keys under every "pressure" trigger, and "{k1, k2 ...}" objects' keys."""
    text = (ROOT / "docs" / "config.md").read_text()
    keys = set()
    act_prefixes = ("cgroups[].act", "host.act")
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) < 2 or not cells[0].startswith(("`", "…", "\u2026")):
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        if not names or cells[0].startswith("`key"):
            continue
        expanded = []
        first = names[0].lstrip("…")
        for i, name in enumerate(names):
            if i > 0 and "." not in name and "." in first:  # "`x.a`, `b`": b is a sibling of a
                name = first[:first.rfind(".") + 1] + name
            else:
                name = name.lstrip("…")
            expanded += [f"{prefix}{name}" for prefix in ("cgroups[].", "host.")] if names[0].startswith("…") \
                else [name]
        object_keys = re.fullmatch(r"`\{([^}]*)\}`", cells[1])
        for key in expanded:
            keys.add(key)
            if object_keys:
                keys |= {f"{key}.{item.split()[0]}" for item in object_keys.group(1).split(",")}
    trigger = re.search(r"A trigger is `(\{.*?\})`", text)
    assert trigger, "docs/config.md no longer describes a trigger as `{...}`"
    trigger_keys = set(re.findall(r'"([a-z_]+)":', trigger.group(1)))
    for key in [k for k in keys if k.endswith(".pressure") and not k.startswith(act_prefixes)]:
        keys |= {f"{key}.{k}" for k in trigger_keys}
    # Leaves only: a key that another key extends is an object or array.
    return {k for k in keys if not any(other.startswith(k + ".") or other.startswith(k + "[]") for other in keys)}


LEAF_MAPS = {"sysctls.values"}  # documented as one key: an object of name -> value


def schema_config_keys(schema, prefix=""):
    """The leaf keys of the schema's config object, in the same dotted spelling."""
    keys = set()
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        if path in LEAF_MAPS:
            keys.add(path)
        elif sub.get("type") == "array" and "properties" in sub.get("items", {}):
            keys |= schema_config_keys(sub["items"], f"{path}[].")
        elif "properties" in sub:
            keys |= schema_config_keys(sub, f"{path}.")
        else:
            keys.add(path)
    return keys
