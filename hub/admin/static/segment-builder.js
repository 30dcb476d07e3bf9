/* Hub admin: the segment editor. The YAML text box works without this file; with it, the rule is
   checked and counted while it is typed, and a visual builder beside the text edits the same
   document. The server reads the text into the builder's tree (/segments/check with "model")
   and writes a changed tree back as YAML (/segments/write): the browser needs no YAML parser,
   and both forms stay one document. Parts the builder cannot show as a form stay text nodes,
   written back exactly as they were. The rule itself is drawn and edited by Hub.RuleEditor
   (rule-builder.js); this file is the page around it: the name, title and description, the
   text box and the live count. */
(function () {
  "use strict";

  var debounce = window.Hub.debounce;
  var postJson = window.Hub.post;

  var el = window.Hub.el;

  function SegmentEditor(form, data) {
    var self = this;
    this.form = form;
    this.area = document.getElementById("document");
    this.out = document.getElementById("check-result");
    this.root = document.getElementById("segment-builder");
    this.t = data.texts || {};
    this.tree = data.model;
    this.readonly = !form.dataset.checkUrl || !!this.root.dataset.readonly;
    this.seq = 0;
    this.treeBox = el("div", "builder-tree");
    this.rule = new window.Hub.RuleEditor(this.treeBox, {
      catalog: data.catalog,
      texts: this.t,
      segments: data.segments || [],
      suggestUrl: form.dataset.suggestUrl,
      path: "rule",
      readonly: this.readonly,
      onChange: function () { self.ruleChanged(); }
    });
    this.rule.setHints(data.hints);
  }

  // --- talking to the server ------------------------------------------------------------------

  // `redraw`: the text was edited, so the builder is drawn again from the server's reading of it.
  SegmentEditor.prototype.checkText = function (redraw) {
    var self = this, mine = ++this.seq;
    this.out.setAttribute("data-state", "checking");
    postJson(this.form.dataset.checkUrl, { document: this.area.value, model: !!redraw }).then(function (answer) {
      if (mine !== self.seq) return;
      if (answer.model !== undefined) {
        self.tree = answer.model;
        self.rule.setHints(answer.hints);
        self.render();
      }
      self.showAnswer(answer);
    }).catch(function () { if (mine === self.seq) self.out.setAttribute("data-state", "offline"); });
  };

  SegmentEditor.prototype.writeTree = function () {
    var self = this, mine = ++this.seq;
    this.out.setAttribute("data-state", "checking");
    postJson(this.form.dataset.writeUrl, { model: this.tree }).then(function (answer) {
      if (mine !== self.seq) return;
      if (typeof answer.document === "string") self.area.value = answer.document;
      self.rule.setHints(answer.hints || {});
      self.showAnswer(answer);
    }).catch(function () { if (mine === self.seq) self.out.setAttribute("data-state", "offline"); });
  };

  // The rule editor changed the rule (perhaps replaced it whole: a lone condition became a group).
  SegmentEditor.prototype.ruleChanged = function () {
    var rule = this.rule.getRule();
    if (rule === undefined) delete this.tree.rule;
    else this.tree.rule = rule;
    this.changed();
  };

  // The tree changed (the rule editor has drawn its part again already): write it back as text, checked.
  SegmentEditor.prototype.changed = function () {
    if (!this.readonly) this.writeLater();
  };

  SegmentEditor.prototype.showAnswer = function (answer) {
    this.out.textContent = "";
    this.root.querySelectorAll(".builder-head .node-problems").forEach(function (slot) { slot.textContent = ""; });
    this.root.querySelectorAll(".builder-head .invalid").forEach(function (n) { n.classList.remove("invalid"); });
    this.root.querySelectorAll(".builder-head .has-problem").forEach(function (n) { n.classList.remove("has-problem"); });
    this.rule.clearProblems();
    if (answer.ok) {
      var p = el("p", "ok");
      p.id = "live-count";
      p.textContent = "✓ " + answer.name + ": " + answer.summary;  // worded by the server, in the reader's language
      this.out.appendChild(p);
    } else {
      var self = this;
      (answer.problems || []).forEach(function (problem) { self.placeProblem(problem); });
      var list = el("ul", "problems");
      (answer.problems || [answer.error || this.form.dataset.cannotCheck]).forEach(function (problem) {
        list.appendChild(el("li", "error", problem));
      });
      this.out.appendChild(list);
    }
    this.out.setAttribute("data-state", answer.ok ? "ok" : "problems");
  };

  // A problem about the rule goes next to its node (the rule editor places it); "name: …" beside the name.
  SegmentEditor.prototype.placeProblem = function (problem) {
    if (this.rule.placeProblem(problem)) return true;
    var m = /^(name|title|description)((?:\.[a-z_]+|\[\d+\])*): /.exec(problem);
    if (!m) return false;
    var field = this.root.querySelector('.builder-head [data-path="' + m[1] + '"]');
    if (!field) return false;
    var detail = problem.slice(m[0].length);
    field.querySelector(":scope > .node-problems")
      .appendChild(el("li", "error", detail.charAt(0).toUpperCase() + detail.slice(1)));
    field.classList.add("has-problem");
    return true;
  };

  // --- drawing ----------------------------------------------------------------------------------

  SegmentEditor.prototype.render = function () {
    var root = this.root;
    root.textContent = "";
    root.hidden = false;
    root.appendChild(el("h2", null, this.t.heading));
    if (this.readonly) root.appendChild(el("p", "hint", this.t.readonly));
    if (!this.tree) {
      root.appendChild(el("p", "hint builder-broken", this.t.not_segment));
      return;
    }
    root.appendChild(this.header());
    root.appendChild(this.treeBox);
    this.rule.setRule(this.tree.rule);
    if (this.readonly) {
      root.querySelectorAll("input, select, textarea, button").forEach(function (c) { c.disabled = true; });
    }
  };

  SegmentEditor.prototype.header = function () {
    var self = this, box = el("div", "builder-head");
    ["name", "title", "description"].forEach(function (key) {
      var label = el("label", "builder-" + key, self.t[key]);
      var input = el("input");
      input.type = "text";
      input.id = "builder-" + key;
      input.setAttribute("data-part", key);
      input.value = typeof self.tree[key] === "string" ? self.tree[key] : "";
      input.addEventListener("input", function () {
        if (input.value === "" && key !== "name") delete self.tree[key];
        else self.tree[key] = input.value;
        if (self.tree.other) delete self.tree.other[key];
        self.changed();
      });
      label.appendChild(input);
      var wrap = el("div", "builder-field");
      wrap.setAttribute("data-path", key);
      var body = el("div", "node-body");
      body.appendChild(label);
      wrap.appendChild(body);
      wrap.appendChild(el("ul", "node-problems"));
      box.appendChild(wrap);
    });
    var others = Object.keys(this.tree.other || {});
    if (others.length) {
      var more = el("div", "builder-other");
      more.appendChild(el("p", "hint", this.t.other + ": " + others.join(", ")));
      box.appendChild(more);
    }
    return box;
  };

  // --- start ----------------------------------------------------------------------------------

  function start() {
    var form = document.getElementById("segment-form");
    var source = document.getElementById("segment-builder-data");
    if (!form || !source || !document.getElementById("segment-builder") || !window.Hub.RuleEditor) return;
    var editor = new SegmentEditor(form, JSON.parse(source.textContent));
    editor.writeLater = debounce(function () { editor.writeTree(); }, 300);
    editor.render();
    if (editor.readonly) return;
    editor.area.addEventListener("input", debounce(function () { editor.checkText(true); }, 300));
    editor.checkText(false);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
