/* Hub admin: small progressive enhancements. Every page works without this file;
   with it, segment rules are checked as you type and templates preview as you edit. */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  function post(url, body, isJson) {
    var headers = { "X-CSRFToken": csrfToken(), "Accept": "application/json" };
    if (isJson) headers["Content-Type"] = "application/json";
    return fetch(url, {
      method: "POST", headers: headers, credentials: "same-origin",
      body: isJson ? JSON.stringify(body) : body
    }).then(function (r) { return r.json(); });
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Forms that cannot be undone ask first.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // Segment editor: check the rule and count the matches while typing.
  function segmentEditor() {
    var form = document.getElementById("segment-form");
    if (!form || !form.dataset.checkUrl) return;
    var area = document.getElementById("document");
    var out = document.getElementById("check-result");
    var seq = 0;
    var check = debounce(function () {
      var mine = ++seq;
      out.setAttribute("data-state", "checking");
      post(form.dataset.checkUrl, { document: area.value }, true).then(function (answer) {
        if (mine !== seq) return;
        out.textContent = "";
        if (answer.ok) {
          var p = el("p", "ok");
          p.id = "live-count";
          p.textContent = "✓ " + answer.name + ": " + answer.summary;  // worded by the server, in the reader's language
          out.appendChild(p);
        } else {
          var list = el("ul", "problems");
          (answer.problems || [answer.error || form.dataset.cannotCheck]).forEach(function (problem) {
            list.appendChild(el("li", "error", problem));
          });
          out.appendChild(list);
        }
        out.setAttribute("data-state", answer.ok ? "ok" : "problems");
      }).catch(function () {
        if (mine === seq) out.setAttribute("data-state", "offline");
      });
    }, 300);
    area.addEventListener("input", check);
    check();
  }

  // Template editor: preview what is being typed, for the chosen contact.
  function templateEditor() {
    var form = document.getElementById("template-form");
    if (!form) return;
    var channel = form.querySelector('[name="channel"]');
    function showParts() {
      var email = !channel || channel.value === "email";
      document.querySelectorAll(".email-only").forEach(function (node) { node.hidden = !email; });
    }
    if (channel) channel.addEventListener("change", showParts);
    showParts();
    if (!form.dataset.previewUrl) return;
    var contact = document.getElementById("preview-contact");
    var seq = 0;
    function render() {
      var mine = ++seq;
      var data = new FormData(form);
      if (contact && contact.value) data.set("contact", contact.value);
      post(form.dataset.previewUrl, data, false).then(function (answer) {
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
        document.getElementById("preview-parts").textContent =
          answer.sms_parts ? answer.parts_text : "";
        var frame = document.getElementById("preview-html");
        frame.hidden = !answer.html;
        frame.srcdoc = answer.html || "";
        showParts();
      });
    }
    var later = debounce(render, 400);
    form.addEventListener("input", later);
    var previewForm = document.getElementById("preview-contact-form");
    if (previewForm) {
      previewForm.addEventListener("submit", function (event) {
        event.preventDefault();
        render();
      });
    }
  }

  // Charts: a <canvas data-chart="bar"> with its data in <script type="application/json" id="ID-data">.
  function charts() {
    if (typeof window.Chart === "undefined") return;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.id + "-data");
      if (!source) return;
      var data = JSON.parse(source.textContent);
      var chart = new window.Chart(canvas, {
        type: canvas.dataset.chart,
        data: {
          labels: data.labels,
          datasets: (data.datasets || [{ label: canvas.dataset.label || "", data: data.values }]).map(function (d, i) {
            d.backgroundColor = d.backgroundColor || ["#3b6ea5", "#c7a14a", "#5b8c5a", "#a35d6a"][i % 4];
            return d;
          })
        },
        options: {
          responsive: true, maintainAspectRatio: false, animation: false,
          plugins: { legend: { display: !!data.datasets } },
          scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }
        }
      });
      canvas.setAttribute("data-rendered", String(chart.data.labels.length));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    segmentEditor();
    templateEditor();
    charts();
  });
})();
