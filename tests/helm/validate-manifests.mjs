// Validates Kubernetes objects against the API's OpenAPI schemas, as compiled into the npm packages
// kubernetes-models and @kubernetes-models/prometheus-operator (installed by install-tools.sh).
// Usage: node validate-manifests.mjs NODE_MODULES_DIR < objects.json   (a JSON array of objects)
// Prints one JSON line per object: {"kind","name","ok","error"}. Exit code 0 unless the input is unusable.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));

function modulePath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "monitoring.coreos.com") {
    return `${modules}/@kubernetes-models/prometheus-operator/${group}/${version}/${kind}.js`;
  }
  return `${modules}/kubernetes-models/${group ? group + "/" : ""}${version}/${kind}.js`;
}

for (const object of objects) {
  const line = { kind: object.kind, name: object.metadata?.name ?? "", ok: false, error: "" };
  try {
    const module = await import(pathToFileURL(modulePath(object.apiVersion, object.kind)).href);
    const Model = module[object.kind];
    new Model(object).validate();
    line.ok = true;
  } catch (error) {
    line.error = String(error.message ?? error);
  }
  console.log(JSON.stringify(line));
}
