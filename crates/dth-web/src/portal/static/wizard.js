// The wizards' script (no inline scripts: the pages' CSP forbids them).
// - An element with data-when="NAME=VALUE" is shown only while the radio group or select NAME
//   has VALUE (the server renders the same state; this keeps it as the user clicks).
// - A file input with data-fill="ID" reads the chosen text file into the textarea ID.
// - After a step is answered with messages, the first field at fault gets the focus.
(function () {
  "use strict";
  function valueOf(form, name) {
    var checked = form.querySelector('input[type=radio][name="' + name + '"]:checked');
    if (checked) return checked.value;
    var el = form.querySelector('select[name="' + name + '"]');
    return el ? el.value : null;
  }
  function sync(root) {
    root.querySelectorAll("form.wizard").forEach(function (form) {
      form.querySelectorAll("[data-when]").forEach(function (el) {
        var rule = el.dataset.when, at = rule.indexOf("=");
        el.hidden = valueOf(form, rule.slice(0, at)) !== rule.slice(at + 1);
      });
    });
  }
  function focusFault(root) {
    var bad = root.querySelector("form.wizard fieldset.step:not([hidden]) [aria-invalid=true]");
    if (bad) bad.focus();
  }
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.closest && t.closest("form.wizard")) sync(document);
    if (t.dataset && t.dataset.fill && t.files && t.files[0]) {
      var area = document.getElementById(t.dataset.fill);
      var reader = new FileReader();
      reader.onload = function () {
        if (!area) return;
        area.value = String(reader.result).replace(/\r\n?/g, "\n");
        area.dispatchEvent(new Event("input", { bubbles: true }));
      };
      reader.readAsText(t.files[0]);
    }
  });
  function ready(root) { sync(root); focusFault(root); }
  document.addEventListener("DOMContentLoaded", function () { ready(document); });
  document.addEventListener("htmx:afterSettle", function (e) {
    if (e.target && e.target.querySelector && e.target.querySelector("form.wizard")) ready(e.target);
    else sync(document);
  });
})();
