"""The chart's multi-tenant hardening (issue 16), rendered by the real helm and checked as parsed objects:
privileges and mounts, /proc/sys read-only unless sysctls are written, exec probes on a loopback health
port, the NetworkPolicy (evaluated against sample peers, not only compared), AppArmor, and the RBAC.

Run: python3 tests/helm/test_chart_hardening.py [WORD...]   (only the checks whose name contains a WORD)
"""
import ipaddress
import json
import os
import re
import sys
import tempfile

import yaml

sys.dont_write_bytecode = True  # keep tests/helm free of __pycache__
from checks import Suite, main
from chartlib import (CAPABILITIES, CHART, FIXTURES, HEALTH_COMMAND, NAMESPACE, NOTES, RELEASE, ROOT,
                      SCHEMA_ERROR, config_of, container, helm, one, refused, render, template_args)

suite = Suite("hardening", NOTES)
ACT = FIXTURES / "values-act.yaml"


def writable_mounts(c):
    return {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly", False)}


def host_path_of(pod, mount):
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    return volume["hostPath"]["path"], volume["hostPath"]["type"]


@suite.check
def daemonset_mounts():
    pod, c = container(render())
    volumes = {v["name"]: v for v in pod["volumes"]}
    host_paths = {name: (v["hostPath"]["path"], v["hostPath"]["type"]) for name, v in volumes.items()
                  if "hostPath" in v}
    assert host_paths == {"host-proc": ("/proc", "Directory"), "host-proc-sys": ("/proc/sys", "Directory"),
                          "host-cgroup": ("/sys/fs/cgroup", "Directory"),
                          "host-kmsg": ("/dev/kmsg", "CharDevice"),
                          "history": ("/var/lib/oomguard", "DirectoryOrCreate")}, host_paths
    assert volumes["config"]["configMap"]["name"] == f"{RELEASE}-oomguard"
    mounts = {m["mountPath"]: (m["name"], bool(m.get("readOnly", False))) for m in c["volumeMounts"]}
    assert mounts == {
        "/etc/oomguard": ("config", True),
        "/host/proc": ("host-proc", False),  # PSI trigger registration, oom_score_adj writes
        "/host/proc/sys": ("host-proc-sys", True),  # no sysctl writes: core_pattern, modprobe, ...
        "/host/sys/fs/cgroup": ("host-cgroup", False),  # cgroup PSI triggers, memory.oom.group, cgroup.kill
        "/dev/kmsg": ("host-kmsg", True),
        "/var/lib/oomguard": ("history", False),  # the kill history, kept on the node
    }, mounts


@suite.check
def proc_sys_is_read_only_unless_sysctls_are_written():
    # Default (observe mode, no sysctls): /proc/sys read-only on top of the read-write /proc, after it in
    # the list, recursively where the cluster has RecursiveReadOnlyMounts (beta and on from 1.31).
    for kube, recursive in [(None, "IfPossible"), ("1.31.0", "IfPossible"), ("1.30.4", None), ("1.25.0", None)]:
        pod, c = container(render(kube_version=kube))
        paths = [m["mountPath"] for m in c["volumeMounts"]]
        sys_mount = next((m for m in c["volumeMounts"] if m["mountPath"] == "/host/proc/sys"), None)
        assert sys_mount and host_path_of(pod, sys_mount) == ("/proc/sys", "Directory"), c["volumeMounts"]
        assert sys_mount.get("readOnly") is True and sys_mount.get("recursiveReadOnly") == recursive, (kube, sys_mount)
        assert paths.index("/host/proc") < paths.index("/host/proc/sys"), paths
        assert writable_mounts(c) == {"/host/proc", "/host/sys/fs/cgroup", "/var/lib/oomguard"}, (kube, writable_mounts(c))
    # Mode act with sysctls.values: each declared sysctl's file, and nothing else of /proc/sys, writable.
    objects = render(values=[ACT])
    pod, c = container(objects)
    config, _ = config_of(objects)
    names = sorted(config["sysctls"]["values"])
    files = {f"/host/proc/sys/{name.replace('.', '/')}" for name in names}
    assert len(names) == 6 and writable_mounts(c) == {"/host/proc", "/host/sys/fs/cgroup", "/var/lib/oomguard"} | files, \
        writable_mounts(c)
    for mount in c["volumeMounts"]:
        if mount["mountPath"] in files:
            assert host_path_of(pod, mount) == (mount["mountPath"][len("/host"):], "File"), mount
    paths = [m["mountPath"] for m in c["volumeMounts"]]
    assert all(paths.index("/host/proc/sys") < paths.index(f) for f in files), paths  # files on top of the ro dir
    sys_mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/host/proc/sys")
    assert sys_mount["readOnly"] is True, sys_mount
    # Declared but never written (observe mode only compares, --dry-run touches nothing): all read-only.
    one_sysctl = "json:config.sysctls.values={\"vm.panic_on_oom\": 0}"
    for sets in [[one_sysctl], [one_sysctl, "config.mode=act", "dryRun=true"]]:
        _, c = container(render(sets=sets))
        assert writable_mounts(c) == {"/host/proc", "/host/sys/fs/cgroup", "/var/lib/oomguard"}, (sets, writable_mounts(c))
    _, c = container(render(sets=[one_sysctl, "config.mode=act"]))
    assert writable_mounts(c) == {"/host/proc", "/host/sys/fs/cgroup", "/var/lib/oomguard", "/host/proc/sys/vm/panic_on_oom"}
    # The same from configJson, which the chart reads for it.
    text = json.dumps({"version": 1, "mode": "act", "sysctls": {"values": {"kernel.panic": 10}},
                       "metrics": {"listen": "0.0.0.0:9743", "health_listen": "127.0.0.1:9744"}})
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"configJson": text}, f)
    try:
        _, c = container(render(values=[f.name]))
    finally:
        os.unlink(f.name)
    assert writable_mounts(c) == {"/host/proc", "/host/sys/fs/cgroup", "/var/lib/oomguard", "/host/proc/sys/kernel/panic"}


def dockerfile_entrypoint():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    found = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
    assert found, "docker/Dockerfile has no exec-form ENTRYPOINT"
    return json.loads(found[-1])


@suite.check
def probes_are_exec_with_timeouts_on_a_loopback_port_no_service_exposes():
    objects = render()
    pod, c = container(objects)
    config, _ = config_of(objects)
    address = config["metrics"]["health_listen"]
    host, port = address.rsplit(":", 1)
    assert ipaddress.ip_address(host).is_loopback and not pod.get("hostNetwork"), (address, pod.get("hostNetwork"))
    metrics_port = int(config["metrics"]["listen"].rsplit(":", 1)[1])
    assert int(port) != metrics_port
    assert HEALTH_COMMAND[0] == dockerfile_entrypoint()[0], "the probes run a binary the image does not have"
    for name in ("livenessProbe", "readinessProbe"):
        probe = c[name]
        assert set(probe) == {"exec", "timeoutSeconds", "periodSeconds", "failureThreshold"}, (name, probe)
        assert probe["exec"]["command"] == [*HEALTH_COMMAND[:3], address, *HEALTH_COMMAND[4:]], probe
        timeout_ms = int(probe["exec"]["command"][probe["exec"]["command"].index("--timeout-ms") + 1])
        assert probe["timeoutSeconds"] * 1000 > timeout_ms, (name, probe)
    # No Service, container port or NetworkPolicy rule names the health port.
    service_ports = {port.get(key, port["port"]) for port in one(objects, "Service")["spec"]["ports"]
                     for key in ("port", "targetPort")}
    assert int(port) not in service_ports and service_ports == {metrics_port, "metrics"}, service_ports
    assert [p["containerPort"] for p in c.get("ports", [])] == [metrics_port], c["ports"]
    policy_ports = [p["port"] for rule in one(objects, "NetworkPolicy")["spec"]["ingress"] for p in rule["ports"]]
    assert policy_ports == [metrics_port], policy_ports
    # The values say each timing explicitly (values.yaml, and the schema knows each key).
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]
    for name in ("livenessProbe", "readinessProbe"):
        for key in ("timeoutSeconds", "periodSeconds", "failureThreshold"):
            assert isinstance(values[name].get(key), int) and key in schema[name]["properties"], (name, key)
    # health.enabled=false: no listener, no probes. A timeout kubelet would cut short, or one port for both
    # listeners, is refused.
    off = render(sets=["health.enabled=false"])
    assert "health_listen" not in config_of(off)[0]["metrics"]
    assert not {"livenessProbe", "readinessProbe"} & set(container(off)[1]), container(off)[1]
    assert "timeoutSeconds (2 s) must be longer" in refused(["livenessProbe.timeoutSeconds=2"])
    assert "timeoutSeconds (5 s) must be longer than health.requestTimeoutMs (5000 ms)" in \
        refused(["health.requestTimeoutMs=5000"])
    assert "readinessProbe.timeoutSeconds (4 s)" in refused(["readinessProbe.timeoutSeconds=4",
                                                             "health.requestTimeoutMs=4000"])
    assert "health.port must differ" in refused(["health.port=9743"])
    _, c = container(render(sets=["health.requestTimeoutMs=4500", "livenessProbe.timeoutSeconds=5",
                                  "readinessProbe.timeoutSeconds=6", "readinessProbe.enabled=false"]))
    assert c["livenessProbe"]["exec"]["command"][-1] == "4500" and "readinessProbe" not in c


def selects(selector, labels):
    """A Kubernetes label selector's verdict on a set of labels."""
    if not all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if not {"In": present and labels[key] in values, "NotIn": not present or labels[key] not in values,
                "Exists": present, "DoesNotExist": not present}[operator]:
            return False
    return True


def admits(policy, pod_labels, peer_namespace_labels, peer_labels, port, protocol="TCP"):
    """Whether this NetworkPolicy lets the peer reach the pod on the port (NetworkPolicy semantics: a pod
    the policy selects for Ingress gets only what some rule allows)."""
    spec = policy["spec"]
    if not selects(spec["podSelector"], pod_labels) or "Ingress" not in spec.get("policyTypes", ["Ingress"]):
        return True
    for rule in spec.get("ingress") or []:
        port_ok = not rule.get("ports") or any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port)
                                               for p in rule["ports"])
        peers = rule.get("from")
        peer_ok = not peers or any(
            "ipBlock" not in peer and
            (selects(peer["namespaceSelector"], peer_namespace_labels) if "namespaceSelector" in peer
             else peer_namespace_labels.get("kubernetes.io/metadata.name") == NAMESPACE) and
            selects(peer.get("podSelector", {}), peer_labels)
            for peer in peers)
        if port_ok and peer_ok:
            return True
    return False


@suite.check
def network_policy_admits_only_the_configured_prometheus():
    objects = render()
    policy = one(objects, "NetworkPolicy")
    assert policy["apiVersion"] == "networking.k8s.io/v1" and policy["metadata"]["namespace"] == NAMESPACE
    assert policy["spec"]["policyTypes"] == ["Ingress"], policy["spec"]
    pod_labels = one(objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    monitoring, tenant = {"kubernetes.io/metadata.name": "monitoring"}, {"kubernetes.io/metadata.name": "team-a"}
    prometheus, other = {"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"}, {"app": "curl"}
    cases = [  # (peer namespace, peer labels, port, admitted)
        (monitoring, prometheus, 9743, True),    # kube-prometheus-stack's Prometheus scrapes
        (monitoring, prometheus, 9744, False),   # the health port is not the network's
        (monitoring, prometheus, 22, False),
        (monitoring, other, 9743, False),        # another pod of the monitoring namespace
        (tenant, prometheus, 9743, False),       # a tenant's pod that calls itself prometheus
        (tenant, other, 9743, False),
        ({"kubernetes.io/metadata.name": NAMESPACE}, other, 9743, False),  # the guardian's own namespace
    ]
    for namespace, labels, port, admitted in cases:
        assert admits(policy, pod_labels, namespace, labels, port) is admitted, (namespace, labels, port, policy)
    assert admits(policy, {"app": "other"}, tenant, other, 9743), "the policy selects pods that are not the guardian's"
    assert "ipBlock" not in json.dumps(policy), policy
    # Another Prometheus, by the documented --set; the port follows metrics.port.
    moved = one(render(sets=["networkPolicy.prometheus.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name"
                             "=observability", "metrics.port=9800"]), "NetworkPolicy")
    observability = {"kubernetes.io/metadata.name": "observability"}
    assert admits(moved, pod_labels, observability, prometheus, 9800)
    assert not admits(moved, pod_labels, monitoring, prometheus, 9800)
    assert not admits(moved, pod_labels, observability, prometheus, 9743)
    # Any namespace at all is refused; disabling it is explicit.
    assert "namespaceSelector is empty" in refused(["json:networkPolicy.prometheus.namespaceSelector.matchLabels=null"])
    assert not [o for o in render(sets=["networkPolicy.enabled=false"]) if o["kind"] == "NetworkPolicy"]


def app_armor(sets=(), values=None, kube_version=None):
    objects = render(values=values, sets=sets, kube_version=kube_version)
    _, c = container(objects)
    annotations = one(objects, "DaemonSet")["spec"]["template"]["metadata"].get("annotations") or {}
    key = "container.apparmor.security.beta.kubernetes.io/oomguard"
    return c["securityContext"].get("appArmorProfile"), annotations.get(key)


@suite.check
def app_armor_profile():
    local = ["securityContext.appArmorProfile.type=Localhost", "securityContext.appArmorProfile.localhostProfile=og"]
    cases = [  # (values, --set, --kube-version) -> (the field, the annotation)
        # Observe mode (the default): the runtime's profile. Mode act or privileged: unconfined, because the
        # runtime's profile lets the container signal only processes under that same profile.
        ((None, [], None), ({"type": "RuntimeDefault"}, None)),
        (([ACT], [], None), ({"type": "Unconfined"}, None)),
        ((None, ["securityContext.privileged=true"], None), ({"type": "Unconfined"}, None)),
        (([ACT], ["securityContext.appArmorProfile.type=RuntimeDefault"], None), ({"type": "RuntimeDefault"}, None)),
        ((None, local, None), ({"type": "Localhost", "localhostProfile": "og"}, None)),
        # Before Kubernetes 1.30: the annotation instead of the field.
        ((None, [], "1.29.0"), (None, "runtime/default")),
        (([ACT], [], "1.29.0"), (None, "unconfined")),
        ((None, local, "1.29.0"), (None, "localhost/og")),
        ((None, [], "1.30.0"), ({"type": "RuntimeDefault"}, None)),
    ]
    for (values, sets, kube), expected in cases:
        got = app_armor(sets=sets, values=values, kube_version=kube)
        assert got == expected, f"values {values}, --set {sets}, Kubernetes {kube}: {got}, not {expected}"


@suite.check
def metrics_proxy_authenticates_the_metrics_port():
    # Off by default: one container, the daemon's metrics on the pod's port, no review rights.
    assert len(one(render(), "DaemonSet")["spec"]["template"]["spec"]["containers"]) == 1
    objects = render(sets=["metricsProxy.enabled=true", "serviceMonitor.enabled=true"])
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    daemon, proxy = pod["containers"]
    config, _ = config_of(objects)
    # The daemon listens on loopback only; the sidecar owns the pod's metrics port, https, /metrics only.
    assert daemon["name"] == "oomguard" and "ports" not in daemon, daemon.get("ports")
    listen = daemon["args"][daemon["args"].index("--metrics-listen") + 1]
    assert listen == "127.0.0.1:9745" == config["metrics"]["listen"], (listen, config["metrics"])
    assert proxy["name"] == "kube-rbac-proxy" and proxy["image"] == "quay.io/brancz/kube-rbac-proxy:v0.19.1"
    assert proxy["args"] == ["--secure-listen-address=0.0.0.0:9743", "--upstream=http://127.0.0.1:9745/",
                             "--allow-paths=/metrics"], proxy["args"]
    assert proxy["ports"] == [{"name": "metrics", "containerPort": 9743, "protocol": "TCP"}], proxy["ports"]
    sc = proxy["securityContext"]
    assert (sc["runAsNonRoot"], sc["runAsUser"], sc["allowPrivilegeEscalation"], sc["readOnlyRootFilesystem"],
            sc["capabilities"], sc["appArmorProfile"]) == (True, 65532, False, True, {"drop": ["ALL"]},
                                                           {"type": "RuntimeDefault"}), sc
    # The probes still ask the daemon's own loopback health listener.
    assert daemon["livenessProbe"]["exec"]["command"] == HEALTH_COMMAND and "livenessProbe" not in proxy
    # The NetworkPolicy and the Service still name the metrics port; the ServiceMonitor scrapes https with a token.
    assert [p["port"] for p in one(objects, "NetworkPolicy")["spec"]["ingress"][0]["ports"]] == [9743]
    assert one(objects, "Service")["spec"]["ports"][0]["targetPort"] == "metrics"
    endpoint, = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["scheme"], endpoint["bearerTokenFile"], endpoint["tlsConfig"]) == (
        "https", "/var/run/secrets/kubernetes.io/serviceaccount/token", {"insecureSkipVerify": True}), endpoint
    # Exactly the two reviews more in the ClusterRole.
    assert one(objects, "ClusterRole")["rules"][2:] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]
    annotations = one(render(sets=["metricsProxy.enabled=true"], kube_version="1.29.0"), "DaemonSet")[
        "spec"]["template"]["metadata"]["annotations"]
    assert annotations["container.apparmor.security.beta.kubernetes.io/kube-rbac-proxy"] == "runtime/default"
    assert "upstreamPort must differ" in refused(["metricsProxy.enabled=true", "metricsProxy.upstreamPort=9744"])
    assert "upstreamPort must differ" in refused(["metricsProxy.enabled=true", "metricsProxy.upstreamPort=9743"])


@suite.check
def least_privilege():
    pod, c = container(render())
    sc = c["securityContext"]
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsUser"] == 0 and sc["runAsNonRoot"] is False
    assert sc["capabilities"]["drop"] == ["ALL"], sc["capabilities"]
    assert set(sc["capabilities"]["add"]) == CAPABILITIES, sc["capabilities"]["add"]
    assert len(sc["capabilities"]["add"]) == len(CAPABILITIES)
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["appArmorProfile"] == {"type": "RuntimeDefault"}
    assert "securityContext" not in pod or not pod["securityContext"].get("privileged")
    assert not pod.get("hostNetwork") and not pod.get("hostIPC"), pod
    assert c["resources"] == {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}


@suite.check
def privileged_is_an_explicit_choice():
    _, c = container(render(sets=["securityContext.privileged=true"]))
    sc = c["securityContext"]
    assert sc["privileged"] is True and sc["allowPrivilegeEscalation"] is True, sc
    assert "capabilities" not in sc, sc


@suite.check
def rbac_is_exactly_pods_read_and_events_create():
    objects = render()
    role = one(objects, "ClusterRole")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ], role["rules"]
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    sa = one(objects, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": NAMESPACE}]
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding")]
    none = render(sets=["rbac.create=false", "serviceAccount.create=false"])
    assert not [o for o in none if o["kind"] in ("ClusterRole", "ClusterRoleBinding", "ServiceAccount")]
    assert container(none)[0]["serviceAccountName"] == "default"


@suite.check
def schema_refuses_bad_hardening_values():
    bad = {  # --set ... -> the key helm's schema error must name
        "health.port=0": "health.port",
        "health.port=70000": "health.port",
        "health.requestTimeoutMs=20": "health.requestTimeoutMs",
        "health.address=0.0.0.0": "health",
        "livenessProbe.timeoutSeconds=0": "livenessProbe.timeoutSeconds",
        "readinessProbe.failureThreshold=0": "readinessProbe.failureThreshold",
        "livenessProbe.httpGet.port=9743": "livenessProbe",
        "networkPolicy.enabled=maybe": "networkPolicy.enabled",
        "networkPolicy.ingress[0].port=1": "networkPolicy",
        "networkPolicy.prometheus.podSelector.matchLabels.app=a b": "networkPolicy.prometheus.podSelector.matchLabels",
        "networkPolicy.prometheus.namespaceSelector.matchLabels.bad\\ key=x": "namespaceSelector.matchLabels",
        "networkPolicy.prometheus.podSelector.matchExpressions[0].key=app,"
        "networkPolicy.prometheus.podSelector.matchExpressions[0].operator=Like":
            "networkPolicy.prometheus.podSelector.matchExpressions.0.operator",
        "networkPolicy.prometheus.podSelector.matchExpressions[0].key=app,"
        "networkPolicy.prometheus.podSelector.matchExpressions[0].operator=In":
            "networkPolicy.prometheus.podSelector.matchExpressions.0",  # In needs values
        "networkPolicy.prometheus.podSelector.matchExpressions[0].key=app,"
        "networkPolicy.prometheus.podSelector.matchExpressions[0].operator=Exists,"
        "networkPolicy.prometheus.podSelector.matchExpressions[0].values={a}":
            "networkPolicy.prometheus.podSelector.matchExpressions.0",  # Exists takes none
        "securityContext.appArmorProfile.type=Complain": "securityContext.appArmorProfile.type",
        "metricsProxy.upstreamPort=0": "metricsProxy.upstreamPort",
        "metricsProxy.image.digest=latest": "metricsProxy.image.digest",
        "metricsProxy.image.tag=": "metricsProxy.image.tag",
        "metricsProxy.listen=0.0.0.0": "metricsProxy",
        "securityContext.appArmorProfile.type=Localhost": "localhostProfile",  # which one?
        "securityContext.appArmorProfile.localhostProfile=og": "localhostProfile",  # only with Localhost
    }
    for item, key in bad.items():
        result = helm(*template_args(sets=[item]), check=False)
        assert result.returncode != 0, f"--set {item} was accepted"
        assert SCHEMA_ERROR in result.stderr and key in result.stderr, f"--set {item}: {result.stderr}"
    # Controls: near misses that are valid.
    for item in ["health.port=1", "health.requestTimeoutMs=100", "livenessProbe.timeoutSeconds=60",
                 "networkPolicy.prometheus.podSelector.matchExpressions[0].key=app,"
                 "networkPolicy.prometheus.podSelector.matchExpressions[0].operator=Exists",
                 "networkPolicy.prometheus.podSelector.matchLabels.app\\.kubernetes\\.io/part-of=kube-prometheus",
                 "securityContext.appArmorProfile.type=Unconfined"]:
        helm(*template_args(sets=[item]))


if __name__ == "__main__":
    main(suite)
