/* Hub admin: small progressive enhancements. Every page works without this file;
   with it, templates preview as you edit and charts are drawn. */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // fn runs once typing pauses for ms, with the arguments of the last call.
  function debounce(fn, ms) {
    var timer = null;
    return function () {
      var args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, ms);
    };
  }

  // A POST with the CSRF token, answered in JSON: a FormData body as a form, anything else as JSON.
  function post(url, body) {
    var headers = { "X-CSRFToken": csrfToken(), "Accept": "application/json" };
    var isForm = body instanceof FormData;
    if (!isForm) headers["Content-Type"] = "application/json";
    return fetch(url, {
      method: "POST", headers: headers, credentials: "same-origin",
      body: isForm ? body : JSON.stringify(body)
    }).then(function (r) { return r.json(); });
  }

  // A new element with its class and text (never HTML: whatever a person typed stays text).
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // A button that does onClick and nothing else (no form submit); `title` is also its accessible name.
  function button(cls, text, title, onClick) {
    var b = el("button", cls, text);
    b.type = "button";
    if (title) { b.title = title; b.setAttribute("aria-label", title); }
    b.addEventListener("click", function (event) { event.preventDefault(); onClick(event); });
    return b;
  }

  // What the page scripts (segment-builder.js, rule-builder.js, workflow-builder.js, …) share; hub.js loads before them.
  window.Hub = { csrfToken: csrfToken, debounce: debounce, post: post, el: el, button: button };

  // Forms that cannot be undone ask first.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // The segment editor (checked as it is typed, with the visual rule builder) is static/segment-builder.js.

  // The template editor has its own file: template-editor.js.

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
    charts();
  });
})();
