"""The Helm chart helm/oomguard, rendered by the real helm and checked as parsed YAML objects.

Environment (tests/helm/run.sh sets it): HELM, KUBECTL (binaries), OOMGUARD (build/bin/oomguard, may be
missing), K8S_MODELS (node_modules with kubernetes-models, may be missing), NODE (node, may be missing).
Run: python3 tests/helm/test_chart.py [WORD...]   (only the checks whose name contains a WORD)
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

sys.dont_write_bytecode = True  # keep tests/helm free of __pycache__
from checks import Skip, Suite, main
from chartlib import (CHART, DEFAULT_ARGS, FIXTURES, HEALTH_COMMAND, NAMESPACE, NOTES, RELEASE, ROOT, SCHEMA_ERROR,
                      check_config, config_of, container, free_port, has_health_subcommand, helm, one,
                      documented_config_keys, oomguard_binary, render, schema_config_keys, template_args, tool,
                      without_health_listen)

suite = Suite("chart", NOTES)


@suite.check
def lint_strict_default_values():
    result = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout, result.stdout


@suite.check
def lint_strict_non_default_values():
    result = helm("lint", "--strict", str(CHART), "--values", str(FIXTURES / "values-nondefault.yaml"))
    assert "0 chart(s) failed" in result.stdout, result.stdout


@suite.check
def default_objects():
    objects = render()
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service",
                            "DaemonSet", "NetworkPolicy"]), kinds
    for o in objects:
        assert o["metadata"]["name"] == f"{RELEASE}-oomguard", o["metadata"]
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"]["namespace"] == NAMESPACE, o["metadata"]
        assert o["metadata"]["labels"]["app.kubernetes.io/name"] == "oomguard"


@suite.check
def daemonset_sees_the_host():
    objects = render()
    pod, c = container(objects)
    assert pod["hostPID"] is True
    assert not pod.get("hostNetwork") and not pod.get("hostIPC"), pod
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert c["args"] == DEFAULT_ARGS, c["args"]
    assert c["env"] == [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}], c["env"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9743, "protocol": "TCP"}], c["ports"]
    assert c["image"] == "oomguard:0.1.0"
    selector = one(objects, "DaemonSet")["spec"]["selector"]["matchLabels"]
    assert all(pod_label in one(objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"].items()
               for pod_label in selector.items())


@suite.check
def default_config_is_valid():
    config, kubernetes = config_of(render())
    assert config["metrics"] == {"listen": "0.0.0.0:9743", "health_listen": "127.0.0.1:9744", "top_k": 10}, \
        config["metrics"]
    assert config["mode"] == "observe" and config["read_kmsg"] is True
    assert config["history"] == {"dir": "/var/lib/oomguard", "max_kib": 1024}, config["history"]
    assert kubernetes == {"enabled": True, "events": True, "annotations": True,
                          "protected_namespaces": ["kube-system"], "tenant_max_sigterm_grace_seconds": 10}, kubernetes
    env = {e["name"]: e for e in container(render())[1]["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}, env
    check_config(config)


@suite.check
def non_default_values():
    objects = render(values=[FIXTURES / "values-nondefault.yaml"])
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service",
                            "DaemonSet", "ServiceMonitor", "NetworkPolicy"]), kinds
    pod, c = container(objects)
    assert c["image"] == ("registry.example/oomguard@sha256:"
                          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), c["image"]
    assert c["imagePullPolicy"] == "Always" and pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert c["args"] == DEFAULT_ARGS[:-1] + ["0.0.0.0:9800", "--dry-run", "--example-extra-arg"], c["args"]
    assert c["ports"][0]["containerPort"] == 9800
    assert pod["serviceAccountName"] == "guardian-sa"
    assert one(objects, "ServiceAccount")["metadata"]["annotations"] == {"example.com/role": "node-agent"}
    assert one(objects, "DaemonSet")["metadata"]["name"] == "guardian"
    assert not [v for v in pod["volumes"] if v.get("hostPath", {}).get("path") == "/dev/kmsg"]
    assert "/dev/kmsg" not in [m["mountPath"] for m in c["volumeMounts"]]
    # history.enabled=false: no journal in the config, no node directory mounted.
    assert config_of(objects)[0]["history"] is None
    assert "/var/lib/oomguard" not in [m["mountPath"] for m in c["volumeMounts"]]
    sc = c["securityContext"]
    assert sc["capabilities"]["add"] == ["KILL", "SYS_RESOURCE"] and sc["seccompProfile"]["type"] == "Unconfined"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "node-role.example/worker": "true"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "batch",
                                   "effect": "NoSchedule"}]
    template = one(objects, "DaemonSet")["spec"]["template"]["metadata"]
    assert template["labels"]["team"] == "sre" and template["annotations"]["example.com/owner"] == "sre"
    service = one(objects, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9800, "targetPort": "metrics",
                                         "protocol": "TCP"}]
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    # job = the Service's app.kubernetes.io/name, "oomguard", as the rules' availability alerts expect.
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    assert service["metadata"]["labels"]["app.kubernetes.io/name"] == "oomguard"
    endpoint, = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s" and endpoint["scrapeTimeout"] == "5s"
    assert endpoint["honorLabels"] is True  # the series' own namespace/pod/container labels are the workloads'
    config, kubernetes = config_of(objects)
    assert config["metrics"] == {"listen": "0.0.0.0:9800", "health_listen": "127.0.0.1:9900", "top_k": 20}, \
        config["metrics"]
    assert c["livenessProbe"]["exec"]["command"] == [*HEALTH_COMMAND[:3], "127.0.0.1:9900", "--timeout-ms", "1500"]
    assert (c["livenessProbe"]["timeoutSeconds"], c["livenessProbe"]["periodSeconds"],
            c["livenessProbe"]["failureThreshold"]) == (3, 30, 4), c["livenessProbe"]
    assert (c["readinessProbe"]["timeoutSeconds"], c["readinessProbe"]["periodSeconds"],
            c["readinessProbe"]["failureThreshold"]) == (2, 5, 2), c["readinessProbe"]
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["ingress"] == [{"from": [{"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["observability", "platform-monitoring"]}]},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"}}}],
        "ports": [{"protocol": "TCP", "port": 9800}]}], policy["ingress"]
    assert policy["podSelector"]["matchLabels"] == one(objects, "DaemonSet")["spec"]["selector"]["matchLabels"]
    assert config["read_kmsg"] is False  # no /dev/kmsg mounted
    assert [rule["match"] for rule in config["cgroups"]] == ["/kubepods.slice/**", "/kubepods/**", "/**"]
    assert config["refresh_interval_s"] == 0.5
    assert kubernetes["protected_namespaces"] == ["kube-system", "platform-*", "team-?-prod"], kubernetes
    assert kubernetes["tenant_max_sigterm_grace_seconds"] == 5 and kubernetes["events"] is False, kubernetes
    check_config(config)


@suite.check
def acting_config_is_valid():
    objects = render(values=[FIXTURES / "values-act.yaml"])
    config, _ = config_of(objects)
    assert config["mode"] == "act" and config["sysctls"]["values"]["kernel.panic"] == 10, config
    assert config["cgroups"][1]["protection"] == -900
    check_config(config)
    helm("lint", "--strict", str(CHART), "--values", str(FIXTURES / "values-act.yaml"))


@suite.check
def config_json_verbatim():
    text = '{"version": 1, "self": {"oom_score_adj": null}, "host": {"pressure": null}, ' \
           '"metrics": {"listen": "0.0.0.0:9743", "health_listen": "127.0.0.1:9744"}}'
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"configJson": text}, f)
    try:
        config, _ = config_of(render(values=[f.name]))
    finally:
        os.unlink(f.name)
    assert config == json.loads(text), config
    check_config(config)
    # The probes ask the health listener: a configJson without it (or with another) is refused, and so
    # is text that is not JSON.
    for bad, words in [(text.replace("127.0.0.1:9744", "0.0.0.0:9744"), "health_listen"),
                       (text.replace(', "health_listen": "127.0.0.1:9744"', ""), "health_listen"),
                       (text[:-1], "not a JSON object")]:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump({"configJson": bad}, f)
        try:
            result = helm(*template_args(values=[f.name]), check=False)
            alone = helm(*template_args(values=[f.name], sets=["health.enabled=false"]), check=False)
        finally:
            os.unlink(f.name)
        assert result.returncode != 0 and words in result.stderr, f"{bad}: {result.stderr}"
        assert (alone.returncode == 0) == (words == "health_listen"), f"{bad}, health off: {alone.stderr}"


@suite.check
def pods_roll_when_the_config_changes():
    def checksum(sets):
        metadata = one(render(sets=sets), "DaemonSet")["spec"]["template"]["metadata"]
        return (metadata.get("annotations") or {}).get("checksum/config")
    base = checksum([])
    assert re.fullmatch(r"[0-9a-f]{64}", base or ""), base
    assert checksum(["config.refresh_interval_s=2"]) != base
    assert checksum(["workloadAnnotations.protectedNamespaces={kube-system,ops}"]) != base
    assert checksum(["rollOnConfigChange=false"]) is None


def chart_copy_with_rules(rules_text):
    work = Path(tempfile.mkdtemp(prefix="oomguard-chart-"))
    copy = work / "oomguard"
    shutil.copytree(CHART, copy)
    (copy / "files" / "oomguard.rules.yml").write_text(rules_text)
    return work, copy


def promtool_check(groups):
    promtool = shutil.which("promtool")
    if not promtool:
        return "promtool not installed: rules syntax not checked"
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": groups}, f)
    try:
        result = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(f.name)
    assert result.returncode == 0, f"promtool check rules:\n{result.stdout}{result.stderr}"
    return ""


@suite.check
def prometheus_rule_renders_the_rules_file():
    fixture = (FIXTURES / "rules.yml").read_text()
    work, copy = chart_copy_with_rules(fixture)
    try:
        objects = render(sets=["prometheusRule.enabled=true", "prometheusRule.labels.release=prom"], chart=copy)
        rule = one(objects, "PrometheusRule")
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        assert rule["metadata"]["labels"]["release"] == "prom"
        assert rule["spec"]["groups"] == yaml.safe_load(fixture)["groups"], rule["spec"]
        note = promtool_check(rule["spec"]["groups"])
        assert not [o for o in render(chart=copy) if o["kind"] == "PrometheusRule"], "rendered while disabled"
        (copy / "files" / "oomguard.rules.yml").write_text("groups: [\n")
        broken = helm(*template_args(sets=["prometheusRule.enabled=true"], chart=copy), check=False)
        assert broken.returncode != 0 and "not YAML" in broken.stderr, broken.stderr
    finally:
        shutil.rmtree(work)
    if note:
        print(f"      ({note})")


@suite.check
def prometheus_rule_from_the_project_rules():
    chart_rules = CHART / "files" / "oomguard.rules.yml"
    if not chart_rules.exists():
        result = helm(*template_args(sets=["prometheusRule.enabled=true"]), check=False)
        assert result.returncode != 0 and "files/oomguard.rules.yml" in result.stderr, result.stderr
        raise Skip("helm/oomguard/files/oomguard.rules.yml is not there yet (monitoring/oomguard.rules.yml "
                   "copied by tests/helm/sync-rules.sh); enabling prometheusRule fails with a clear message")
    rule = one(render(sets=["prometheusRule.enabled=true"]), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(chart_rules.read_text())["groups"]
    assert rule["spec"]["groups"], "no rule groups"
    promtool_check(rule["spec"]["groups"])


@suite.check
def rules_copy_in_sync():
    source = ROOT / "monitoring" / "oomguard.rules.yml"
    copy = CHART / "files" / "oomguard.rules.yml"
    if not source.exists() and not copy.exists():
        raise Skip("monitoring/oomguard.rules.yml does not exist yet: nothing to keep in sync")
    assert source.exists(), f"{copy} exists but {source} does not"
    assert copy.exists() and copy.read_bytes() == source.read_bytes(), (
        "helm/oomguard/files/oomguard.rules.yml differs from monitoring/oomguard.rules.yml: "
        "run tests/helm/sync-rules.sh")


SCHEMA_ERROR = "values don't meet the specifications of the schema"


@suite.check
def schema_rejects_bad_values():
    bad = {  # --set ... -> the key helm's schema error must name
        "unknownKey=1": "unknownKey",
        "image.pullPolicy=Sometimes": "image.pullPolicy",
        "image.digest=latest": "image.digest",
        "metrics.port=70000": "metrics.port",
        "config.mode=kill": "config.mode",
        "config.refresh_interval_s=0": "config.refresh_interval_s",
        "config.bogus=1": "bogus",
        "config.metrics.listen=127.0.0.1:1": "listen",  # the chart owns metrics.listen (metrics.port)
        "config.metrics.health_listen=127.0.0.1:1": "health_listen",  # and metrics.health_listen (health.port)
        "config.cgroups[0].match=kubepods": "config.cgroups.0.match",
        "config.host.pressure.window_ms=20000": "config.host.pressure.window_ms",
        "config.cgroups[0].match=/x,config.cgroups[0].protection=paramount": "config.cgroups.0.protection",
        "config.cgroups[0].match=/x,config.cgroups[0].act.action=explode": "config.cgroups.0.act.action",
        "config.sysctls.values.vm\\.swappiness=10": "swappiness",
        "config.policy.max_kills_per_minute=0": "config.policy.max_kills_per_minute",
        "securityContext.capabilities={SYS_MODULE}": "securityContext.capabilities.0",
        "securityContext.seccompProfile=Localhost": "securityContext.seccompProfile",
        "workloadAnnotations.protectedNamespaces={Kube System}": "workloadAnnotations.protectedNamespaces.0",
        "workloadAnnotations.tenantMaxSigtermGraceSeconds=500": "workloadAnnotations.tenantMaxSigtermGraceSeconds",
        "serviceMonitor.interval=often": "serviceMonitor.interval",
        "resources.limits.memory=lots": "resources.limits.memory",
    }
    for item, key in bad.items():
        result = helm(*template_args(sets=[item]), check=False)
        assert result.returncode != 0, f"--set {item} was accepted"
        assert SCHEMA_ERROR in result.stderr and key in result.stderr, f"--set {item}: {result.stderr}"
    # Controls: near misses that are valid.
    for item in ["config.mode=act", "config.cgroups[0].match=/x,config.cgroups[0].protection=-42", "config.sysctls.values.vm\\.panic_on_oom=0",
                 "metrics.port=65535", "json:config.refresh_interval_s=0.1", "securityContext.capabilities={KILL}",
                 "workloadAnnotations.protectedNamespaces={team-*}", "resources.limits.memory=1Gi"]:
        helm(*template_args(sets=[item]))


# Config keys the chart sets itself (from metrics.port and health.port), so the schema refuses them under
# `config`. metrics.health_listen may be documented in docs/config.md or not yet (it came with issue 16).
CHART_OWNED = {"metrics.listen", "metrics.health_listen"}


@suite.check
def schema_follows_docs_config_md():
    schema = json.loads((CHART / "values.schema.json").read_text())
    in_schema = schema_config_keys(schema["properties"]["config"])
    documented = documented_config_keys()
    missing = sorted(documented - in_schema - CHART_OWNED)
    extra = sorted(in_schema - documented)
    assert "metrics.listen" in documented, "docs/config.md no longer documents metrics.listen"
    assert not missing and not extra, (
        f"values.schema.json's config and docs/config.md differ: documented but not in the schema {missing}, "
        f"in the schema but not documented {extra}")
    assert not in_schema & CHART_OWNED, f"the schema lets `config` set {sorted(in_schema & CHART_OWNED)}"


def all_rendered_objects():
    work, copy = chart_copy_with_rules((FIXTURES / "rules.yml").read_text())
    try:
        return (render() + render(values=[FIXTURES / "values-nondefault.yaml"]) +
                render(sets=["prometheusRule.enabled=true", "securityContext.privileged=true"], chart=copy) +
                # sysctl file mounts, AppArmor Unconfined; the annotation and no recursiveReadOnly before 1.30
                [o for o in render(values=[FIXTURES / "values-act.yaml"]) if o["kind"] == "DaemonSet"] +
                [o for o in render(sets=["metricsProxy.enabled=true", "serviceMonitor.enabled=true"])
                 if o["kind"] in ("DaemonSet", "ClusterRole", "ServiceMonitor")] +
                [o for o in render(kube_version="1.29.0", sets=["securityContext.appArmorProfile.type=Localhost",
                                                                "securityContext.appArmorProfile.localhostProfile=og"])
                 if o["kind"] == "DaemonSet"])
    finally:
        shutil.rmtree(work)


@suite.check
def objects_match_the_kubernetes_openapi_schemas():
    node = shutil.which(os.environ.get("NODE", "node"))
    models = os.environ.get("K8S_MODELS", "")
    if not node:
        raise Skip("node is not installed")
    if not models or not Path(models, "kubernetes-models").is_dir():
        raise Skip("kubernetes-models is not installed (tests/helm/install-tools.sh)")
    objects = all_rendered_objects()
    result = subprocess.run([node, str(Path(__file__).parent / "validate-manifests.mjs"), models],
                            input=json.dumps(objects), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == len(objects), result.stdout + result.stderr
    bad = [f"{line['kind']}/{line['name']}: {line['error']}" for line in lines if not line["ok"]]
    assert not bad, "\n".join(bad)
    # The validator really rejects: a DaemonSet whose runAsUser is a string.
    broken = json.loads(json.dumps(one(render(), "DaemonSet")))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = "0"
    result = subprocess.run([node, str(Path(__file__).parent / "validate-manifests.mjs"), models],
                            input=json.dumps([broken]), capture_output=True, text=True, timeout=60)
    assert '"ok":false' in result.stdout and "runAsUser" in result.stdout, result.stdout


@suite.check
def kubectl_client_dry_run():
    kubectl = tool("kubectl")
    objects = render()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(objects, f)
    # An empty kubeconfig: kubectl may only try the loopback default, never a cluster of the caller's.
    with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", delete=False) as empty:
        pass
    try:
        result = subprocess.run([kubectl, "apply", "--dry-run=client", "-f", f.name], capture_output=True,
                                text=True, timeout=60, env={**os.environ, "KUBECONFIG": empty.name})
    finally:
        os.unlink(f.name)
        os.unlink(empty.name)
    if result.returncode != 0 and re.search(r"connection refused|no configuration|unable to recognize|"
                                            r"couldn't get current server|failed to download openapi",
                                            result.stderr):
        raise Skip("kubectl apply --dry-run=client needs an API server for discovery and OpenAPI, and none is "
                   "reachable here; the Kubernetes OpenAPI schemas are checked offline instead")
    assert result.returncode == 0, result.stderr


@suite.check
def notes_render():
    work = Path(tempfile.mkdtemp(prefix="oomguard-notes-"))
    try:
        copy = work / "oomguard"
        shutil.copytree(CHART, copy)
        notes = (copy / "templates" / "NOTES.txt").read_text()
        (copy / "templates" / "_notes_under_test.tpl").write_text('{{- define "notes-under-test" -}}\n' + notes +
                                                                  "\n{{- end }}\n")
        (copy / "templates" / "notes-under-test.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n"
            '{{ include "notes-under-test" . | indent 4 }}\n')
        for sets, expect in [([], ["logs ds/og-oomguard", "port-forward ds/og-oomguard 9743", "privileged=true",
                                   "(kube-system)", "NetworkPolicy og-oomguard",
                                   'namespaces {"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}',
                                   "127.0.0.1:9744"]),
                             (["kmsg.enabled=false", "json:workloadAnnotations.protectedNamespaces=[]",
                               "networkPolicy.enabled=false", "health.enabled=false"],
                              ["(none)", "No NetworkPolicy"]),
                             (["metricsProxy.enabled=true"], ["kube-rbac-proxy", "port-forward ds/og-oomguard 9745",
                                                              "localhost:9745/metrics"])]:
            objects = render(sets=sets, chart=copy)
            text = [o for o in objects if o["metadata"]["name"] == "notes"][0]["data"]["notes"]
            if "health.enabled=false" in sets:
                assert "127.0.0.1:9744" not in text, text
            for word in expect:
                assert word in text, f"NOTES with {sets} lacks {word!r}:\n{text}"
            if "kmsg.enabled=false" in sets:  # no /dev/kmsg: no advice about it
                assert "privileged=true" not in text
    finally:
        shutil.rmtree(work)


def http_status(port, path):
    """The HTTP status of GET path on the loopback port, or None when nothing answers."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with direct.open(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@suite.check
def daemon_accepts_the_daemonset_arguments():
    """The host's build run with the DaemonSet's arguments and rendered config, and the exec probes run as
    kubelet runs them (the host's binary for the image's /usr/bin/oomguard): 0 while the daemon runs, 1 once
    it has stopped."""
    binary = oomguard_binary()
    help_text = subprocess.run([binary, "run", "--help"], capture_output=True, text=True, timeout=30).stdout
    if "--metrics-listen" not in help_text:
        raise Skip("build/bin/oomguard run has no --metrics-listen option yet (DESIGN.md section 4 lists it); "
                   "with this binary the DaemonSet's container would exit 2")
    health = has_health_subcommand(binary)
    port = free_port()
    health_port = next(p for p in iter(free_port, None) if p != port)
    objects = render(sets=[f"metrics.port={port}", f"health.port={health_port}"])
    _, c = container(objects)
    config, _ = config_of(objects)
    assert config["metrics"]["health_listen"] == f"127.0.0.1:{health_port}", config["metrics"]
    if not health:
        config = without_health_listen(config)
    cgroup_root = "/sys/fs/cgroup/unified" if Path("/sys/fs/cgroup/unified/cgroup.procs").exists() else "/sys/fs/cgroup"
    probes = {name: c[name]["exec"]["command"] for name in ("livenessProbe", "readinessProbe")}
    for command in probes.values():
        assert command[0] == HEALTH_COMMAND[0] and command[2:4] == ["--address", f"127.0.0.1:{health_port}"], command

    def run_probe(name):
        return subprocess.run([binary, *probes[name][1:]], capture_output=True, text=True,
                              timeout=c[name]["timeoutSeconds"])

    with tempfile.TemporaryDirectory() as work:
        config["metrics"]["listen"] = f"127.0.0.1:{port}"  # loopback only on a shared machine
        # The chart's history dir is the pod's mount of the node's /var/lib/oomguard: here, a scratch one.
        assert config["history"]["dir"] == "/var/lib/oomguard", config["history"]
        config["history"]["dir"] = f"{work}/history"
        Path(work, "config.json").write_text(json.dumps(config))
        replace = {"/etc/oomguard/config.json": f"{work}/config.json", "/host/proc": "/proc",
                   "/host/sys/fs/cgroup": cgroup_root, f"0.0.0.0:{port}": f"127.0.0.1:{port}"}
        args = [replace.get(a, a) for a in c["args"]]
        daemon = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        statuses, ran = {}, {}
        wanted = {("metrics", "/metrics"): 200} | ({("health", "/healthz"): 200} if health else {})
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and daemon.poll() is None and statuses != wanted:
                statuses = {key: http_status(port if key[0] == "metrics" else health_port, key[1]) for key in wanted}
                time.sleep(0 if statuses == wanted else 0.2)
            if health and daemon.poll() is None:
                ran = {name: run_probe(name) for name in probes}
                statuses[("health", "/metrics")] = http_status(health_port, "/metrics")
            early = daemon.poll()
            if early is None:
                daemon.send_signal(signal.SIGTERM)
            out, err = daemon.communicate(timeout=15)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    assert early is None, f"oomguard {' '.join(args)} exited at once ({early}):\n{err}"
    assert daemon.returncode == 0, f"exit {daemon.returncode} after SIGTERM:\n{err}"
    assert all(statuses.get(key) == status for key, status in wanted.items()), f"HTTP status by path: {statuses}\n{err}"
    assert [a["containerPort"] for a in c["ports"]] == [port], c["ports"]  # the health port is not the pod's
    if not health:
        raise Skip(f"{binary} predates `oomguard health` and metrics.health_listen: it ran with the DaemonSet's "
                   "arguments and served /metrics, but the exec probes were not run")
    for name, result in ran.items():
        assert result.returncode == 0, f"{name} {probes[name]} exited {result.returncode}:\n{result.stderr}"
    assert statuses[("health", "/metrics")] not in (None, 200), f"the health listener serves /metrics: {statuses}"
    for name in probes:  # nothing listens any more: the probe must fail
        result = run_probe(name)
        assert result.returncode == 1, f"{name} with the daemon stopped exited {result.returncode}:\n{result.stderr}"


if __name__ == "__main__":
    main(suite)
