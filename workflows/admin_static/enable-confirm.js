/* Hub admin: the switch-on confirmation (workflows/trial_admin.py). A marketer who may not switch a large
   workflow on gets this page's link to pass to an administrator; the button copies it. Without this file
   the link is still there to select and copy by hand. */
(function () {
  "use strict";

  function copied(button) {
    var before = button.textContent;
    button.textContent = button.getAttribute("data-copied") || before;
    window.setTimeout(function () { button.textContent = before; }, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var field = document.getElementById(button.getAttribute("data-copy"));
      if (!field) return;
      field.addEventListener("focus", function () { field.select(); });
      button.addEventListener("click", function () {
        field.focus();
        field.select();
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(field.value).then(function () { copied(button); },
                                                          function () { document.execCommand("copy"); copied(button); });
        } else {
          document.execCommand("copy");
          copied(button);
        }
      });
    });
  });
})();
