"""Validates the custom resources of deploy/k8s against their CRD schemas, strictly.

kubernetes-validate knows only Kubernetes' own kinds, so the KEDA (ScaledObject,
TriggerAuthentication) and Prometheus Operator (ServiceMonitor) resources are checked here with
the cloudcoil models generated from those projects' CRDs (pinned in requirements.txt): each
document is parsed by its model, and a field the schema does not know (a typo such as
`maxReplicaCont`) is reported, since the model would drop it. Kinds of other API groups are left
to kubernetes-validate.

Usage: python validate_crds.py FILE...   (exit status 1 and one line per problem on failure)
"""

import sys

import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring

MODELS = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
}
CUSTOM_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


def unknown_fields(given, kept, path):
    """Paths of `given` that are missing from `kept` (the model's dump of it)."""
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [path or "."]
        out = []
        for key, value in given.items():
            child = f"{path}.{key}" if path else key
            if key not in kept:
                out.append(child)
            else:
                out.extend(unknown_fields(value, kept[key], child))
        return out
    if isinstance(given, list):
        if not isinstance(kept, list) or len(kept) != len(given):
            return [path]
        out = []
        for i, (g, k) in enumerate(zip(given, kept)):
            out.extend(unknown_fields(g, k, f"{path}[{i}]"))
        return out
    return []


def check(doc):
    """Problems of one document (empty: valid, or a kind left to kubernetes-validate)."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    model = MODELS.get((api_version, kind))
    if model is None:
        if api_version.startswith(CUSTOM_GROUPS):
            return [f"{api_version} {kind}: no schema for this kind here"]
        return []
    try:
        parsed = model.model_validate(doc)
    except Exception as e:  # pydantic's ValidationError lists every field
        return [f"{kind}: {e}"]
    kept = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [f"{kind}: unknown field {p}" for p in unknown_fields(doc, kept, "")]


def main(files):
    failed = False
    for name in files:
        with open(name, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            label = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            problems = check(doc)
            for p in problems:
                print(f"{label}: {p}")
            if problems:
                failed = True
            elif (doc.get("apiVersion"), doc.get("kind")) in MODELS:
                print(f"{label}: valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
