#!/usr/bin/env python3
"""What a schema cannot see in deploy/kubernetes/ (run by scripts/k8s-check.sh,
after kubernetes-validate, with the PyYAML of its venv):

- kustomization.yaml lists every manifest in the folder, and nothing else;
- no YAML mapping repeats a key (PyYAML, and kubectl, keep the last one
  silently, so the first would be lost without a word);
- every environment variable a container sets is one the README's
  Configuration section documents;
- every secretKeyRef names a Secret and key defined here, every Service,
  PodDisruptionBudget and NetworkPolicy selector matches a pod template, and
  every named Service targetPort is a port of the pods it selects.

Exits 1 with one line per problem.
"""
import os
import re
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Variables set before the README documents them, with the reason. Remove an
# entry once the Configuration table has it.
PENDING = {}


class UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def documented_variables():
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    start = readme.index("\n## Configuration\n")
    section = readme[start : readme.index("\n## ", start + 1)]
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))


def pod_spec(doc):
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]
    return None


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "deploy", "kubernetes")
    errors = []
    files = sorted(
        f for f in os.listdir(folder) if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml"
    )

    docs = []  # (file, document)
    for name in files + ["kustomization.yaml"]:
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            errors.append(f"{name}: missing")
            continue
        try:
            with open(path, encoding="utf-8") as f:
                docs += [(name, d) for d in yaml.load_all(f, Loader=UniqueKeyLoader) if d]
        except yaml.YAMLError as e:
            errors.append(f"{name}: {e}".replace("\n", " "))

    if errors:  # a file that does not parse: its references cannot be checked
        for e in errors:
            print(f"ERROR {e}")
        return 1

    for name in files:
        if not any(n == name for n, _ in docs):
            errors.append(f"{name}: no document in it")
    kustomization = [d for n, d in docs if n == "kustomization.yaml"]
    if [d.get("kind") for d in kustomization] != ["Kustomization"]:
        errors.append("kustomization.yaml: not one document of kind Kustomization")
    else:
        listed = kustomization[0].get("resources") or []
        for f in files:
            if f not in listed:
                errors.append(f"kustomization.yaml does not list {f}")
        for f in listed:
            if f not in files:
                errors.append(f"kustomization.yaml lists {f}, which is not a manifest in {folder}")
        for f in {f for f in listed if listed.count(f) > 1}:
            errors.append(f"kustomization.yaml lists {f} twice")

    manifests = [(n, d) for n, d in docs if n != "kustomization.yaml"]
    documented = documented_variables()
    secrets = {
        d["metadata"]["name"]: set(d.get("stringData") or {}) | set(d.get("data") or {})
        for _, d in manifests
        if d.get("kind") == "Secret"
    }
    pods = [(n, d["metadata"]["name"], pod_spec(d)) for n, d in manifests if pod_spec(d)]

    for name, workload, template in pods:
        # Redis takes its settings as arguments: every env var here is ours.
        for c in template["spec"].get("containers", []):
            for env in c.get("env", []):
                var = env["name"]
                if var not in documented and var not in PENDING:
                    errors.append(
                        f"{name}: {workload} sets {var}, which the README's Configuration section does not document"
                    )
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref.get("key") not in secrets.get(ref.get("name"), set()):
                    errors.append(
                        f"{name}: {var} reads key {ref.get('key')} of Secret {ref.get('name')}, not defined here"
                    )

    def selected(selector):
        return [t for _, _, t in pods if matches(selector, t["metadata"].get("labels", {}))]

    for name, d in manifests:
        kind, what = d.get("kind"), f"{d.get('kind')} {d['metadata']['name']}"
        if kind == "Service":
            targets = selected(d["spec"].get("selector"))
            if not targets:
                errors.append(f"{name}: {what} selects no pod defined here")
            for p in d["spec"].get("ports", []):
                port = p.get("targetPort")
                names = {cp.get("name") for t in targets for c in t["spec"]["containers"] for cp in c.get("ports", [])}
                if isinstance(port, str) and port not in names:
                    errors.append(f"{name}: {what} targets port {port!r}, which its pods do not name")
        elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
            key = "selector" if kind == "PodDisruptionBudget" else "podSelector"
            if not selected(d["spec"][key].get("matchLabels")):
                errors.append(f"{name}: {what} selects no pod defined here")
            for rule in d["spec"].get("ingress", []):
                for peer in rule.get("from", []):
                    sel = (peer.get("podSelector") or {}).get("matchLabels")
                    if sel and not selected(sel):
                        errors.append(f"{name}: {what} lets in pods that no manifest here defines")

    for var in sorted(v for v in PENDING if v in documented):
        print(f"note: {var} is documented now; drop it from PENDING in scripts/k8s-check.py")
    for e in errors:
        print(f"ERROR {e}")
    if errors:
        return 1
    pending = f" (pending: {', '.join(sorted(PENDING))})" if PENDING else ""
    print(
        f"kustomization.yaml lists all {len(files)} manifests; env names documented"
        f"{pending}; secret refs and selectors resolve"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
