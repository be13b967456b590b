// stackrig live preview: follows the rig's server-sent events and redraws what changed.
// Plain JavaScript, no build step. Images are fetched only when their version changes
// (the version goes in the query string, so no stale cached preview is ever shown).
"use strict";

const $ = (id) => document.getElementById(id);
const rows = new Map(); // frame index -> <tr>
let epoch = null;
let positionUnits = "um";

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  s = Math.round(s);
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + String(s % 60).padStart(2, "0") + " s";
  return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " min";
}

function fmtPosition(p, units) {
  if (p === null || p === undefined) return "–";
  if (units === "steps") return Math.round(p) + " steps";
  if (units === "frames") return "frame " + Math.round(p);
  return (Math.abs(p) >= 1000 ? (p / 1000).toFixed(3) + " mm" : p.toFixed(1) + " µm");
}

// One load per picture at a time, always of the newest version asked for: a slow phone
// fetched every version in turn and fell behind (the last composite 25 s late at 60 KB/s).
// A load that failed (a Wi-Fi blip, a busy server) is tried again, where the picture stayed old
// under a page that said "live". A new run's pictures forget the last run's loads.
const loads = {};

function updateImage(kind, info) {
  const img = $(kind);
  if (!info || !img) return;
  img.dataset.wanted = String(info.version);
  if (!loads[kind]) loadImage(kind, img);
}

// A load whose connection died without a word (the Wi-Fi dropped while it was under way) would
// hold its picture for good: it is given up when the page finds its link dead, or after this.
const LOAD_GIVEN_UP_MS = 60000;

function forgetLoads() {
  for (const kind of Object.keys(loads)) {
    const load = loads[kind];
    if (!load) continue;
    loads[kind] = null;
    load.abandon();
    const img = $(kind);
    if (img) loadImage(kind, img);
  }
}

function loadImage(kind, img) {
  const want = img.dataset.wanted;
  if (!want || img.dataset.version === want) return;
  const next = new Image();
  const load = {
    want,
    abandon() {
      clearTimeout(load.timer);
      next.onload = next.onerror = null;
      next.src = "";
    },
  };
  load.timer = setTimeout(() => {
    if (loads[kind] !== load) return;
    loads[kind] = null;
    load.abandon();
    loadImage(kind, img);
  }, LOAD_GIVEN_UP_MS);
  loads[kind] = load;
  next.onload = () => {
    clearTimeout(load.timer);
    if (loads[kind] !== load) return; // forgotten: a new run started meanwhile
    loads[kind] = null;
    // Only move forward: an older picture must not replace a newer one.
    if (!(Number(img.dataset.version) > Number(want))) {
      img.src = next.src;
      img.dataset.version = want;
      img.hidden = false;
      if (kind === "composite") $("composite-empty").hidden = true;
      // Its key is drawn into the picture, too small to read in the side column of a phone.
      if (kind === "depth") $("depth-open").href = next.src;
    }
    loadImage(kind, img); // a newer version asked for meanwhile
  };
  next.onerror = () => {
    clearTimeout(load.timer);
    setTimeout(() => {
      if (loads[kind] !== load) return;
      loads[kind] = null;
      loadImage(kind, img);
    }, 3000);
  };
  next.src = "img/" + kind + ".jpg?v=" + want;
}

function updateProgress(p) {
  $("title").textContent = p.title || "stackrig";
  const badge = $("run-state");
  badge.textContent = p.state;
  badge.dataset.state = p.state;
  $("captured").textContent = p.total ? p.captured + " / " + p.total : String(p.captured);
  $("stacked").textContent = String(p.stacked);
  $("merged").textContent = String(p.merged);
  $("rejected").textContent = String(p.rejected);
  // Nothing running, nothing to count down: a stopped or failed run kept its last ETA.
  const underWay = ["running", "preparing", "stopping", "finishing"].includes(p.state);
  $("eta").textContent = p.state === "finished" ? "done" : underWay ? fmtSeconds(p.eta_s) : "–";
  $("position").textContent = fmtPosition(p.position_um, p.units);
  positionUnits = p.units;
  $("message").textContent = p.message || "";
  const bar = $("progress-bar");
  if (p.total) {
    bar.max = p.total;
    bar.value = Math.min(p.stacked, p.total);
  } else if (["running", "preparing", "finishing"].includes(p.state)) {
    bar.removeAttribute("value"); // indeterminate: work, but no plan says how many frames
  } else {
    bar.max = 1; // nothing under way: an idle station's bar did not move as if it worked
    bar.value = ["finished", "stopped"].includes(p.state) && p.stacked ? 1 : 0;
  }
  document.body.dataset.state = p.state;
  document.body.dataset.units = p.units; // "none": no rail (a hot folder), its column hidden
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function updateRow(f) {
  let tr = rows.get(f.index);
  if (!tr) {
    tr = document.createElement("tr");
    rows.set(f.index, tr);
    const body = $("frames").tBodies[0];
    const after = [...rows.keys()].filter((i) => i > f.index).sort((a, b) => a - b)[0];
    body.insertBefore(tr, after === undefined ? null : rows.get(after));
  }
  let result = "pending";
  let cls = "pending";
  if (f.merged === true) { result = "merged"; cls = "ok"; }
  else if (f.merged === false) { result = "rejected" + (f.reason ? ": " + f.reason : ""); cls = "bad"; }
  tr.replaceChildren(
    cell(String(f.number ?? f.index + 1)),
    cell(f.name || ""),
    cell(fmtPosition(f.position_um, positionUnits), "rail"),
    cell(f.score === undefined || f.score === null ? "–" : f.score.toFixed(3)),
    cell(result, cls),
  );
  tr.dataset.result = cls;
}

function applyState(s) {
  // A new stack started on the same page, or the server restarted (epochs count per run):
  // forget the old table.
  const stack = s.run + "/" + s.epoch;
  if (stack !== epoch) {
    if (epoch !== null) { rows.clear(); $("frames").tBodies[0].replaceChildren(); }
    if (epoch !== null && !epoch.startsWith(s.run + "/")) {
      // Image versions count per run too: the new run's first pictures are not older ones,
      // and the last run's are not this one's (a restarted station showed them as its own).
      for (const kind of ["composite", "last", "depth"]) {
        const img = $(kind);
        if (img) {
          delete img.dataset.version; delete img.dataset.wanted;
          if (loads[kind]) loads[kind].abandon();
          loads[kind] = null;
          img.hidden = true;
          img.removeAttribute("src");
        }
      }
      $("composite-empty").hidden = false;
      $("depth-open").removeAttribute("href");
    }
    epoch = stack;
  }
  updateProgress(s.progress);
  for (const kind of ["composite", "last", "depth"]) updateImage(kind, s.images[kind]);
  for (const f of s.frames) updateRow(f);
  document.body.dataset.version = String(s.version);
  document.dispatchEvent(new CustomEvent("stackrig:state", { detail: s }));
}

let source = null;
// When the stream last said anything, and how long a live one can stay quiet: the server pings
// after `every_s` seconds without news, so three of those in silence mean the connection died
// without a word (a phone's Wi-Fi, a router's restart), which EventSource never notices.
let heardAt = 0;
let quietLimitMs = 45000;
// A new stream is answered with the whole state at once. One that says nothing for
// FIRST_WORD_MS went out on a dead connection: after a router's restart the browser sends it on
// a kept-alive connection that died too, and waiting three pings for each of those kept the page
// "reconnecting…" for minutes. Another is asked for at once.
const FIRST_WORD_MS = 5000;
let fresh = false; // the stream has not said anything yet

let lost = false; // the stream broke, and the browser reconnects it by itself

function heard(link) {
  // The first word of a new stream, or of one the browser reconnected: whoever said the rig
  // was out of reach may say otherwise.
  const back = fresh || lost;
  heardAt = performance.now();
  fresh = false;
  lost = false;
  link.textContent = "live";
  link.dataset.live = "true";
  if (back) document.dispatchEvent(new CustomEvent("stackrig:link-back"));
}

function connect() {
  const link = $("link");
  if (source) source.close();
  heardAt = performance.now();
  fresh = true;
  source = new EventSource("api/events");
  source.addEventListener("state", (ev) => {
    heard(link);
    applyState(JSON.parse(ev.data));
  });
  // Open again: live at once, not at the next ping (up to 15 s "reconnecting…" when no
  // state had changed meanwhile, so none was sent).
  source.onopen = () => heard(link);
  source.addEventListener("ping", (ev) => {
    heard(link);
    const every = Number(JSON.parse(ev.data).every_s);
    if (every > 0) quietLimitMs = 3000 * every;
  });
  source.onerror = () => {
    // EventSource reconnects by itself and sends Last-Event-ID: only missed rows come back.
    lost = true;
    link.textContent = "reconnecting…";
    link.dataset.live = "false";
    // Unless the server answered with something else than events (a restarted preview with a
    // new token: 403; busy: 503): then it gives up for good, so the page asks again itself.
    if (source.readyState === EventSource.CLOSED) setTimeout(reconnect, 2000);
  };
}

// A stream silent too long is dead, and so may be the one asked for since (its request sent on
// a kept-alive connection that died too): open a fresh one, which starts with the whole state.
// A closed one is the error handler's; a hidden page's timers are held back (waking it
// reconnects below).
setInterval(() => {
  if (!source || source.readyState === EventSource.CLOSED) return;
  const limit = fresh ? Math.min(quietLimitMs, FIRST_WORD_MS) : quietLimitMs;
  if (document.visibilityState !== "visible" || performance.now() - heardAt <= limit) return;
  $("link").textContent = "reconnecting…";
  $("link").dataset.live = "false";
  // Requests still waiting went the same dead way: whoever sent them may give up on them.
  document.dispatchEvent(new CustomEvent("stackrig:link-lost"));
  connect();
}, 1000);

// A phone that slept can wake to a stream that is dead without a word: the Wi-Fi dropped the
// connection meanwhile, and nothing reaches the browser to say so (it goes on "live", showing
// the state from before the sleep). Woken, the page opens a fresh one, which starts with the
// whole state; requests sent before the sleep went the same dead way, and whoever sent them
// gives up on them. Hidden, the page lets its stream go: a browser keeps six connections to
// one address, and a seventh tab of the page (the printed link opened again, tabs left in the
// background) never loaded while six held theirs.
// A tab brought back after a moment is no wake: its requests still running are let be.
const SLEPT_MS = 3000;
let hiddenAt = null;
document.addEventListener("visibilitychange", () => {
  if (!source) return;
  if (document.visibilityState !== "visible") {
    hiddenAt = performance.now();
    source.close();
    return;
  }
  const slept = hiddenAt === null || performance.now() - hiddenAt > SLEPT_MS;
  hiddenAt = null;
  if (slept) document.dispatchEvent(new CustomEvent("stackrig:link-lost"));
  connect();
});
document.addEventListener("stackrig:link-lost", forgetLoads);

async function reconnect() {
  if (document.visibilityState !== "visible") return; // shown again, the page connects
  let status = 0;
  try {
    status = (await fetch("api/state")).status;
  } catch (e) {
    // not answering yet: a new EventSource retries by itself
  }
  if (status === 401 || status === 403) location.reload(); // the page shell asks for the token
  else connect();
}

async function showCrop(ev) {
  const img = $("composite");
  const rect = img.getBoundingClientRect();
  const fx = Math.min(Math.max((ev.clientX - rect.left) / rect.width, 0), 1);
  const fy = Math.min(Math.max((ev.clientY - rect.top) / rect.height, 0), 1);
  const panel = $("crop-panel");
  const err = $("crop-error");
  panel.hidden = false;
  panel.dataset.loading = "true";
  err.hidden = true;
  try {
    // 100 %: one image pixel per device pixel, so ask for as many pixels as two crops side
    // by side can show on this screen, and draw them at 1/devicePixelRatio CSS pixels each.
    const dpr = window.devicePixelRatio || 1;
    const room = ($("crop-pair").clientWidth - 8) / 2;
    const size = Math.max(64, Math.min(512, Math.floor(room * dpr)));
    const r = await fetch("api/crop?x=" + fx.toFixed(4) + "&y=" + fy.toFixed(4) + "&size=" + size)
      .catch(() => {
        // No answer at all: the browser's own words ("Failed to fetch") say nothing.
        throw new Error("the rig does not answer: check that it runs and that this device reaches it");
      });
    // An answer that is not JSON (a proxy's error page) is told by its status, not as a JSON
    // syntax error.
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || r.statusText);
    for (const [id, url] of [["crop-composite", body.composite], ["crop-last", body.last]]) {
      const im = $(id);
      im.style.width = body.width / dpr + "px";
      im.src = url;
    }
    $("crop-where").textContent = "at " + body.x + ", " + body.y + " (" + body.width + "×" + body.height + " px)";
    const marker = $("crop-marker"); // where the crop lies on the composite
    const sx = rect.width / body.frame_width;
    const sy = rect.height / body.frame_height;
    marker.style.left = (body.x * sx) + "px";
    marker.style.top = (body.y * sy) + "px";
    marker.style.width = Math.max(body.width * sx, 6) + "px";
    marker.style.height = Math.max(body.height * sy, 6) + "px";
    marker.hidden = false;
    panel.dataset.loading = "false";
    panel.scrollIntoView({ block: "nearest", behavior: "smooth" });
  } catch (e) {
    err.textContent = "No crop: " + e.message;
    err.hidden = false;
    panel.dataset.loading = "error";
  }
}

$("composite").addEventListener("click", showCrop);
// From the keyboard (or a switch), Enter or Space checks the centre.
$("composite").addEventListener("keydown", (ev) => {
  if (ev.key !== "Enter" && ev.key !== " ") return;
  ev.preventDefault();
  const r = $("composite").getBoundingClientRect();
  showCrop({ clientX: r.left + r.width / 2, clientY: r.top + r.height / 2 });
});
$("crop-close").addEventListener("click", () => {
  $("crop-panel").hidden = true;
  $("crop-marker").hidden = true;
});

// A host that guards the page (the rig station) sets window.previewGate from its own script,
// which the page loads after this one: a promise of whether the page may connect.
async function start() {
  if (window.previewGate && !(await window.previewGate)) {
    $("link").textContent = "locked";
    return;
  }
  connect();
}

document.addEventListener("DOMContentLoaded", start);
