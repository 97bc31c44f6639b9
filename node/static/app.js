// Shoal's page: upload (tus), videos with live state, playback (hls.js) and the cluster view.
// Every node serves this page; any node answers every request it makes.
// `window.shoal` holds what the page saw (segments and the node that served each, errors,
// rendition switches): the headless-browser test reads it.
"use strict";

const $ = (sel) => document.querySelector(sel);
const shoal = (window.shoal = { hls: null, playing: null, served: [], errors: [], levelSwitches: [], bases: [] });
const POLL_VIDEOS_MS = 2000;
const POLL_CLUSTER_MS = 3000;
const owners = new Map(); // video id -> owner node id
const posters = new Map(); // video id -> its poster's URL (ready videos that have one)

function problem(msg) {
  const p = $("#problems");
  p.hidden = false;
  p.textContent = (p.textContent ? p.textContent + " · " : "") + msg;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") e.onclick = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

// ---- token --------------------------------------------------------------------------------------
const tokenInput = $("#token");
tokenInput.value = localStorage.getItem("shoal.token") || "";
for (const ev of ["input", "change"]) tokenInput.addEventListener(ev, () => localStorage.setItem("shoal.token", tokenInput.value.trim()));
const authHeaders = () => (tokenInput.value.trim() ? { Authorization: "Bearer " + tokenInput.value.trim() } : {});

// ---- upload (tus) ---------------------------------------------------------------------------------
$("#upload").onclick = () => {
  const file = $("#file").files[0];
  const status = $("#upload-status");
  if (!file) { status.textContent = "choose a file first"; return; }
  if (typeof tus === "undefined") { status.textContent = "tus-js-client is not installed on this node"; return; }
  const upload = new tus.Upload(file, {
    endpoint: location.origin + "/v1/uploads",
    headers: authHeaders(),
    metadata: { filename: file.name, filetype: file.type || "application/octet-stream" },
    retryDelays: [0, 1000, 3000, 5000, 10000],
    removeFingerprintOnSuccess: true,
    onProgress(sent, total) {
      $("#progress").value = total ? (100 * sent) / total : 0;
      status.textContent = `${(sent / 1048576).toFixed(1)} / ${(total / 1048576).toFixed(1)} MiB`;
    },
    onError(err) {
      const r = err.originalResponse;
      status.textContent = "upload failed: " + (r ? `${r.getStatus()} ${r.getBody()}` : err.message);
    },
    onSuccess() {
      const id = upload.url.split("/").pop();
      status.textContent = `uploaded: ${id}`;
      refreshVideos();
    },
  });
  upload.findPreviousUploads().then((previous) => {
    if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
    upload.start();
  });
};

// ---- videos ---------------------------------------------------------------------------------------
async function refreshVideos() {
  let list;
  try {
    list = (await getJSON("/v1/videos?limit=50")).videos;
  } catch (e) {
    return; // the node may be restarting: the next poll tries again
  }
  for (const v of list) if (v.playback && v.playback.poster) posters.set(v.id, v.playback.poster);
  const body = $("#videos tbody");
  body.replaceChildren(...list.map((v) => el("tr", { "data-id": v.id },
    el("td", {}, posters.has(v.id)
      ? el("img", { class: "poster", src: posters.get(v.id), alt: "", loading: "lazy" }) : ""),
    el("td", { class: "id" }, v.id),
    el("td", {}, v.filename || ""),
    el("td", { class: "state-" + v.state }, v.state
      + (v.state === "processing" && v.progress != null ? ` ${Math.round(100 * v.progress)}%` : "")
      + (v.error ? `: ${v.error.message || v.error}` : "")),
    el("td", {}, owners.get(v.id) || ""),
    el("td", {}, v.state === "ready" ? el("button", { class: "play", onclick: () => play(v.id) }, "play") : ""))));
  for (const v of list) if (!owners.has(v.id)) lookupOwner(v.id);
}

async function lookupOwner(id) {
  try {
    owners.set(id, (await getJSON(`/v1/cluster/owner/${id}`)).owner);
  } catch (e) {
    owners.set(id, "—");
  }
}

// ---- cluster ---------------------------------------------------------------------------------------
async function refreshCluster() {
  let view;
  try {
    view = await getJSON("/v1/cluster/members");
  } catch (e) {
    return;
  }
  const usable = view.members.filter((m) => m.state === "alive" || m.state === "unknown");
  shoal.bases = usable.map((m) => "http://" + m.http_addr);
  const owned = (id) => [...owners.entries()].filter(([, o]) => o === id).length;
  $("#members tbody").replaceChildren(...view.members.map((m) => el("tr", {},
    el("td", {}, m.id + (m.id === view.self ? " (this page)" : "")),
    el("td", { class: "state-" + m.state }, m.state),
    el("td", {}, m.http_addr),
    el("td", {}, String(owned(m.id))))));
  for (const id of owners.keys()) lookupOwner(id); // ownership moves with membership
}

// ---- playback --------------------------------------------------------------------------------------
// Segments are fetched in turn from every live node (bytes are identical whichever node serves),
// and the node that served each is read from its X-Served-By header.
let rotation = 0;
function makeRotatingLoader() {
  const Base = Hls.DefaultConfig.loader;
  return class RotatingLoader extends Base {
    load(context, config, callbacks) {
      if ($("#spread").checked && shoal.bases.length > 1) {
        const u = new URL(context.url);
        const base = new URL(shoal.bases[rotation++ % shoal.bases.length]);
        u.protocol = base.protocol;
        u.host = base.host;
        context.url = u.toString();
      }
      const onSuccess = callbacks.onSuccess;
      const wrapped = Object.assign({}, callbacks, {
        onSuccess(response, stats, ctx, xhr) {
          const node = xhr && xhr.getResponseHeader ? xhr.getResponseHeader("X-Served-By") : null;
          shoal.served.push({ url: ctx.url, node, level: ctx.frag ? ctx.frag.level : null, bytes: stats.total });
          const li = el("li", {}, `${ctx.url.split("/hls/")[1] || ctx.url} ← ${node}`);
          $("#segments").append(li);
          li.scrollIntoView({ block: "nearest" });
          onSuccess(response, stats, ctx, xhr);
        },
      });
      super.load(context, config, wrapped);
    }
  };
}

function play(id) {
  const video = $("#video");
  const url = `/v1/videos/${id}/hls/master.m3u8`;
  if (shoal.hls) shoal.hls.destroy();
  shoal.hls = null;
  shoal.playing = id;
  shoal.served = [];
  shoal.levelSwitches = [];
  $("#segments").replaceChildren();
  $("#playing").textContent = id;
  if (posters.has(id)) video.poster = posters.get(id);
  else video.removeAttribute("poster");
  const picker = $("#rendition");
  picker.replaceChildren(el("option", { value: "-1" }, "auto"));
  if (typeof Hls !== "undefined" && Hls.isSupported()) {
    const hls = new Hls({ fLoader: makeRotatingLoader(), enableWorker: true });
    shoal.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, (_, data) => {
      data.levels.forEach((l, i) => picker.append(el("option", { value: String(i) },
        `${l.height}p · ${Math.round(l.bitrate / 1000)} kb/s`)));
      video.play().catch((e) => shoal.errors.push({ type: "play", details: String(e), fatal: false }));
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => shoal.levelSwitches.push(data.level));
    hls.on(Hls.Events.ERROR, (_, data) => {
      shoal.errors.push({ type: data.type, details: data.details, fatal: data.fatal });
      if (data.fatal) problem(`playback: ${data.details}`);
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url; // Safari plays HLS natively (no rendition picker, no spreading)
    video.play().catch(() => {});
  } else {
    problem("this browser cannot play HLS (and hls.js is not loaded)");
  }
}

$("#rendition").onchange = (e) => {
  if (shoal.hls) shoal.hls.currentLevel = Number(e.target.value); // -1 = automatic
};
$("#video").addEventListener("error", () => {
  const err = $("#video").error;
  shoal.errors.push({ type: "media", details: err ? `${err.code} ${err.message}` : "unknown", fatal: true });
});

// ---- start ------------------------------------------------------------------------------------------
if (typeof Hls === "undefined") problem("hls.js is not installed on this node: run `npm ci --prefix web`");
if (typeof tus === "undefined") problem("tus-js-client is not installed on this node: run `npm ci --prefix web`");
getJSON("/v1/node").then((n) => { $("#served-by").textContent = `page served by ${n.id}`; }, () => {});
refreshCluster().then(refreshVideos).then(() => {
  const wanted = new URLSearchParams(location.hash.slice(1)).get("play");
  if (wanted) play(wanted);
});
setInterval(refreshVideos, POLL_VIDEOS_MS);
setInterval(refreshCluster, POLL_CLUSTER_MS);
