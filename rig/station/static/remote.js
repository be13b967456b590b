// stackrig station: live view with focus peaking and the camera's settings, added to the
// station panel (station.js). Live view asks for one frame at a time (GET /api/liveview) and
// the next as soon as it is shown, so the rate is what the camera, the rig and the link allow;
// the rig answers 409 while a session shoots and the view pauses. A tap shows the frame at
// 1:1 around the tapped point; another tap fits it again.
"use strict";

(() => {
  const el = (id) => document.getElementById(id);
  let built = false;
  let running = null;

  function build() {
    const live = document.createElement("div");
    live.id = "lv";
    live.innerHTML = `
      <h2>Live view <span id="lv-rate" class="muted"></span></h2>
      <div class="lv-wrap" id="lv-wrap" title="tap to see 1:1, tap again to fit" tabindex="0"
           role="button" aria-label="live view: Enter shows its centre at 1:1, again fits it">
        <img id="lv-img" alt="live view" data-frames="0" hidden>
        <p id="lv-empty" class="empty">Waiting for the camera…</p>
      </div>
      <div class="row">
        <label class="check"><input type="checkbox" id="lv-peak" checked> Focus peaking</label>
        <button type="button" id="lv-pause">Pause</button>
      </div>
      <p id="lv-msg" class="message" role="status"></p>`;
    const cam = document.createElement("div");
    cam.id = "cam";
    cam.innerHTML = `<h2>Camera</h2><form id="cam-form" class="grid-form"></form>
      <p id="cam-msg" class="message" role="status"></p>`;
    const panel = el("station");
    panel.prepend(live);
    panel.querySelector("#st-msg").after(cam);
    el("lv-wrap").addEventListener("click", zoom);
    el("lv-wrap").addEventListener("keydown", (ev) => {
      if (ev.key !== "Enter" && ev.key !== " ") return;
      ev.preventDefault();
      const r = el("lv-img").getBoundingClientRect();
      zoom({ clientX: r.left + r.width / 2, clientY: r.top + r.height / 2 });
    });
    el("lv-pause").addEventListener("click", () => {
      paused = !paused;
      el("lv-pause").textContent = paused ? "Resume live view" : "Pause";
    });
    built = true;
    loadSettings();
    liveLoop();
  }

  // ------------------------------------------------------------------ live view
  let paused = false;
  let shown = null;
  const times = [];
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const LIVE_WAIT_MS = 10000;

  function liveMsg(text) {
    el("lv-msg").textContent = text;
  }

  async function liveLoop() {
    const img = el("lv-img");
    for (;;) {
      if (paused || document.hidden || running) {
        if (running) liveMsg("Live view pauses while the session shoots.");
        await sleep(500);
        continue;
      }
      // A request whose connection died without a word (the Wi-Fi dropped while it was under
      // way) never ends: the picture froze under a "live" link. It is given up when the page
      // finds its link dead, or after LIVE_WAIT_MS.
      const ctl = new AbortController();
      const giveUp = () => ctl.abort();
      const timer = setTimeout(giveUp, LIVE_WAIT_MS);
      document.addEventListener("stackrig:link-lost", giveUp);
      let r;
      let blob;
      let refused = {};
      try {
        r = await fetch("api/liveview?peaking=" + (el("lv-peak").checked ? 1 : 0), {
          signal: ctl.signal,
        });
        if (r.ok) blob = await r.blob();
        else refused = await r.json().catch(() => ({}));
      } catch (e) {
        // No answer, or the link dropped mid-frame (a phone's Wi-Fi does): ask again.
        liveMsg("live view: the rig does not answer");
        await sleep(ctl.signal.aborted ? 500 : 2000);
        continue;
      } finally {
        clearTimeout(timer);
        document.removeEventListener("stackrig:link-lost", giveUp);
      }
      if (!r.ok) {
        liveMsg(refused.error || r.statusText);
        await sleep(r.status === 409 ? 1000 : 2000);
        continue;
      }
      // Decoded off the page first: the shown image never stands half-loaded, so a tap in the
      // meantime still finds its size. Once decoded, the URL is in the list of available images
      // and the shown element takes it at once (HTML's "update the image data").
      const url = URL.createObjectURL(blob);
      const next = new Image();
      next.src = url;
      try {
        await next.decode();
      } catch (e) {
        URL.revokeObjectURL(url);
        continue;
      }
      img.src = url;
      if (shown) URL.revokeObjectURL(shown);
      shown = url;
      img.hidden = false;
      el("lv-empty").hidden = true;
      img.dataset.frames = String(Number(img.dataset.frames) + 1);
      img.dataset.source = r.headers.get("X-Live-Source") || "";
      img.dataset.peaking = r.headers.get("X-Peaking-Fraction") || "";
      liveMsg(img.dataset.source === "test-shot" ? "No live view from this camera: the last test shot stands in." : "");
      const now = performance.now();
      times.push(now);
      while (times.length && now - times[0] > 3000) times.shift();
      if (times.length > 1) {
        const fps = (times.length - 1) / ((now - times[0]) / 1000);
        el("lv-rate").textContent = fps.toFixed(1) + " fps";
      }
    }
  }

  // Tap-to-zoom: the frame at its own pixels, scrolled so the tapped point is in the middle.
  function zoom(ev) {
    const wrap = el("lv-wrap");
    const img = el("lv-img");
    if (img.hidden) return;
    if (wrap.classList.contains("zoom")) {
      wrap.classList.remove("zoom");
      return;
    }
    const box = img.getBoundingClientRect();
    const fx = (ev.clientX - box.left) / box.width;
    const fy = (ev.clientY - box.top) / box.height;
    wrap.classList.add("zoom");
    const zoomed = img.getBoundingClientRect(); // the frame at its own pixels, laid out now
    wrap.scrollLeft = fx * zoomed.width - wrap.clientWidth / 2;
    wrap.scrollTop = fy * zoomed.height - wrap.clientHeight / 2;
  }

  // ------------------------------------------------------------------ camera settings
  const { call, message } = window.stackrigStation;
  const camMsg = (text, bad) => message("cam-msg", text, bad);

  // The lens's f-number feeds the plan's depth-of-field calculator.
  function aperturePlan(value) {
    const m = /([0-9.]+)/.exec(value || "");
    const fnum = el("st-fnum");
    if (m && fnum) fnum.value = m[1];
  }

  async function loadSettings() {
    let data;
    try {
      data = await call("GET", "api/camera/settings");
    } catch (e) {
      camMsg(e.message, true);
      return;
    }
    const form = el("cam-form");
    form.replaceChildren();
    for (const s of data.settings) {
      const label = document.createElement("label");
      label.textContent = s.label + " ";
      const select = document.createElement("select");
      select.id = "cam-" + s.name;
      select.dataset.name = s.name;
      if (s.key === null) {
        select.disabled = true;
        select.append(new Option("not offered"));
        select.title = "this camera has no " + s.label + " setting";
      } else {
        for (const c of s.choices) select.append(new Option(c, c, false, c === s.value));
        select.disabled = s.readonly;
        if (s.name === "aperture") aperturePlan(s.value);
        select.addEventListener("change", async () => {
          select.disabled = true;
          try {
            const r = await call("POST", "api/camera/settings", { name: s.name, value: select.value });
            select.value = r.value;
            camMsg(s.label + " set to " + r.value);
            if (s.name === "aperture") aperturePlan(r.value);
          } catch (e) {
            camMsg(e.message, true);
          } finally {
            select.disabled = false;
          }
        });
      }
      label.append(select);
      form.append(label);
    }
  }

  document.addEventListener("stackrig:state", (ev) => {
    const st = ev.detail.station;
    if (!st || !el("station")) return;
    running = st.running || null;
    if (!built && el("st-msg")) build();
    if (!running && el("lv-msg").textContent.startsWith("Live view pauses")) liveMsg("");
  });
})();
