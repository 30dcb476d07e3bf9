/* Template editor (hub/admin/message_templates.py): preview what is typed, insert variables at the cursor,
   send a test of the unsaved text, show the letter at phone or desktop width.
   The page works without this file: the forms post and the server answers with the page. */
(function () {
  "use strict";

  var debounce = window.Hub.debounce;
  var post = window.Hub.post;

  function showParts(channel) {
    var email = !channel || channel.value === "email";
    document.querySelectorAll(".email-only").forEach(function (node) { node.hidden = !email; });
  }

  // Width of the letter's frame: a phone (375 px) or a desktop mail client (800 px).
  function widths() {
    var frame = document.getElementById("preview-html");
    var buttons = document.querySelectorAll("#preview-widths button[data-width]");
    buttons.forEach(function (button) {
      button.addEventListener("click", function () {
        buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b === button)); });
        frame.classList.remove("phone", "desktop");
        frame.classList.add(button.dataset.width);
      });
    });
  }

  // The text field the cursor was last in: variables go there (the text part until another is chosen).
  // A ready block (button, promo code) is HTML: it goes into the HTML part, where its cursor was left.
  function variables(form) {
    var fields = ["subject", "text", "html"].map(function (name) { return form.querySelector('[name="' + name + '"]'); })
      .filter(function (f) { return f; });
    var target = form.querySelector('[name="text"]');
    fields.forEach(function (field) {
      field.addEventListener("focus", function () { target = field; });
    });
    document.querySelectorAll("button.variable[data-insert]").forEach(function (button) {
      button.addEventListener("click", function () {
        var part = button.dataset.part ? form.querySelector('[name="' + button.dataset.part + '"]') : null;
        if (part && part !== target) target = part;
        if (!target || target.readOnly) return;
        var snippet = button.dataset.insert;
        var start = target.selectionStart === null ? target.value.length : target.selectionStart;
        var end = target.selectionEnd === null ? start : target.selectionEnd;
        target.value = target.value.slice(0, start) + snippet + target.value.slice(end);
        target.focus();
        target.setSelectionRange(start + snippet.length, start + snippet.length);
        target.dispatchEvent(new Event("input", { bubbles: true }));
      });
    });
  }

  function templateEditor() {
    var form = document.getElementById("template-form");
    if (!form) return;
    var channel = form.querySelector('[name="channel"]');
    if (channel) channel.addEventListener("change", function () { showParts(channel); });
    showParts(channel);
    widths();
    if (!form.dataset.previewUrl) return;
    variables(form);
    var contact = document.getElementById("preview-contact");
    var seq = 0;

    function formData() {
      var data = new FormData(form);
      if (contact && contact.value) data.set("contact", contact.value);
      return data;
    }

    function render() {
      var mine = ++seq;
      post(form.dataset.previewUrl, formData()).then(function (answer) {
        if (mine !== seq) return;
        var error = document.getElementById("preview-error");
        var body = document.getElementById("preview-body");
        document.getElementById("preview-for").textContent = answer["for"] || "";
        if (answer.error) {
          error.textContent = answer.error;
          error.hidden = false;
          body.hidden = true;
          return;
        }
        error.hidden = true;
        body.hidden = false;
        document.getElementById("preview-subject").textContent = answer.subject || "";
        document.getElementById("preview-text").textContent = answer.text || "";
        var title = document.getElementById("preview-text-title");
        title.textContent = answer.text_generated ? title.dataset.generated : title.dataset.written;
        document.getElementById("preview-parts").textContent = answer.sms_parts ? answer.parts_text : "";
        document.getElementById("preview-sms-cost").textContent = answer.sms_parts ? answer.sms_cost_text : "";
        var frame = document.getElementById("preview-html");
        frame.hidden = !answer.frame_url;
        if (answer.frame_url) frame.src = answer.frame_url;
        showParts(channel);
      });
    }
    form.addEventListener("input", debounce(render, 400));
    var previewForm = document.getElementById("preview-contact-form");
    if (previewForm) {
      previewForm.addEventListener("submit", function (event) {
        event.preventDefault();
        render();
      });
    }

    var testButton = document.getElementById("test-send-button");
    var result = document.getElementById("test-result");
    if (testButton && result) {
      testButton.addEventListener("click", function (event) {
        event.preventDefault();
        testButton.disabled = true;
        result.hidden = false;
        result.className = "";
        result.textContent = "…";
        post(testButton.getAttribute("formaction"), formData()).then(function (answer) {
          result.className = answer.error ? "error" : "ok";
          result.textContent = answer.error || answer.message;
        }).catch(function () {
          result.className = "error";
          result.textContent = testButton.dataset.offline || "";
        }).then(function () { testButton.disabled = false; });
      });
    }
  }

  document.addEventListener("DOMContentLoaded", templateEditor);
})();
