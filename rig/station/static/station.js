// stackrig station: the controls the station adds to the preview page (login.js asks for the
// access token). Plan (step, frame count or depth-of-field calculator; near and far ends set
// from where the rail stands), jog, test shot, start/stop/resume, and past sessions:
// thumbnail, state, downloads of composite, depth map (colour and 16-bit) and frames, resume,
// delete.
"use strict";

(() => {
  const el = (id) => document.getElementById(id);
  let built = false;

  function section(id, label) {
    const s = document.createElement("section");
    s.id = id;
    s.hidden = true;
    s.setAttribute("aria-label", label);
    el("progress-panel").after(s);
    return s;
  }

  const stationPanel = section("station", "station controls");
  let units = "um";
  let running = undefined;
  let deleted = undefined; // the station's count of deleted sessions, when last listed
  let progress = null; // the progress the event stream last told
  // A page opened (or reloaded) while a session shoots shows that session's plan in the form,
  // not the defaults, unless the form is edited before the list comes.
  let showRunningPlan = false;

  // Requests waiting for their answer. When the page finds its event stream dead (nothing
  // heard for three pings: Wi-Fi out of reach, a router's restart), their connections died the
  // same way, and no answer would ever come: a jog's button stayed disabled for minutes, until
  // the phone's TCP gave up. They are dropped then; the rig's state comes with the new stream.
  const pending = new Set();
  const LOST = "the connection to the rig was lost before it answered: the page follows the " +
    "rig again when it reconnects";
  const NO_ANSWER = "the rig does not answer: check that it runs and that this phone reaches it";
  document.addEventListener("stackrig:link-lost", () => {
    for (const ctl of pending) ctl.abort();
  });
  // Back in touch: a line that says the rig is out of reach is no longer true (it stood on
  // in red under a "live" link), and what the taps did shows in the state that follows.
  document.addEventListener("stackrig:link-back", () => {
    for (const m of document.querySelectorAll("#station .message.error")) {
      if (m.textContent === LOST || m.textContent === NO_ANSWER) message(m.id, "", false);
    }
  });

  async function call(method, url, body) {
    const ctl = new AbortController();
    pending.add(ctl);
    try {
      let r;
      try {
        r = await fetch(url, {
          method,
          headers: body === undefined ? {} : { "Content-Type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: ctl.signal,
        });
      } catch (e) {
        if (ctl.signal.aborted) throw new Error(LOST);
        // No answer at all (the rig restarting, the phone out of Wi-Fi): the browser's own
        // words ("Failed to fetch", "Load failed") say nothing to the photographer.
        throw new Error(NO_ANSWER);
      }
      // An answer that is not JSON (a TLS proxy's 502 page while the rig restarts, the
      // server's plain 503 at its connection limit) is told by its status, not as a JSON
      // syntax error.
      const data = r.status === 204 ? {} : await r.json().catch(() => ({}));
      if (ctl.signal.aborted) throw new Error(LOST);
      if (!r.ok) throw Object.assign(new Error(data.error || r.statusText), { data });
      return data;
    } finally {
      pending.delete(ctl);
    }
  }

  // Every message line is a live region (role=status): a screen reader says what is written
  // there, at once when it is a fault.
  function message(id, text, bad) {
    const m = el(id);
    m.setAttribute("aria-live", bad ? "assertive" : "polite");
    m.textContent = text;
    m.classList.toggle("error", !!bad);
  }

  const say = (text, bad) => message("st-msg", text, bad);
  const LIST_RETRY_MS = 3000;

  // remote.js (loaded after this script) calls the rig and shows its messages the same way.
  window.stackrigStation = { call, message };

  // Start and Stop follow the station's state (a session may start or end from another phone,
  // or before the request that started it has its answer).
  // Stop also halts this page's own jog or homing while it runs (a move typed far too long, a
  // homing switch unplugged): nothing else on the page could.
  // The station says too when a request moves the rail (from another phone, or from this one
  // whose request was dropped with a dead link): Stop halts that move as well.
  let railMoves = 0;
  let moving = null;
  let stopping = null; // the session this page asked to stop, until it has stopped
  // The session this page started or resumed, and the message line that said so: how it
  // ended is said there, in red if it failed (the reason was only in the progress panel,
  // off a phone's screen, and "started ..." stood on under Start).
  // A run ended is one whose state came after the request was sent (``since``, the state's
  // version then): a short session can end before its Start has its answer, and an earlier
  // run of the same session (a Resume's) ended before it.
  let launched = null;
  let lastState = null; // the last state heard
  const stateVersion = () => (lastState ? lastState.version : -1);
  const launch = (id, line, since) => {
    launched = { id, line, since };
    sayHowItEnded();
  };

  function sayHowItEnded() {
    const s = lastState;
    if (!launched || !s || !s.station || s.station.running === launched.id) return;
    const p = s.progress;
    if (!p || p.title !== launched.id || s.version <= launched.since) return;
    if (p.state === "failed") {
      message(launched.line, launched.id + " failed: " + (p.message || "see the station's log"), true);
    } else if (p.state === "finished") {
      message(launched.line, launched.id + " finished");
    } else if (p.state !== "stopped") {
      return; // still finishing
    }
    launched = null;
  }
  function showRunning() {
    el("st-stop").disabled = !running && !railMoves && !moving;
    el("st-start").disabled = !!running;
  }

  async function railCall(url, body) {
    railMoves++;
    showRunning();
    try {
      return await call("POST", url, body);
    } finally {
      railMoves--;
      showRunning();
    }
  }

  // A control's answer, and its error, show in the message line of its own group (plan,
  // rail, sessions), where the eyes are when it is tapped: work(say) writes there.
  // A button is disabled while its request runs, which drops the keyboard's focus: it comes
  // back to the button (a second Enter jogs again), or, where the button is gone (a deleted
  // session's) or stays disabled (Start while its session runs), to the message line. Only a
  // keyboard's focus (a tap focuses a button too, unseen), and without scrolling: the page
  // stays where the photographer has moved it meanwhile.
  const focusLost = () => !document.activeElement || document.activeElement === document.body;
  async function act(button, work) {
    const line = button.closest("[data-msg]");
    const where = line ? line.dataset.msg : "st-msg";
    const here = (text, bad) => message(where, text, bad);
    const keyed = document.activeElement === button && button.matches(":focus-visible");
    button.disabled = true;
    try {
      await work(here, where);
    } catch (e) {
      here(e.message, true);
    } finally {
      button.disabled = false;
      showRunning();
      if (keyed && focusLost()) {
        const back = button.isConnected && !button.disabled ? button : el(where);
        back.focus({ preventScroll: true });
      }
    }
  }

  // The plan's fields that the form shows under "Order and delays", and their defaults.
  const TIMING = [
    ["direction", "st-direction", "near-to-far"],
    ["exposure_delay", "st-exposure-delay", "0"],
    ["flash_recycle", "st-flash-recycle", "0"],
  ];

  function planSpec() {
    const spec = { from: el("st-from").value, to: el("st-to").value, settle: el("st-settle").value };
    for (const [key, id] of TIMING) spec[key] = el(id).value;
    spec.return_to_start = el("st-return").checked;
    const mode = el("st-mode").value;
    if (mode === "step") spec.step = el("st-step").value;
    else if (mode === "frames") spec.frames = el("st-frames").value;
    else {
      spec.magnification = el("st-mag").value;
      spec.f_number = el("st-fnum").value;
    }
    return spec;
  }

  // A past session's plan into the form, to shoot it again: its range and frame count (the
  // same positions, however its step was derived), its order and delays. "Order and delays"
  // opens when they are not the defaults, so that nothing the rig will do is out of sight.
  function planAgain(s, scroll = true) {
    const spec = s.spec;
    el("st-from").value = spec.from;
    el("st-to").value = spec.to;
    el("st-mode").value = "frames";
    el("st-frames").value = spec.frames;
    el("st-settle").value = spec.settle;
    let unusual = spec.return_to_start === false;
    for (const [key, id, usual] of TIMING) {
      el(id).value = String(spec[key] ?? usual);
      unusual ||= el(id).value !== usual;
    }
    el("st-return").checked = spec.return_to_start !== false;
    if (unusual) el("st-timing").open = true;
    showMode();
    if (scroll) el("st-plan").scrollIntoView({ block: "start" });
    return checkPlan();
  }

  // A rail position as the plan form writes it: micrometres with 0.1 µm, or whole lens steps.
  function lengthText(position) {
    return units === "steps" ? Math.round(position) + "steps"
      : (Math.round(position * 10) / 10) + "um";
  }

  function planInfo(text, bad) {
    const p = el("st-plan-info");
    p.textContent = text;
    p.classList.toggle("error", !!bad);
  }

  // A Start refused for what the form held is said under Start until the form changes: a
  // plan fixed since was checked, and the refusal stood on in red above its summary.
  let refusedFor = null;
  const startRequest = () => JSON.stringify([planSpec(), el("st-name").value, el("st-format").value]);

  let planAsked = 0;
  async function checkPlan() {
    // On a slow link the plans checked while typing can be answered out of order: only the
    // last one asked for is shown (a late "3 frames" must not stand under "30").
    const asked = ++planAsked;
    const p = await call("POST", "api/plan", planSpec());
    if (asked !== planAsked) return p;
    planInfo(p.frames + " frames from " + p.from + " to " + p.to + ", step " + p.step +
      ", about " + Math.round(p.duration_s) + " s" + (p.optics ? " (" + p.optics + ")" : "") +
      (el("st-direction").value === "far-to-near" ? ", far end first" : ""));
    el("st-plan-info").dataset.frames = p.frames;
    if (refusedFor !== null && startRequest() !== refusedFor) {
      refusedFor = null;
      message("st-run-msg", "", false);
    }
    return p;
  }

  function showMode() {
    const mode = el("st-mode").value;
    for (const [id, m] of [["st-step-l", "step"], ["st-frames-l", "frames"], ["st-mag-l", "optics"], ["st-fnum-l", "optics"]]) {
      el(id).hidden = mode !== m;
    }
  }

  function jogButtons() {
    const steps = units === "steps" ? ["-10steps", "-1steps", "+1steps", "+10steps"]
      : ["-1mm", "-100um", "-10um", "+10um", "+100um", "+1mm"];
    const box = el("st-jog");
    box.replaceChildren();
    for (const s of steps) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = s.replace("um", " µm").replace("mm", " mm").replace("steps", "");
      b.dataset.by = s;
      b.addEventListener("click", () => act(b, async () => {
        const r = await railCall("api/jog", { by: s });
        say("rail at " + r.position + (r.units === "steps" ? " steps" : " µm"));
      }));
      box.appendChild(b);
    }
  }

  // A file to save, or (show) a picture to open in a tab of its own.
  function link(href, text, show) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    if (show) a.target = "_blank";
    else a.setAttribute("download", "");
    return a;
  }

  let listAsked = 0;
  // The list is asked for again when a session starts or ends, or is deleted (from this
  // phone or another one open on the station); a request that failed is asked again until one
  // answers: one lost request left a finished session shown running, without its downloads,
  // until the next session.
  let listError = null;
  function listSessions() {
    clearTimeout(listSessions.retry);
    refreshSessions().then(() => {
      if (listError !== null && el("st-msg").textContent === listError) say("");
      listError = null;
    }).catch((e) => {
      listError = e.message;
      say(e.message, true);
      listSessions.retry = setTimeout(listSessions, LIST_RETRY_MS);
    });
  }

  async function refreshSessions() {
    // Answers can come back out of order (a slow one asked at a session's start after the one
    // asked at its end): only the last one asked is shown.
    const asked = ++listAsked;
    const list = await call("GET", "api/sessions");
    if (asked !== listAsked) return;
    const body = el("st-sessions").tBodies[0];
    // A keyboard's focus on a row's button moves to the same button of the row drawn anew
    // (Resume's row is drawn again when its session starts), or to the list's message line.
    const had = body.contains(document.activeElement) ? document.activeElement : null;
    const keep = had && had.matches(":focus-visible") && {
      id: had.closest("tr").dataset.id, cls: had.className, tag: had.tagName,
    };
    body.replaceChildren();
    for (const s of list) {
      const tr = document.createElement("tr");
      tr.dataset.id = s.id;
      const state = s.running ? "running" : s.frames < s.total ? "interrupted" : "complete";
      tr.dataset.state = state;
      const base = "api/sessions/" + encodeURIComponent(s.id) + "/";
      const thumb = document.createElement("td");
      if (s.composite) {
        const img = document.createElement("img");
        img.className = "thumb";
        img.alt = "composite of " + s.id;
        img.loading = "lazy";
        img.src = base + "thumbnail?v=" + s.modified;
        thumb.append(img);
      }
      const name = document.createElement("td");
      const badge = document.createElement("span");
      badge.className = "badge state";
      badge.dataset.state = state === "complete" ? "finished" : state === "interrupted" ? "stopped" : "running";
      badge.textContent = state;
      name.append(s.id, document.createElement("br"), badge);
      const frames = document.createElement("td");
      frames.className = "frames";
      frames.textContent = s.frames + " / " + s.total;
      const files = document.createElement("td");
      if (s.composite) files.append(link(base + "composite", "composite"), " ");
      // The colour map with its key is the one to look at; the 16-bit PNG (depth in µm,
      // near black on a screen) is data for other programs.
      if (s.depth_preview) files.append(link(base + "depth-preview", "depth map", true), " ");
      if (s.depth) files.append(link(base + "depth", "depth 16-bit"), " ");
      // What the PNG's values mean (offset, µm per count, each frame's place).
      if (s.depth_json) files.append(link(base + "depth-json", "depth scale"), " ");
      if (s.frames) files.append(link(base + "frames.zip", "frames.zip"));
      const act2 = document.createElement("td");
      const acts = document.createElement("div");
      acts.className = "actions"; // Resume and Delete held apart: a thumb aims for one
      act2.append(acts);
      if (!s.running && s.frames < s.total) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = "Resume";
        b.className = "resume";
        b.addEventListener("click", () => act(b, async (say, where) => {
          const since = stateVersion();
          try {
            await call("POST", base + "resume", {});
          } catch (e) {
            // A session shot before the rail restarted and was unlocked counts from another
            // 0: resumed only once the photographer says the rail stayed where it was left.
            if (!e.data || e.data.ask !== "rail_where_left") throw e;
            if (!confirm(e.message + ".\n\nHas the rail stayed where " + s.id +
                         " left it? OK resumes from there.")) throw e;
            await call("POST", base + "resume", { rail_where_left: true });
          }
          say("resuming " + s.id);
          launch(s.id, where, since);
        }));
        acts.append(b);
      }
      if (!s.running && s.spec) {
        const again = document.createElement("button");
        again.type = "button";
        again.textContent = "Plan again";
        again.className = "plan-again";
        again.addEventListener("click", () => act(again, async () => {
          const p = await planAgain(s); // said beside Start, where the page has scrolled to
          message("st-run-msg", "the plan of " + s.id + ": " + p.frames + " frames; Start shoots it");
          el("st-run-msg").focus({ preventScroll: true }); // the keyboard goes on from there
        }));
        acts.append(again);
      }
      if (!s.running) {
        const d = document.createElement("button");
        d.type = "button";
        d.textContent = "Delete";
        d.className = "delete danger-outline";
        d.addEventListener("click", () => act(d, async (say) => {
          if (!confirm("Delete session " + s.id + " and all its frames? This cannot be undone.")) return;
          await call("POST", base + "delete", { confirm: s.id });
          say("deleted " + s.id);
          await refreshSessions();
        }));
        acts.append(d);
      }
      tr.append(thumb, name, frames, files, act2);
      body.appendChild(tr);
    }
    if (keep && focusLost()) {
      const same = [...body.rows].find((r) => r.dataset.id === keep.id);
      const twin = same && [...same.querySelectorAll(keep.tag)].find((e) => e.className === keep.cls);
      (twin && !twin.disabled ? twin : el("st-sess-msg")).focus({ preventScroll: true });
    }
    const shooting = showRunningPlan && list.find((s) => s.id === running && s.spec);
    showRunningPlan = false;
    if (shooting) {
      await planAgain(shooting, false);
      // A page opened mid-session: Stop in sight (on a phone it lay just below the screen).
      el("st-stop").scrollIntoView({ block: "nearest" });
    }
    followRunning();
  }

  // The running session's row counts its frames as the progress panel does, from the state
  // the event stream brings anyway: no request per frame (the list itself is asked for again
  // when a session starts or ends), and no row rebuilt under a finger.
  function followRunning() {
    if (!running || !progress || !progress.total) return;
    const tr = [...el("st-sessions").tBodies[0].rows].find((r) => r.dataset.id === running);
    const cell = tr && tr.querySelector("td.frames");
    if (cell) cell.textContent = progress.captured + " / " + progress.total;
  }

  function build() {
    const panel = stationPanel;
    panel.innerHTML = `
      <div data-msg="st-run-msg">
        <h2>Plan</h2>
        <form id="st-plan" class="grid-form">
          <label>From <input id="st-from" value="0mm"></label>
          <label>To <input id="st-to" value="2mm"></label>
          <label>Spacing <select id="st-mode">
            <option value="step">step</option><option value="frames">frame count</option>
            <option value="optics">depth of field</option></select></label>
          <label id="st-step-l">Step <input id="st-step" value="100um"></label>
          <label id="st-frames-l" hidden>Frames <input id="st-frames" type="number" min="2" value="20"></label>
          <label id="st-mag-l" hidden>Magnification <input id="st-mag" type="number" step="0.1" value="1"></label>
          <label id="st-fnum-l" hidden>f-number <input id="st-fnum" type="number" step="0.1" value="8"></label>
          <label>Settle (s) <input id="st-settle" type="number" step="0.1" min="0" value="0.5"></label>
          <label>Name <input id="st-name" placeholder="automatic"></label>
          <label>Format <select id="st-format"><option>tif</option><option>png</option><option>jpg</option></select></label>
          <details id="st-timing"><summary>Order and delays</summary><div class="grid-form">
            <label>Order <select id="st-direction"><option value="near-to-far">near end first</option>
              <option value="far-to-near">far end first</option></select></label>
            <label title="Extra wait after the settle, before the shutter (mirror up)">Exposure delay (s)
              <input id="st-exposure-delay" type="number" step="0.1" min="0" value="0"></label>
            <label title="Shortest time between two shutter releases (flash recharge)">Flash recycle (s)
              <input id="st-flash-recycle" type="number" step="0.1" min="0" value="0"></label>
            <label class="check"><input id="st-return" type="checkbox" checked> Back to the start after</label>
          </div></details>
        </form>
        <p id="st-plan-info" class="message" role="status" tabindex="-1"></p>
        <div class="row">
          <button type="button" id="st-check">Check plan</button>
          <button type="button" id="st-start" class="primary">Start</button>
          <button type="button" id="st-stop" class="danger" disabled>Stop</button>
        </div>
        <p id="st-run-msg" class="message" role="status" tabindex="-1"></p>
      </div>
      <div>
        <h2>Rail</h2>
        <div class="row" id="st-jog"></div>
        <div class="row ends">
          <button type="button" id="st-set-near">Set near</button>
          <button type="button" id="st-go-near">Go to near</button>
          <button type="button" id="st-set-far">Set far</button>
          <button type="button" id="st-go-far">Go to far</button>
        </div>
        <div class="row"><button type="button" id="st-shot">Test shot</button>
          <button type="button" id="st-home" title="Run the homing cycle">Home</button>
          <button type="button" id="st-unlock" title="Clear the controller's alarm, keeping the position">Unlock</button></div>
      </div>
      <p id="st-msg" class="message" role="status" tabindex="-1"></p>
      <div data-msg="st-sess-msg">
        <h2>Sessions</h2>
        <p id="st-sess-msg" class="message" role="status" tabindex="-1"></p>
        <div class="table-wrap"><table id="st-sessions">
          <thead><tr><th><span class="visually-hidden">Thumbnail</span></th><th>Session</th><th>Frames</th><th>Download</th><th><span class="visually-hidden">Actions</span></th></tr></thead>
          <tbody></tbody></table></div>
      </div>`;
    el("st-mode").addEventListener("change", showMode);
    el("st-check").addEventListener("click", (ev) => act(ev.target, checkPlan));
    // The plan follows the form: any change recomputes it (after a short pause in typing).
    let timer = 0;
    el("st-plan").addEventListener("input", (ev) => {
      showRunningPlan = false;
      clearTimeout(timer);
      timer = setTimeout(() => checkPlan().catch((e) => planInfo(e.message, true)), 300);
    });
    for (const [end, field] of [["near", "st-from"], ["far", "st-to"]]) {
      el("st-set-" + end).addEventListener("click", (ev) => act(ev.target, async () => {
        const st = await call("GET", "api/station");
        if (st.rail.position === null) throw new Error("the rail does not report its position");
        el(field).value = lengthText(st.rail.position);
        say(end + " end set at " + el(field).value);
        await checkPlan().catch((e) => planInfo(e.message, true));
      }));
      el("st-go-" + end).addEventListener("click", (ev) => act(ev.target, async () => {
        const r = await railCall("api/jog", { to: el(field).value });
        say("rail at the " + end + " end: " + lengthText(r.position));
      }));
    }
    el("st-start").addEventListener("click", (ev) => act(ev.target, async (say, where) => {
      const since = stateVersion();
      const asked = startRequest();
      let r;
      try {
        r = await call("POST", "api/sessions", {
          plan: planSpec(), name: el("st-name").value, format: el("st-format").value,
        });
      } catch (e) {
        refusedFor = asked;
        throw e;
      }
      refusedFor = null;
      say("started " + r.id + ": " + r.plan.frames + " frames");
      launch(r.id, where, since);
    }));
    el("st-stop").addEventListener("click", (ev) => act(ev.target, async (say) => {
      if (!running) {
        const r = await call("POST", "api/rail/stop", {});
        say(r.stopped ? "rail stopped (" + r.stopped + ")" : "the rail was not moving");
        return;
      }
      const id = running;
      await call("POST", "api/sessions/" + encodeURIComponent(id) + "/stop", {});
      // Said until the session has stopped (see the state handler); an answer that comes
      // after it did says so at once.
      if (running === id) {
        stopping = id;
        say("stopping " + id + " after this frame");
      } else {
        say(id + " stopped");
      }
    }));
    el("st-shot").addEventListener("click", (ev) => act(ev.target, async () => {
      const r = await call("POST", "api/test-shot", {});
      say("test shot " + r.width + "×" + r.height + " (shown as the last frame)");
    }));
    for (const [id, what] of [["st-home", "home"], ["st-unlock", "unlock"]]) {
      el(id).addEventListener("click", (ev) => act(ev.target, async () => {
        const r = what === "home" ? await railCall("api/home", {}) : await call("POST", "api/unlock", {});
        say((what === "home" ? "homed" : "unlocked") + ": rail at " + r.position +
          (r.units === "steps" ? " steps" : " µm"));
      }));
    }
    panel.hidden = false;
    built = true;
  }

  document.addEventListener("stackrig:state", (ev) => {
    const st = ev.detail.station;
    if (!st) return;
    if (!built) build();
    if (st.units !== units || !el("st-jog").childElementCount) {
      units = st.units;
      if (units === "steps") {
        el("st-from").value = "0steps"; el("st-to").value = "40steps"; el("st-step").value = "2steps";
      }
      jogButtons();
      // The summary (frames, step, duration) shows the form's plan from the start, not only
      // once a field has been edited.
      checkPlan().catch((e) => planInfo(e.message, true));
    }
    lastState = ev.detail;
    sayHowItEnded();
    if (stopping && st.running !== stopping) {
      // "stopping after this frame" stood under Start through a resume and its end.
      message("st-run-msg", stopping + " stopped");
      stopping = null;
    }
    if (st.running !== running || st.deleted !== deleted) {
      if (running === undefined && st.running) showRunningPlan = true; // the page's first state
      running = st.running;
      deleted = st.deleted;
      showRunning();
      document.body.dataset.running = running || "";
      listSessions();
    }
    if ((st.moving || null) !== moving) {
      moving = st.moving || null;
      showRunning();
    }
    progress = ev.detail.progress;
    followRunning();
  });
})();
