"""Tests of the Helm chart (charts/wasmpod) with real Helm (the Helm SDK v4 through PyPI's
helm-python-sdk) and the Kubernetes schemas of 1.28 and 1.35 (PyPI's kubernetes-validate,
strict: unknown fields fail): lint, render with default and other values, validate every
object, check that the RuntimeClasses name the handlers the installer writes by running the
rendered installer command against a node tree, and check that deploy/kubernetes/wasmpod.yaml
is the chart's rendering.

Run by `make chart-test` (PYTHONPATH has the two packages; WASMPOD_TOOL is the built
`wasmpod`).
"""

import copy
import os
import shutil
import subprocess
import tempfile
import unittest

import kubernetes_validate
import yaml
from helm_python import chart as helm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "charts", "wasmpod")
MANIFEST = os.path.join(ROOT, "deploy", "kubernetes", "wasmpod.yaml")
KUBE_VERSIONS = ["1.28.0", "1.35.0"]
RELEASE = "wasmpod"
NAMESPACE = "wasmpod-system"
# The values the static manifest is rendered with.
MANIFEST_VALUES = {"namespace": {"create": True}}

OTHER_VALUES = {
    "image": {"repository": "registry.example.com/platform/wasmpod-installer", "tag": "0.1.0-rc1",
              "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "handlers": {"spin": {"enabled": True, "name": "spin-v2"}, "wasmtime": {"enabled": False, "name": "wasmtime"}},
    "runtimeClasses": {"nodeSelector": {"pool": "wasm"},
                       "tolerations": [{"key": "wasm", "operator": "Exists", "effect": "NoSchedule"}],
                       "overhead": {"podFixed": {"memory": "8Mi", "cpu": "10m"}}},
    "nodeSelector": {"pool": "wasm"},
    "tolerations": [{"key": "wasm", "operator": "Exists", "effect": "NoSchedule"}],
    "systemdCgroup": True,
    "cache": {"dir": "/var/cache/wasmpod", "maxBytes": 2147483648},
    "distribution": "containerd",
    "restart": False,
    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
}


def render(values=None):
    """The chart's objects for `values`, by template file, NOTES left out."""
    c = helm.Chart.load(CHART)
    out = c.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path in sorted(out):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(out[path]) if d)
    return docs, out


def kinds(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def installer_args(docs):
    ds = kinds(docs, "DaemonSet")[0]
    return ds["spec"]["template"]["spec"]["initContainers"][0]["args"]


def handlers_arg(args):
    return args[args.index("--handlers") + 1]


class ChartTest(unittest.TestCase):
    def test_lints_clean(self):
        for version in KUBE_VERSIONS:
            result = helm.lint(CHART, strict=True, kube_version="v" + version)
            self.assertEqual(result["errors"], [], result)
            # Only information ("icon is recommended"), no warnings.
            worse = [m for m in result["messages"] if m["severity"] > 1]
            self.assertEqual(worse, [], result)

    def test_every_object_is_valid_for_each_kubernetes_version(self):
        for values in ({}, OTHER_VALUES, {"mode": "uninstall"}, MANIFEST_VALUES,
                       {"runtimeClasses": {"create": False}}):
            docs, _ = render(copy.deepcopy(values))
            self.assertTrue(docs)
            for doc in docs:
                for version in KUBE_VERSIONS:
                    try:
                        kubernetes_validate.validate(doc, version, strict=True)
                    except kubernetes_validate.ValidationError as e:
                        self.fail(f"{doc['kind']} {doc['metadata']['name']} with {values} on {version}: {e}")

    def test_default_objects(self):
        docs, _ = render()
        self.assertEqual(sorted(d["kind"] for d in docs),
                         ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "RuntimeClass", "RuntimeClass",
                          "RuntimeClass", "RuntimeClass", "ServiceAccount"])
        classes = {d["metadata"]["name"]: d for d in kinds(docs, "RuntimeClass")}
        self.assertEqual({n: c["handler"] for n, c in classes.items()},
                         {"wasmpod": "wasmpod", "spin": "spin", "wasmtime-spin-v2": "spin", "wasmtime": "wasmtime"})
        for c in classes.values():
            self.assertEqual(c["scheduling"]["nodeSelector"], {"wasmpod.dev/installed": "0.1.0"})
            self.assertEqual(c["overhead"]["podFixed"], {"memory": "6Mi"})
        role = kinds(docs, "ClusterRole")[0]
        self.assertEqual(role["rules"], [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch"]}])
        pod = kinds(docs, "DaemonSet")[0]["spec"]["template"]["spec"]
        self.assertTrue(pod["hostPID"])
        self.assertTrue(pod["initContainers"][0]["securityContext"]["privileged"])
        self.assertEqual(pod["volumes"][0]["hostPath"]["path"], "/")
        self.assertEqual(pod["containers"][0]["readinessProbe"]["exec"]["command"][1:],
                         ["node", "status", "--host-root", "/host", "--ready"])
        self.assertEqual(installer_args(docs),
                         ["node", "install", "--host-root", "/host", "--handlers",
                          "wasmpod=wasmpod,spin=spin,wasmtime=wasmtime", "--systemd-cgroup", "auto"])

    def test_other_values(self):
        docs, out = render(copy.deepcopy(OTHER_VALUES))
        classes = {d["metadata"]["name"]: d for d in kinds(docs, "RuntimeClass")}
        self.assertEqual({n: c["handler"] for n, c in classes.items()},
                         {"wasmpod": "wasmpod", "spin-v2": "spin-v2", "wasmtime-spin-v2": "spin-v2"})
        for c in classes.values():
            self.assertEqual(c["scheduling"]["nodeSelector"], {"pool": "wasm"})
            self.assertEqual(c["scheduling"]["tolerations"][0]["key"], "wasm")
        args = installer_args(docs)
        self.assertEqual(args, ["node", "install", "--host-root", "/host", "--handlers",
                                "wasmpod=wasmpod,spin-v2=spin", "--systemd-cgroup", "true",
                                "--cache-dir", "/var/cache/wasmpod", "--cache-max-bytes", "2147483648",
                                "--distribution", "containerd", "--no-restart"])
        pod = kinds(docs, "DaemonSet")[0]["spec"]["template"]["spec"]
        self.assertEqual(pod["initContainers"][0]["image"], "registry.example.com/platform/wasmpod-installer:0.1.0-rc1")
        # Helm merges maps: the default os selector stays.
        self.assertEqual(pod["nodeSelector"], {"kubernetes.io/os": "linux", "pool": "wasm"})
        self.assertEqual(pod["imagePullSecrets"], [{"name": "regcred"}])

    def test_uninstall_mode_runs_the_uninstaller_and_drops_the_runtime_classes(self):
        docs, _ = render({"mode": "uninstall"})
        self.assertEqual(kinds(docs, "RuntimeClass"), [])
        self.assertEqual(installer_args(docs), ["node", "uninstall", "--host-root", "/host"])

    def test_bad_values_are_refused_with_the_field_named(self):
        for values, field in (({"systemdCgroup": "yes"}, "/systemdCgroup"),
                              ({"mode": "remove"}, "/mode"),
                              ({"handlers": {"spin": {"name": "Spin_App"}}}, "/handlers/spin/name"),
                              ({"cache": {"dir": "relative"}}, "/cache/dir"),
                              ({"distribution": "kind"}, "/distribution"),
                              ({"sytemdCgroup": True}, "sytemdCgroup")):
            with self.assertRaises(Exception) as caught:
                render(values)
            self.assertIn(field, str(caught.exception), values)
        with self.assertRaises(Exception) as caught:
            render({"handlers": {"wasmpod": {"enabled": False}, "spin": {"enabled": False},
                                 "wasmtime": {"enabled": False}}})
        self.assertIn("enable at least one", str(caught.exception))

    def test_the_rendered_installer_writes_the_handlers_the_runtime_classes_name(self):
        """The DaemonSet's install command, run against a node tree (containerd's own default
        config, its binary where a plain node has it), writes exactly the handlers that the
        RuntimeClasses name, and containerd's `config dump` shows them."""
        tool = os.environ.get("WASMPOD_TOOL", os.path.join(ROOT, "target", "debug", "wasmpod"))
        shim = os.path.join(os.path.dirname(tool), "containerd-shim-wasmpod-v1")
        containerd = shutil.which("containerd")
        for values in ({}, OTHER_VALUES):
            docs, _ = render(copy.deepcopy(values))
            with tempfile.TemporaryDirectory() as tree:
                os.makedirs(os.path.join(tree, "etc/containerd"))
                os.makedirs(os.path.join(tree, "usr/bin"))
                os.symlink(containerd, os.path.join(tree, "usr/bin/containerd"))
                default = subprocess.run([containerd, "config", "default"], check=True, capture_output=True,
                                         text=True).stdout
                config = os.path.join(tree, "etc/containerd/config.toml")
                with open(config, "w") as f:
                    f.write(default)
                args = [tree if a == "/host" else a for a in installer_args(docs)]
                if "--no-restart" not in args:
                    args.append("--no-restart")
                env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
                ran = subprocess.run([tool] + args + ["--shim", shim], capture_output=True, text=True, env=env)
                self.assertEqual(ran.returncode, 0, ran.stdout + ran.stderr)
                dump = subprocess.run([containerd, "--config", config, "config", "dump"], check=True,
                                      capture_output=True, text=True).stdout
                for c in kinds(docs, "RuntimeClass"):
                    self.assertIn(f'containerd.runtimes.{c["handler"]}]', dump, c)
                written = {h.split("=")[0] for h in handlers_arg(args).split(",")}
                self.assertEqual(written, {c["handler"] for c in kinds(docs, "RuntimeClass")})

    def test_the_static_manifest_is_the_charts_rendering(self):
        _, out = render(copy.deepcopy(MANIFEST_VALUES))
        with open(MANIFEST) as f:
            self.assertEqual(f.read(), manifest_text(out),
                             "deploy/kubernetes/wasmpod.yaml is stale: run `make manifests`")


def manifest_text(out):
    """The static manifest: the rendered templates in a fixed order, one YAML stream."""
    order = ["namespace.yaml", "rbac.yaml", "daemonset.yaml", "runtimeclasses.yaml"]
    parts = ["# wasmpod: the node installer DaemonSet and RuntimeClasses, rendered from charts/wasmpod\n"
             "# (release \"wasmpod\" in namespace \"wasmpod-system\", namespace.create=true) by\n"
             "# `make manifests`. Apply with: kubectl apply -f deploy/kubernetes/wasmpod.yaml\n"]
    for name in order:
        text = out[f"wasmpod/templates/{name}"].strip()
        if text:
            if not text.startswith("---"):
                text = "---\n" + text
            parts.append(text + "\n")
    return "".join(parts)


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["write-manifest"]:
        _, out = render(copy.deepcopy(MANIFEST_VALUES))
        os.makedirs(os.path.dirname(MANIFEST), exist_ok=True)
        with open(MANIFEST, "w") as f:
            f.write(manifest_text(out))
        print(f"wrote {MANIFEST}")
    else:
        unittest.main(verbosity=2)
