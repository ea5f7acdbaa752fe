// The portal's own script (no inline scripts: the pages' CSP forbids them).
// - <time datetime> elements are shown in the browser's time zone and the page's language.
// - A "select all" checkbox (data-select-all="NAME") toggles the checkboxes named NAME.
// - A button with data-copy="ID" copies the text of the element ID.
(function () {
  "use strict";
  function localTimes(root) {
    var lang = document.documentElement.lang || "en";
    var fmt = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "medium", hour12: false });
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.local) return;
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      el.title = el.textContent;
      el.textContent = fmt.format(d);
      el.dataset.local = "1";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:load", function (e) { localTimes(e.target); });
  document.addEventListener("htmx:afterSwap", function (e) { localTimes(e.target); });
  document.addEventListener("htmx:sseMessage", function (e) { localTimes(e.target); });
  document.addEventListener("change", function (e) {
    var name = e.target.dataset && e.target.dataset.selectAll;
    if (!name) return;
    document.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (c) {
      c.checked = e.target.checked;
    });
  });
  document.addEventListener("click", function (e) {
    var id = e.target.dataset && e.target.dataset.copy;
    if (!id) return;
    var el = document.getElementById(id);
    if (el && navigator.clipboard) navigator.clipboard.writeText(el.textContent.trim());
  });
})();
