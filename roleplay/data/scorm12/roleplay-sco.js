/* roleplay SCORM 1.2 SCO.
 *
 * Finds the LMS's SCORM 1.2 `API` object (walking up parent frames, then the opener's), starts the lesson, opens the
 * roleplay practice in a window of its own and, once the learner has linked the course to their roleplay account
 * there, asks roleplay for their *approved* result of this scenario and reports it to the LMS:
 * cmi.core.lesson_status (incomplete while practising; passed / failed, or completed, once a facilitator approved),
 * cmi.core.score.raw / min / max (0..100).
 *
 * The link is a signed, expiring token that roleplay hands to this window with postMessage (only to this window's
 * origin); it is kept in cmi.suspend_data so the next launch of the course needs no new link.
 */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("roleplay-package").textContent);
  var appOrigin = new URL(config.app).origin;
  var api = null;
  var student = "";
  var studentName = "";
  var token = null;
  var reported = "";
  var reportedScore = "";
  var finished = false;
  var timer = null;
  var startedAt = new Date();

  function byId(id) { return document.getElementById(id); }

  function say(text) { byId("status").textContent = text; }

  /* The standard SCORM 1.2 discovery: the nearest window up the frame chain that has `API` (ADL's FindAPI). */
  function findAPI(win) {
    var tries = 0;
    try {
      while (!win.API && win.parent && win.parent !== win) {
        tries += 1;
        if (tries > 10) { return null; }
        win = win.parent;
      }
      return win.API || null;
    } catch (err) {
      return null;  /* a window of another origin on the way up: no API reachable there */
    }
  }

  function getAPI() {
    var found = findAPI(window);
    if (!found && window.opener) { found = findAPI(window.opener); }
    return found;
  }

  function get(name) { return String(api.LMSGetValue(name)); }

  function set(name, value) { return String(api.LMSSetValue(name, String(value))) === "true"; }

  function commit() { api.LMSCommit(""); }

  function savedToken() {
    try {
      var data = JSON.parse(get("cmi.suspend_data") || "{}");
      return data && typeof data.roleplay === "string" ? data.roleplay : null;
    } catch (err) {
      return null;
    }
  }

  function keepToken(value) {
    token = value;
    set("cmi.suspend_data", value ? JSON.stringify({ roleplay: value }) : "");
    commit();
  }

  function linkUrl() {
    var query = new URLSearchParams({ package: config.package, student: student, name: studentName,
                                      origin: window.location.origin });
    return config.app + "scorm/link?" + query.toString();
  }

  function openPractice() {
    var url = linkUrl();
    var win = window.open(url, "roleplay-practice");
    if (!win) {
      var fallback = byId("fallback");
      fallback.href = url;
      fallback.hidden = false;
      say("Your browser blocked the new window: use the link below to open the practice.");
    }
  }

  function pad(n, width) { var s = String(n); while (s.length < width) { s = "0" + s; } return s; }

  /* CMITimespan, HHHH:MM:SS.SS */
  function sessionTime() {
    var seconds = Math.max(0, (new Date() - startedAt) / 1000);
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    return pad(h, 2) + ":" + pad(m, 2) + ":" + pad(s.toFixed(2), 5);
  }

  function finish() {
    if (finished || !api) { return; }
    finished = true;
    clearTimeout(timer);
    set("cmi.core.session_time", sessionTime());
    set("cmi.core.exit", reported === "passed" || reported === "completed" ? "" : "suspend");
    commit();
    api.LMSFinish("");
  }

  function report(result) {
    if (!result.approved) {
      say("No approved result yet: practise, then wait for a facilitator to approve your feedback; this page "
          + "updates itself.");
      return;
    }
    if (result.status !== reported || String(result.score) !== reportedScore) {
      set("cmi.core.score.min", 0);
      set("cmi.core.score.max", 100);
      set("cmi.core.score.raw", result.score);
      set("cmi.core.lesson_status", result.status);
      commit();
      reported = result.status;
      reportedScore = String(result.score);
    }
    say("Approved result: " + result.status + ", score " + result.score + " of 100.");
    if (result.status !== "failed") { finish(); }
  }

  function schedule() {
    if (!finished && token) { timer = setTimeout(poll, config.poll * 1000); }
  }

  function poll() {
    clearTimeout(timer);
    if (finished || !token) { return; }
    var query = new URLSearchParams({ package: config.package, student: student });
    fetch(config.app + "scorm/result?" + query.toString(), {
      headers: { Authorization: "Bearer " + token }, credentials: "omit", cache: "no-store"
    }).then(function (response) {
      if (response.status === 401) {
        keepToken(null);
        byId("open").disabled = false;
        say("The link to roleplay has expired: open the practice again to renew it.");
        return null;
      }
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    }).then(function (result) {
      if (result) { report(result); }
    }).catch(function () {
      say("roleplay cannot be reached just now; trying again shortly.");
    }).then(schedule);
  }

  function linked(value) {
    if (typeof value !== "string" || !value || value.length > 2048) { return; }
    keepToken(value);
    say("Linked to roleplay. Practise there; your result appears here once a facilitator approves it.");
    poll();
  }

  window.addEventListener("message", function (event) {
    var data = event.data || {};
    if (event.origin !== appOrigin || data.type !== "roleplay-scorm-link" || data.package !== config.package) {
      return;
    }
    linked(data.token);
  });

  function start() {
    api = getAPI();
    if (!api) {
      say("This practice reports to your course, so open it from your LMS (no SCORM 1.2 API was found here).");
      return;
    }
    if (String(api.LMSInitialize("")) !== "true") {
      say("Your LMS did not start this lesson (error " + api.LMSGetLastError() + "); close it and launch it again.");
      api = null;
      return;
    }
    student = get("cmi.core.student_id");
    studentName = get("cmi.core.student_name");
    var status = get("cmi.core.lesson_status");
    if (status === "" || status === "not attempted" || status === "browsed") {
      set("cmi.core.lesson_status", "incomplete");
      commit();
    }
    byId("open").disabled = false;
    byId("open").addEventListener("click", openPractice);
    byId("paste-form").addEventListener("submit", function (event) {
      event.preventDefault();
      linked(byId("paste").value.trim());
    });
    token = savedToken();
    if (token) {
      say("Checking roleplay for your approved result...");
      poll();
    } else {
      say("Open the practice, sign in to roleplay and link this course; your result appears here once a "
          + "facilitator approves it.");
    }
  }

  window.addEventListener("pagehide", finish);
  window.addEventListener("beforeunload", finish);
  start();
}());
