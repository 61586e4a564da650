// certops dashboard: progressive enhancement only. Every page works
// without this script; with it, times show in the reader's time zone,
// relative times stay current, and "/" focuses the search box.
"use strict";

(function () {
  function rel(ms) {
    const future = ms >= 0;
    let s = Math.floor(Math.abs(ms) / 1000);
    let out;
    if (s < 60) out = s + "s";
    else if (s < 3600) out = Math.floor(s / 60) + "m";
    else if (s < 86400) out = Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    else out = Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
    return future ? "in " + out : out + " ago";
  }

  function refreshTimes() {
    const now = Date.now();
    document.querySelectorAll("main time[datetime]").forEach(function (el) {
      const t = Date.parse(el.getAttribute("datetime"));
      if (isNaN(t)) return;
      el.textContent = rel(t - now);
      el.title = new Date(t).toLocaleString();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("js");
    refreshTimes();
    setInterval(refreshTimes, 30000);
  });

  document.addEventListener("keydown", function (e) {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = document.activeElement && document.activeElement.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA") return;
    const box = document.querySelector("input[data-search]");
    if (box) {
      e.preventDefault();
      box.focus();
      box.select();
    }
  });
})();
