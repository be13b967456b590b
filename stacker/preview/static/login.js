// stackrig: the access-token login of a page served to other machines (the rig station, or a
// live preview listening beyond loopback). It sets window.previewGate, which app.js awaits.
"use strict";

(() => {
  const el = (id) => document.getElementById(id);
  const loginPanel = document.createElement("section");
  loginPanel.id = "login";
  loginPanel.hidden = true;
  loginPanel.setAttribute("aria-label", "access token");
  el("progress-panel").after(loginPanel);
  loginPanel.innerHTML = `
    <form id="login-form">
      <label for="login-token">This page needs its access token (printed when it started):</label>
      <div class="row">
        <input id="login-token" type="password" autocomplete="current-password" required
               aria-describedby="login-error">
        <button type="submit">Open</button>
      </div>
      <p id="login-error" class="message error" role="alert"></p>
    </form>`;

  // Said in the token field's alert line, the field marked as refused for a screen reader.
  function refuse(text) {
    el("login-error").textContent = text;
    el("login-token").setAttribute("aria-invalid", "true");
  }

  // The page is opened as http://host:8000/#token=...: the fragment never reaches the
  // server; it is exchanged once for an HttpOnly cookie.
  async function login(token) {
    const r = await fetch("api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
    });
    return r.ok;
  }

  // The preview page (app.js) connects once this resolves to true.
  window.previewGate = (async () => {
    const m = location.hash.match(/token=([^&]+)/);
    let refused = false;
    if (m) {
      refused = !(await login(decodeURIComponent(m[1])));
      history.replaceState(null, "", location.pathname + location.search);
    }
    const probe = await fetch("api/state");
    if (probe.status === 401 || probe.status === 403) {
      // The link's own token refused: an old link, or one from before the token changed.
      if (refused) {
        refuse("The link's token was not accepted: it is not this page's (an old link?). " +
          "Type the token the station printed, or open its new link.");
      }
      loginPanel.hidden = false;
      return false;
    }
    return true;
  })();

  el("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (await login(el("login-token").value.trim())) location.reload();
    else refuse("That is not this page's token.");
  });
})();
