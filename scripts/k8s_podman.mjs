#!/usr/bin/env node
// Turns rendered Kubernetes YAML (kubectl kustomize k8s/overlays/local) into what
// `podman kube play` (4.3) runs on one host:
// - Pods, Deployments, PersistentVolumeClaims and ConfigMaps pass unchanged.
// - A StatefulSet (which podman 4.3 does not run) becomes the Pods its controller would
//   make: NAME-0 .. NAME-(replicas-1), the template's labels plus
//   statefulset.kubernetes.io/pod-name, hostname = pod name. All pods of the local
//   overlay share the host's network, so each pod's ports are shifted by its ordinal
//   wherever they appear: containerPort, probe ports, and HOST:PORT values of env
//   variables that name one of the container's ports.
// - In pods on the host's network, containers' `ports` are dropped: podman 4.3 turns them
//   into port mappings, which it refuses on the host network (in Kubernetes they only
//   document the ports there).
// - emptyDir volumes are renamed POD-VOLUME: podman 4.3 makes each a named volume called
//   after the volume, which pods with the same volume name (every worker's `tmp`) would
//   share.
// - Services and NetworkPolicies (podman implements neither) are left out, and said so
//   on stderr.
//   kubectl kustomize k8s/overlays/local | node scripts/k8s_podman.mjs > local.yaml
// The yaml package comes from $LLAVA_K8S_NPM_DIR (default data/npm-k8s; scripts/setup.sh).
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const NPM_DIR = path.resolve(process.env.LLAVA_K8S_NPM_DIR || path.join(ROOT, "data/npm-k8s"));
const yamlEntry = path.join(NPM_DIR, "node_modules/yaml/dist/index.js");
if (!existsSync(yamlEntry)) {
  console.error(`k8s_podman: the npm package yaml is not installed in ${NPM_DIR} (scripts/setup.sh)`);
  process.exit(2);
}
const YAML = await import(pathToFileURL(yamlEntry).href);

function dropHostNetworkPorts(podSpec) {
  if (!podSpec?.hostNetwork) return;
  for (const c of [...(podSpec.containers || []), ...(podSpec.initContainers || [])]) delete c.ports;
}

function ownEmptyDirs(podName, podSpec) {
  if (!podSpec?.volumes) return;
  const renamed = new Map();
  for (const v of podSpec.volumes) {
    if (v.emptyDir) {
      renamed.set(v.name, `${podName}-${v.name}`);
      v.name = `${podName}-${v.name}`;
    }
  }
  for (const c of [...(podSpec.containers || []), ...(podSpec.initContainers || [])]) {
    for (const m of c.volumeMounts || []) if (renamed.has(m.name)) m.name = renamed.get(m.name);
  }
}

const PASS = new Set(["Pod", "Deployment", "PersistentVolumeClaim", "ConfigMap"]);
const DROP = new Set(["Service", "NetworkPolicy"]);

function shiftPorts(podSpec, by) {
  if (!by) return;
  for (const c of [...(podSpec.containers || []), ...(podSpec.initContainers || [])]) {
    const declared = new Set((c.ports || []).map((p) => p.containerPort));
    for (const p of c.ports || []) {
      p.containerPort += by;
      if (p.hostPort) p.hostPort += by;
    }
    for (const probeName of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      const probe = c[probeName];
      if (!probe) continue;
      for (const action of ["grpc", "httpGet", "tcpSocket"]) {
        if (probe[action] && typeof probe[action].port === "number") probe[action].port += by;
      }
    }
    for (const e of c.env || []) {
      if (typeof e.value !== "string") continue;
      const m = /^(.*):(\d+)$/.exec(e.value);
      if (m && declared.has(Number(m[2]))) e.value = `${m[1]}:${Number(m[2]) + by}`;
    }
  }
}

function podsOf(sts) {
  const n = sts.spec.replicas ?? 1;
  const t = sts.spec.template;
  const pods = [];
  for (let i = 0; i < n; i++) {
    const name = `${sts.metadata.name}-${i}`;
    const spec = structuredClone(t.spec);
    spec.hostname = name;
    shiftPorts(spec, i);
    const annotations = { ...(t.metadata?.annotations || {}) };
    if (annotations["prometheus.io/port"]) {
      annotations["prometheus.io/port"] = String(Number(annotations["prometheus.io/port"]) + i);
    }
    pods.push({
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name,
        labels: { ...(t.metadata?.labels || {}), "statefulset.kubernetes.io/pod-name": name },
        annotations,
      },
      spec,
    });
  }
  return pods;
}

const input = readFileSync(process.argv[2] && process.argv[2] !== "-" ? process.argv[2] : 0, "utf8");
const out = [];
for (const doc of YAML.parseAllDocuments(input)) {
  if (doc.errors.length) {
    console.error(`k8s_podman: ${doc.errors[0].message}`);
    process.exit(1);
  }
  const obj = doc.toJS();
  if (!obj) continue;
  if (PASS.has(obj.kind)) {
    const podSpec = obj.kind === "Pod" ? obj.spec : obj.spec?.template?.spec;
    dropHostNetworkPorts(podSpec);
    ownEmptyDirs(obj.metadata.name, podSpec);
    out.push(obj);
  } else if (obj.kind === "StatefulSet") {
    for (const pod of podsOf(obj)) {
      dropHostNetworkPorts(pod.spec);
      ownEmptyDirs(pod.metadata.name, pod.spec);
      out.push(pod);
    }
  }
  else if (DROP.has(obj.kind)) console.error(`k8s_podman: left out ${obj.kind}/${obj.metadata.name} (podman does not implement it)`);
  else {
    console.error(`k8s_podman: ${obj.kind}/${obj.metadata?.name}: podman kube play cannot run this kind`);
    process.exit(1);
  }
}
// PersistentVolumeClaims first: podman creates their volumes before pods mount them.
out.sort((a, b) => (a.kind === "PersistentVolumeClaim" ? 0 : 1) - (b.kind === "PersistentVolumeClaim" ? 0 : 1));
process.stdout.write(out.map((o) => YAML.stringify(o)).join("---\n"));
