"""Validate the Kubernetes manifests of docs/scale.md without a cluster: the volume claims against
Kubernetes' own schemas (PyPI ``kubernetes-validate``), the RayJob against KubeRay's CRD.

    pip install kubernetes-validate
    curl -LO https://raw.githubusercontent.com/ray-project/kuberay/master/ray-operator/config/crd/bases/ray.io_rayjobs.yaml
    python docker/check_rayjob.py ray.io_rayjobs.yaml

The API server drops fields a CRD does not know without a word; here they are errors, so a
misspelt key shows.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jsonschema
import yaml

DOC = Path(__file__).resolve().parents[1] / "docs" / "scale.md"
KUBERNETES_VERSION = "1.37.0"


def manifests(doc: Path = DOC) -> list[dict]:
    block = re.search(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), re.S).group(1)
    return list(yaml.safe_load_all(block))


def refuse_unknown_fields(schema):
    if isinstance(schema, dict):
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            refuse_unknown_fields(value)
    elif isinstance(schema, list):
        for value in schema:
            refuse_unknown_fields(value)
    return schema


def main(argv: list[str]) -> int:
    import kubernetes_validate

    crd = yaml.safe_load(Path(argv[0]).read_text(encoding="utf-8"))
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft7Validator(refuse_unknown_fields(schema))
    failed = 0
    for manifest in manifests():
        name = f"{manifest['kind']} {manifest['metadata']['name']}"
        if manifest["kind"] == "RayJob":
            errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(manifest)]
        else:
            try:
                kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
                errors = []
            except kubernetes_validate.ValidationError as error:
                errors = [str(error)]
        print(f"{name}: {'valid' if not errors else 'INVALID'}", *errors, sep="\n  ")
        failed += bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
