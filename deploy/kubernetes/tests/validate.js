// Offline checks of the Kubernetes manifests (deploy/kubernetes/README.md,
// "Tests"). Run by validate.sh, which installs the pinned schema models.
//   node validate.js CANARYD_BINARY MANIFEST_DIR
//
// 1. Every YAML document of MANIFEST_DIR/*.yaml against the Kubernetes and
//    prometheus-operator schemas (kubernetes-models), strictly: an unknown
//    field is an error, as in `kubectl apply`'s strict field validation. An
//    apiVersion/kind without a model is an error.
// 2. What the schemas cannot see: each StatefulSet's selectors, Service,
//    PodDisruptionBudget, PodMonitor, ConfigMap and config checksum agree;
//    --total-shards is the replica count; the security context, resources and
//    health probes are there; its name is canaryd-<the config's location>.
// 3. The pod as Kubernetes would start it, on this machine: its env (the
//    downward API and placeholder secrets) and its mounts (ConfigMap items
//    and placeholder secret files, under a temporary root), then
//    `canaryd check-config` on the mounted config, and `canaryd` with the
//    container's args (only the port changed) as the last shard: readiness
//    and liveness answer 200 and /metrics names the shard. That run has the
//    config's probes replaced by loopback TCP probes: it contacts no target.
'use strict';
const fs = require('fs');
const path = require('path');
const os = require('os');
const net = require('net');
const http = require('http');
const crypto = require('crypto');
const { spawn, spawnSync } = require('child_process');
const yaml = require('js-yaml');

const [canaryd, dir] = process.argv.slice(2);
if (!canaryd || !dir) {
  console.error('usage: node validate.js CANARYD_BINARY MANIFEST_DIR');
  process.exit(2);
}
// Placeholder secret values, by Secret key, where the config checks the form
// of the value; any other key gets a plain text.
const PLACEHOLDER_SECRETS = {
  'pg.dsn': 'host=127.0.0.1 port=1 user=k8s-test dbname=k8s-test\n',
};
const placeholder = (secret, key) => PLACEHOLDER_SECRETS[key] || `k8s-test-${secret}-${key}\n`;
const errors = [];
const fail = (where, msg) => errors.push(`${where}: ${msg}`);

// ---- 1. schemas -----------------------------------------------------------

function modelFor(apiVersion, kind) {
  const module = /\.coreos\.com\//.test(apiVersion)
    ? `@kubernetes-models/prometheus-operator/${apiVersion}`
    : `kubernetes-models/${apiVersion}`;
  let exports;
  try {
    exports = require(module);
  } catch {
    return null;
  }
  const Cls = exports[kind];
  return typeof Cls === 'function' && Cls.kind === kind && Cls.apiVersion === apiVersion
    ? Cls
    : null;
}

// The models' validators check the fields they know and ignore the rest. So
// the document is handed to them behind a proxy that records which keys each
// object was asked for: a key that the validator never asked about is
// unknown to the schema. An object whose keys the validator enumerated is a
// map (labels, data); one it asked nothing of is free-form.
function strictValidate(Cls, doc) {
  const model = new Cls(doc);
  const asked = new Map();
  const proxies = new WeakMap();
  const note = (target, key) => {
    if (Array.isArray(target)) return;
    let a = asked.get(target);
    if (!a) asked.set(target, (a = { keys: new Set(), enumerated: false }));
    if (key === null) a.enumerated = true;
    else if (typeof key === 'string') a.keys.add(key);
  };
  const wrap = (v) => {
    if (v === null || typeof v !== 'object') return v;
    if (!proxies.has(v)) {
      proxies.set(v, new Proxy(v, {
        get: (t, k, r) => (note(t, k), wrap(Reflect.get(t, k, r))),
        has: (t, k) => (note(t, k), Reflect.has(t, k)),
        getOwnPropertyDescriptor: (t, k) => (note(t, k), Reflect.getOwnPropertyDescriptor(t, k)),
        ownKeys: (t) => (note(t, null), Reflect.ownKeys(t)),
      }));
    }
    return proxies.get(v);
  };
  const out = [];
  try {
    Cls.prototype.validate.call(wrap(model));
  } catch (e) {
    out.push(e.message);
  }
  const walk = (v, at) => {
    if (v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) return v.forEach((x, i) => walk(x, `${at}/${i}`));
    const a = asked.get(v);
    if (a && !a.enumerated && a.keys.size > 0) {
      for (const k of Object.keys(v)) if (!a.keys.has(k)) out.push(`${at}/${k}: unknown field`);
    }
    for (const k of Object.keys(v)) walk(v[k], `${at}/${k}`);
  };
  walk(model, '');
  return out;
}

const docs = [];
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
if (files.length === 0) fail(dir, 'no *.yaml manifests');
for (const file of files) {
  let loaded;
  try {
    loaded = yaml.loadAll(fs.readFileSync(path.join(dir, file), 'utf8'));
  } catch (e) {
    fail(file, `not YAML: ${e.message}`);
    continue;
  }
  loaded.forEach((doc, i) => {
    if (doc === null || doc === undefined) return;
    const kind = doc.kind || '?';
    const where = `${file}: ${kind}/${(doc.metadata && doc.metadata.name) || `document ${i + 1}`}`;
    const Cls = modelFor(doc.apiVersion, doc.kind);
    if (!Cls) return fail(where, `unknown apiVersion/kind ${doc.apiVersion}/${doc.kind}`);
    for (const e of strictValidate(Cls, doc)) fail(where, e);
    docs.push({ file, where, doc });
  });
}

// ---- 2. how the objects fit together ------------------------------------

const seen = new Map();
for (const { where, doc } of docs) {
  const id = `${doc.kind}/${doc.metadata && doc.metadata.name}`;
  if (seen.has(id)) fail(where, `also defined in ${seen.get(id)}`);
  else seen.set(id, where.split(':')[0]);
}

const ofKind = (kind) => docs.filter((d) => d.doc.kind === kind);
const labelsMatch = (matchLabels, labels) =>
  Object.entries(matchLabels || {}).every(([k, v]) => (labels || {})[k] === v);
const selects = (selector, labels) =>
  selector && !(selector.matchExpressions || []).length && labelsMatch(selector.matchLabels, labels);

function flagValue(args, flag) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) return args[i + 1];
    if (args[i].startsWith(`${flag}=`)) return args[i].slice(flag.length + 1);
  }
  return undefined;
}

const statefulSets = ofKind('StatefulSet');
if (statefulSets.length === 0) fail(dir, 'no StatefulSet');
if (ofKind('PrometheusRule').length === 0) fail(dir, 'no PrometheusRule');
const plans = [];
for (const { where, doc: sts } of statefulSets) {
  // A document that failed its schema may lack what the checks read.
  try {
    checkStatefulSet(where, sts);
  } catch (e) {
    fail(where, `cannot check further: ${e.message}`);
  }
}

function checkStatefulSet(where, sts) {
  const spec = sts.spec;
  const name = sts.metadata.name;
  const replicas = spec.replicas === undefined ? 1 : spec.replicas;
  const pod = spec.template;
  const podLabels = (pod.metadata && pod.metadata.labels) || {};
  const podSpec = pod.spec;
  if (spec.podManagementPolicy !== 'Parallel') fail(where, 'podManagementPolicy is not Parallel');
  if (!selects(spec.selector, podLabels)) fail(where, 'spec.selector does not select the pod template');

  const svc = ofKind('Service').find((d) => d.doc.metadata.name === spec.serviceName);
  if (!svc) fail(where, `serviceName ${spec.serviceName}: no such Service`);
  else if (svc.doc.spec.clusterIP !== 'None') fail(where, `Service ${spec.serviceName} is not headless`);
  else if (!labelsMatch(svc.doc.spec.selector, podLabels))
    fail(where, `Service ${spec.serviceName} does not select its pods`);
  if (!ofKind('PodDisruptionBudget').some((d) => selects(d.doc.spec.selector, podLabels)))
    fail(where, 'no PodDisruptionBudget selects its pods');

  const container = podSpec.containers.find((c) => (c.args || [])[0] === 'run');
  if (!container) {
    fail(where, 'no container runs `canaryd run` (args: [run, ...])');
    return;
  }
  const cwhere = `${where}: container ${container.name}`;
  const args = container.args;
  const total = Number(flagValue(args, '--total-shards'));
  if (total !== replicas) fail(cwhere, `--total-shards ${total} is not replicas ${replicas}`);
  if (!args.includes('--shard-from-pod-name') && flagValue(args, '--shard') === undefined)
    fail(cwhere, 'neither --shard-from-pod-name nor --shard');
  const listen = flagValue(args, '--web.listen-address');
  const listenPort = listen && Number(listen.slice(listen.lastIndexOf(':') + 1));
  if (!listenPort) fail(cwhere, 'no --web.listen-address HOST:PORT');
  const ports = container.ports || [];
  const portOf = (p) => (typeof p === 'number' ? p : (ports.find((x) => x.name === p) || {}).containerPort);
  if (listenPort && !ports.some((p) => p.containerPort === listenPort))
    fail(cwhere, `no containerPort ${listenPort} (--web.listen-address)`);

  // Security and resources.
  const psc = podSpec.securityContext || {};
  const csc = container.securityContext || {};
  if (!(csc.runAsNonRoot ?? psc.runAsNonRoot)) fail(cwhere, 'runAsNonRoot is not true');
  if (csc.readOnlyRootFilesystem !== true) fail(cwhere, 'readOnlyRootFilesystem is not true');
  if (csc.allowPrivilegeEscalation !== false) fail(cwhere, 'allowPrivilegeEscalation is not false');
  if (!((csc.capabilities || {}).drop || []).includes('ALL')) fail(cwhere, 'capabilities do not drop ALL');
  if (((csc.seccompProfile || psc.seccompProfile) || {}).type !== 'RuntimeDefault')
    fail(cwhere, 'seccompProfile is not RuntimeDefault');
  for (const kind of ['requests', 'limits'])
    for (const r of ['cpu', 'memory'])
      if (!((container.resources || {})[kind] || {})[r]) fail(cwhere, `no resources.${kind}.${r}`);

  // Health probes on the listening port.
  const probes = { readinessProbe: '/-/ready', livenessProbe: '/-/healthy' };
  for (const [key, want] of Object.entries(probes)) {
    const get = (container[key] || {}).httpGet;
    if (!get || get.path !== want) fail(cwhere, `${key} is not httpGet ${want}`);
    else if (listenPort && portOf(get.port) !== listenPort) fail(cwhere, `${key} port is not ${listenPort}`);
  }

  // The PodMonitor scrapes the pods on the listening port, with job = the
  // config's alerting.job (what CanarydDown watches).
  const monitors = ofKind('PodMonitor').filter((d) => selects(d.doc.spec.selector, podLabels));
  if (monitors.length === 0) fail(where, 'no PodMonitor selects its pods');

  // The pod's filesystem: each mount's files, ConfigMap text or a
  // placeholder secret.
  const mounts = [];
  const volumes = Object.fromEntries((podSpec.volumes || []).map((v) => [v.name, v]));
  for (const m of container.volumeMounts || []) {
    const v = volumes[m.name];
    if (!v) {
      fail(cwhere, `volumeMount ${m.name}: no such volume`);
      return;
    }
    const sources = v.projected ? v.projected.sources : [v];
    const mountFiles = [];
    for (const s of sources) {
      const cmRef = s.configMap;
      const secretRef = s.secret || (s.secretName ? s : null);
      if (cmRef) {
        const cm = ofKind('ConfigMap').find((d) => d.doc.metadata.name === cmRef.name);
        if (!cm) {
          fail(cwhere, `volume ${m.name}: no ConfigMap ${cmRef.name}`);
          return;
        }
        const data = cm.doc.data || {};
        const items = cmRef.items || Object.keys(data).map((key) => ({ key, path: key }));
        for (const it of items) {
          if (!(it.key in data)) fail(cwhere, `volume ${m.name}: ConfigMap ${cmRef.name} has no key ${it.key}`);
          else mountFiles.push({ path: it.path, text: data[it.key], configMap: cmRef.name, key: it.key });
        }
      } else if (secretRef) {
        const secretName = secretRef.name || secretRef.secretName;
        if (!secretRef.items) fail(cwhere, `volume ${m.name}: list the Secret ${secretName}'s items`);
        for (const it of secretRef.items || [])
          mountFiles.push({ path: it.path, text: placeholder(secretName, it.key) });
      } else {
        fail(cwhere, `volume ${m.name}: only ConfigMap and Secret volumes are simulated`);
      }
    }
    mounts.push({ mountPath: m.mountPath, files: mountFiles });
  }

  const configPath = flagValue(args, '--config');
  const mount = mounts.find((m) => configPath && configPath.startsWith(`${m.mountPath}/`));
  const configFile =
    mount && mount.files.find((f) => `${mount.mountPath}/${f.path}` === configPath && f.configMap);
  if (!configFile) {
    fail(cwhere, `--config ${configPath} is not a ConfigMap file of a mount`);
    return;
  }
  const sum = crypto.createHash('sha256').update(configFile.text).digest('hex');
  const annotation = ((pod.metadata || {}).annotations || {})['checksum/config'];
  if (annotation !== sum)
    fail(where, `checksum/config annotation ${annotation} is not the sha256 of ConfigMap ` +
      `${configFile.configMap}'s ${configFile.key} (${sum}): generate.sh writes it`);
  let config;
  try {
    config = yaml.load(configFile.text);
  } catch (e) {
    fail(where, `ConfigMap ${configFile.configMap}: ${configFile.key} is not YAML: ${e.message}`);
    return;
  }
  const location = (((config || {}).global || {}).labels || {}).location;
  // canaryd-<location>, or canaryd-<location>-<letters> for the other half
  // of an HA pair (README.md).
  const base = `canaryd-${location}`;
  if (name !== base && !(name.startsWith(`${base}-`) && /^[a-z]+$/.test(name.slice(base.length + 1))))
    fail(where, `one location per StatefulSet: the config's location is ${location}, ` +
      `so the name should be ${base} (or ${base}-b for an HA pair)`);
  const job = ((config || {}).alerting || {}).job || 'canaryd';
  for (const { where: mwhere, doc: pm } of monitors) {
    if (podLabels[pm.spec.jobLabel] !== job)
      fail(mwhere, `jobLabel ${pm.spec.jobLabel} gives job "${podLabels[pm.spec.jobLabel]}" ` +
        `for ${name}'s pods, not the config's alerting.job "${job}"`);
    for (const ep of pm.spec.podMetricsEndpoints || [])
      if (listenPort && portOf(ep.port) !== listenPort) fail(mwhere, `endpoint port ${ep.port} is not ${name}'s port ${listenPort}`);
  }

  // The container's env for the last shard's pod.
  const podName = `${name}-${replicas - 1}`;
  const env = {};
  for (const e of container.env || []) {
    if ('value' in e) env[e.name] = e.value;
    else if (e.valueFrom && e.valueFrom.fieldRef) {
      const field = e.valueFrom.fieldRef.fieldPath;
      if (field === 'metadata.name') env[e.name] = podName;
      else if (field === "metadata.labels['apps.kubernetes.io/pod-index']") env[e.name] = String(replicas - 1);
      else fail(cwhere, `env ${e.name}: fieldRef ${field} is not simulated`);
    } else if (e.valueFrom && e.valueFrom.secretKeyRef) {
      const r = e.valueFrom.secretKeyRef;
      env[e.name] = placeholder(r.name, r.key).trim();
    } else fail(cwhere, `env ${e.name}: only value, fieldRef and secretKeyRef are simulated`);
  }
  plans.push({ where: cwhere, name, podName, replicas, args, env, mounts, configPath, config, listen, probes: container });
}

// ---- 3. the pod on this machine ------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function get(port, urlPath) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: '' }));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A canaryd still running when this script is told to stop goes with it.
const children = new Set();
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'])
  process.on(sig, () => {
    for (const c of children) c.kill('SIGKILL');
    process.exit(1);
  });

async function runPod(plan, root) {
  // Lay out the mounts under root, and point the config's and the args'
  // paths under each mount there.
  const relocate = (text) => {
    for (const m of [...plan.mounts].sort((a, b) => b.mountPath.length - a.mountPath.length))
      text = text.split(m.mountPath).join(root + m.mountPath);
    return text;
  };
  for (const m of plan.mounts)
    for (const f of m.files) {
      const p = path.join(root, m.mountPath, f.path);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, f.configMap ? relocate(f.text) : f.text, { mode: 0o600 });
    }
  // Only the environment the container would have (and the sanitizer
  // options of a sanitized build).
  const env = { PATH: process.env.PATH || '/usr/bin:/bin' };
  for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS'])
    if (process.env[k]) env[k] = process.env[k];
  Object.assign(env, plan.env);
  const configPath = relocate(plan.configPath);

  const check = spawnSync(canaryd, ['check-config', configPath], { env, encoding: 'utf8', timeout: 60000 });
  if (check.status !== 0) {
    fail(plan.where, `canaryd check-config on the mounted config, with the pod's env and ` +
      `placeholder secrets, failed (exit ${check.status}):\n${check.stdout}${check.stderr}`);
    return;
  }

  // The run: the config's global section with loopback TCP probes (a port
  // nobody listens on), so no real target is contacted.
  const closed = await freePort();
  const runConfig = {
    ...plan.config,
    probes: ['a', 'b', 'c', 'd', 'e', 'f'].map((s) => ({
      name: `k8s-test-${s}`, type: 'tcp', interval: '1m', timeout: '1s',
      tcp: { address: `127.0.0.1:${closed}` },
    })),
  };
  fs.writeFileSync(configPath, yaml.dump(runConfig), { mode: 0o600 });
  const port = await freePort();
  // Kubernetes expands $(VAR) in args from the container's env.
  const args = plan.args.map((a) =>
    relocate(a === plan.listen ? `${a.slice(0, a.lastIndexOf(':'))}:${port}` : a)
      .replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v) => (v in plan.env ? plan.env[v] : m)));
  const child = spawn(canaryd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (c) => { if (stderr.length < 20000) stderr += c; });
  let exitCode = null;
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => {
    exitCode = code === null ? signal : code;
    children.delete(child);
    resolve();
  }));
  const shard = String(plan.replicas - 1);
  try {
    const deadline = Date.now() + 30000;
    let ready = { status: 0 };
    while (exitCode === null && Date.now() < deadline) {
      ready = await get(port, plan.probes.readinessProbe.httpGet.path);
      if (ready.status === 200) break;
      await sleep(100);
    }
    if (ready.status !== 200) {
      fail(plan.where, `canaryd ${args.join(' ')} as pod ${plan.podName}: ` +
        (exitCode !== null ? `exited with ${exitCode}` : 'not ready within 30 s') + `\n${stderr}`);
      return;
    }
    const live = await get(port, plan.probes.livenessProbe.httpGet.path);
    if (live.status !== 200) fail(plan.where, `liveness probe answered ${live.status}`);
    const metrics = await get(port, '/metrics');
    const info = metrics.body.split('\n').find((l) => l.startsWith('canary_shard_info{')) || '';
    if (!info.includes(`shard="${shard}"`) || !info.includes(`total_shards="${plan.replicas}"`))
      fail(plan.where, `/metrics does not show shard ${shard} of ${plan.replicas}: "${info}"`);
    console.log(`${plan.where}: pod ${plan.podName} ready as shard ${shard} of ` +
      `${plan.replicas} (${info.trim()})`);
  } finally {
    if (exitCode === null) {
      child.kill('SIGTERM');
      // An unref'd timer: the wait ends with the child, not 10 s later.
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10000).unref())]);
      if (exitCode === null) {
        child.kill('SIGKILL');
        await exited;
        fail(plan.where, 'canaryd did not exit within 10 s of SIGTERM');
      } else if (exitCode !== 0) {
        fail(plan.where, `canaryd exited with ${exitCode} on SIGTERM\n${stderr}`);
      }
    }
  }
}

(async () => {
  if (errors.length === 0) {
    for (const plan of plans) {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), 'canaryd-k8s-'));
      try {
        await runPod(plan, root);
      } finally {
        fs.rmSync(root, { recursive: true, force: true });
      }
    }
  }
  if (errors.length) {
    for (const e of errors) console.error(e);
    console.error(`kubernetes manifests: ${errors.length} error(s)`);
    process.exit(1);
  }
  const kinds = {};
  for (const d of docs) kinds[d.doc.kind] = (kinds[d.doc.kind] || 0) + 1;
  console.log(`kubernetes manifests: ${docs.length} documents in ${files.length} files valid ` +
    `(${Object.entries(kinds).sort().map(([k, n]) => (n > 1 ? `${n} ${k}` : k)).join(', ')})`);
})();
