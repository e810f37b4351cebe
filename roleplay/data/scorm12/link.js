/* The roleplay side of linking a SCORM course: sign in (the app's own sign-in), then hand the course window a
 * signed token for this learner, only to the origin the course window has. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("roleplay-link").textContent);

  function byId(id) { return document.getElementById(id); }

  function say(text) { byId("message").textContent = text; }

  var signin = byId("signin");
  if (signin) {
    byId("signin-button").disabled = false;  /* only once the form signs in here: never a native submit */
    signin.addEventListener("submit", function (event) {
      event.preventDefault();
      say("Signing in...");
      fetch("../login", {
        method: "POST", credentials: "same-origin",
        body: new URLSearchParams({ username: byId("username").value, password: byId("password").value })
      }).then(function (response) {
        if (response.ok) { window.location.reload(); return null; }
        return response.json().catch(function () { return {}; }).then(function (body) {
          say(response.status === 429 && body.detail ? body.detail : "Wrong username or password.");
        });
      }).catch(function () { say("roleplay cannot be reached just now; try again."); });
    });
  }

  var signout = byId("signout");
  if (signout) {
    signout.addEventListener("click", function () {
      fetch("../logout", { credentials: "same-origin" }).then(function () { window.location.reload(); });
    });
  }

  var link = byId("link");
  if (link) {
    link.addEventListener("click", function () {
      link.disabled = true;
      say("Linking...");
      fetch("link", {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ package: data.package, student: data.student, origin: data.origin })
      }).then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) { throw new Error(body.error || ("HTTP " + response.status)); }
          return body;
        });
      }).then(function (body) {
        if (window.opener && !window.opener.closed) {
          window.opener.postMessage({ type: "roleplay-scorm-link", package: data.package, token: body.token },
                                    data.origin);
          say("Linked. Opening the practice...");
          window.setTimeout(function () { window.location.href = data.practice; }, 600);
        } else {
          byId("code").textContent = body.token;
          byId("code-box").hidden = false;
          say("This window lost touch with your course: copy the link code below into the course page.");
        }
      }).catch(function (err) {
        link.disabled = false;
        say(String(err.message || err));
      });
    });
  }
}());
