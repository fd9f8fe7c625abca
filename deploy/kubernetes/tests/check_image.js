// A static check of deploy/kubernetes/Dockerfile, as no image can be built
// here (no container daemon): its runtime stage installs, by Debian package,
// every shared library that the built canaryd loads.
//   node check_image.js CANARYD_BINARY DOCKERFILE
//
// - The package of each library canaryd links directly (`readelf -d`,
//   NEEDED) is installed by name.
// - Every library `ldd` lists (the whole closure) is in a package that the
//   installed ones bring: by name or through their Depends/Pre-Depends, read
//   from this machine's dpkg database (Debian 12, as the image).
// - Each installed package owns one of those NEEDED libraries, or is one of
//   EXTRAS, which no linker lists.
// Sanitizer runtimes of a test build (libasan, libubsan) are left out: the
// image holds the release build.
'use strict';
const fs = require('fs');
const { spawnSync } = require('child_process');

const EXTRAS = {
  'ca-certificates': 'the trust store that the probes verify TLS against',
  'libwebsockets-evlib-uv': "libwebsockets' libuv event library, loaded at run time",
};
const SANITIZER = /^lib(asan|ubsan|lsan|tsan)\.so/;

const [canaryd, dockerfile] = process.argv.slice(2);
if (!canaryd || !dockerfile) {
  console.error('usage: node check_image.js CANARYD_BINARY DOCKERFILE');
  process.exit(2);
}
const errors = [];
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30000 });
  return r.status === 0 ? r.stdout : null;
};

// The Dockerfile's stages and the runtime stage's apt-get install list.
const lines = fs.readFileSync(dockerfile, 'utf8')
  .split('\n').filter((l) => !/^\s*#/.test(l)).join('\n')
  .replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter(Boolean);
const stages = [];
for (const l of lines) {
  const m = l.match(/^(\w+)\s+(.*)$/);
  if (!m) continue;
  const op = m[1].toUpperCase();
  const rest = m[2];
  if (op === 'FROM') stages.push({ from: rest, steps: [] });
  else if (stages.length) stages[stages.length - 1].steps.push({ op, rest });
}
if (stages.length < 2) errors.push(`${dockerfile}: expected a build stage and a runtime stage`);
const build = stages[0] || { from: '', steps: [] };
const runtime = stages[stages.length - 1] || { from: '', steps: [] };
if (!/^debian:12(\s|$)/.test(build.from)) errors.push(`build stage is FROM ${build.from}, not debian:12`);
if (!/^debian:12-slim(\s|$)/.test(runtime.from))
  errors.push(`runtime stage is FROM ${runtime.from}, not debian:12-slim`);
const buildRuns = build.steps.filter((s) => s.op === 'RUN').map((s) => s.rest).join(' ; ');
for (const want of ['scripts/install-deps.sh', 'scripts/build.sh release'])
  if (!buildRuns.includes(want)) errors.push(`the build stage does not run ${want}`);
if (!runtime.steps.some((s) => s.op === 'COPY' && /--from=\S+\s+\S*build-release\/canaryd\s/.test(`${s.rest} `)))
  errors.push('the runtime stage does not copy build-release/canaryd from the build stage');
const user = runtime.steps.filter((s) => s.op === 'USER').pop();
if (!user || !/^[1-9][0-9]*(:[0-9]+)?$/.test(user.rest))
  errors.push('the runtime stage has no numeric non-root USER (runAsNonRoot needs one)');

const installed = new Set();
for (const s of runtime.steps.filter((x) => x.op === 'RUN')) {
  for (const cmd of s.rest.split(/&&|;|\|\|/)) {
    const words = cmd.trim().split(/\s+/);
    const i = words.findIndex((w, k) => w === 'install' && /apt-get$/.test(words[k - 1] || ''));
    if (i < 0) continue;
    for (const w of words.slice(i + 1)) if (!w.startsWith('-')) installed.add(w);
  }
}
if (installed.size === 0) errors.push('the runtime stage installs no package with apt-get install');

const ldd = run('ldd', [canaryd]);
const readelf = run('readelf', ['-d', canaryd]);
if (!ldd || !readelf) errors.push(`cannot run ldd and readelf on ${canaryd}`);
const paths = {};
for (const m of (ldd || '').matchAll(/^\s*(\S+) => (\/\S+)/gm)) paths[m[1]] = m[2];
for (const m of (ldd || '').matchAll(/^\s*(\/\S+) \(/gm)) paths[m[1].split('/').pop()] = m[1];
const needed = [...(readelf || '').matchAll(/\(NEEDED\).*\[(.+)\]/g)].map((m) => m[1]);
// A sanitized test build links some libraries directly that the release
// build gets through others (libcap): for it, a NEEDED library need only be
// brought.
const sanitized = needed.some((lib) => SANITIZER.test(lib));

// Library -> Debian package, through dpkg's file lists, in one query. On a
// merged-/usr system dpkg may know a file under /lib or under /usr/lib.
const candidates = (file) => {
  const real = fs.realpathSync(file);
  return [file, real].flatMap((f) => [f, f.startsWith('/usr/') ? f.slice(4) : `/usr${f}`]);
};
const owner = {};
const owners = spawnSync('dpkg-query', ['-S', ...Object.values(paths).flatMap(candidates)],
  { encoding: 'utf8', timeout: 30000 }).stdout || '';
for (const m of owners.matchAll(/^([^:\s]+)(?::\S+)?: (\/\S+)$/gm)) owner[m[2]] = m[1];
const packageOf = (file) => candidates(file).map((f) => owner[f]).find(Boolean) || null;

// Every installed package's Depends and Pre-Depends, in one query.
const depends = {};
const status = run('dpkg-query', ['-W', '-f=${Package}\t${db:Status-Status}\t${Depends}, ${Pre-Depends}\n']) || '';
for (const line of status.split('\n')) {
  const [pkg, state, deps] = line.split('\t');
  if (state === 'installed') depends[pkg] = deps;
}

const neededPackages = new Set();
for (const lib of needed) {
  if (SANITIZER.test(lib)) continue;
  const pkg = paths[lib] && packageOf(paths[lib]);
  if (!pkg) errors.push(`${lib}: not found by ldd or in no Debian package`);
  else if (installed.has(pkg)) neededPackages.add(pkg);
  else if (!sanitized) errors.push(`${lib} (NEEDED) is in ${pkg}, which the runtime stage does not install`);
}

// The packages the installed ones bring.
const closure = new Set();
const queue = [...installed];
while (queue.length) {
  const p = queue.pop();
  if (closure.has(p)) continue;
  if (!(p in depends)) {
    if (installed.has(p)) errors.push(`${p}: not a package installed on this machine`);
    continue;
  }
  closure.add(p);
  for (const alt of depends[p].split(/[,|]/)) {
    const name = alt.trim().split(/[\s(]/)[0].split(':')[0];
    if (name && !closure.has(name)) queue.push(name);
  }
}
for (const [lib, file] of Object.entries(paths)) {
  if (SANITIZER.test(lib)) continue;
  const pkg = packageOf(file);
  if (!pkg) errors.push(`${lib} (${file}): in no Debian package`);
  else if (!closure.has(pkg)) errors.push(`${lib} is in ${pkg}, which no installed package brings`);
}
for (const p of installed)
  if (!neededPackages.has(p) && !(p in EXTRAS))
    errors.push(`the runtime stage installs ${p}, which owns no library canaryd links (or add it to EXTRAS with a reason)`);
for (const p of Object.keys(EXTRAS))
  if (!installed.has(p)) errors.push(`the runtime stage does not install ${p} (${EXTRAS[p]})`);

if (errors.length) {
  for (const e of errors) console.error(`${dockerfile}: ${e}`);
  process.exit(1);
}
const checked = Object.keys(paths).filter((lib) => !SANITIZER.test(lib)).length;
console.log(`Dockerfile: the runtime stage's ${installed.size} packages hold the ` +
  `${neededPackages.size} packages of canaryd's NEEDED libraries and bring all ${checked} ` +
  `libraries ldd lists${sanitized ? ' (a sanitized build: its sanitizer runtimes left out)' : ''}`);
