/* Hub admin: the segment editor. The YAML text box works without this file; with it, the rule is
   checked and counted while it is typed, and a visual builder beside the text edits the same
   document. The server reads the text into the builder's tree (/segments/check with "model")
   and writes a changed tree back as YAML (/segments/write): the browser needs no YAML parser,
   and both forms stay one document. Parts the builder cannot show as a form stay text nodes,
   written back exactly as they were. */
(function () {
  "use strict";

  var debounce = window.Hub.debounce;
  var postJson = window.Hub.post;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function button(cls, text, title, onClick) {
    var b = el("button", cls, text);
    b.type = "button";
    if (title) { b.title = title; b.setAttribute("aria-label", title); }
    b.addEventListener("click", function (event) { event.preventDefault(); onClick(event); });
    return b;
  }

  var NUMERIC = { integer: true, number: true, money: true };

  function SegmentEditor(form, data) {
    this.form = form;
    this.area = document.getElementById("document");
    this.out = document.getElementById("check-result");
    this.root = document.getElementById("segment-builder");
    this.data = data;
    this.t = data.texts || {};
    this.tree = data.model;
    this.hints = data.hints || {};
    this.readonly = !form.dataset.checkUrl || !!this.root.dataset.readonly;
    this.seq = 0;
    this.fields = [];
    this.operators = data.catalog.operators;
    var self = this;
    data.catalog.groups.forEach(function (group) {
      group.fields.forEach(function (f) { f.group = group.title; self.fields.push(f); });
    });
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
        self.hints = answer.hints || {};
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
      self.hints = answer.hints || {};
      self.showHints();
      self.showAnswer(answer);
    }).catch(function () { if (mine === self.seq) self.out.setAttribute("data-state", "offline"); });
  };

  SegmentEditor.prototype.changed = function (structural) {
    if (structural) this.render();
    if (!this.readonly) this.writeLater();
  };

  SegmentEditor.prototype.showAnswer = function (answer) {
    this.out.textContent = "";
    this.root.querySelectorAll(".node-problems").forEach(function (slot) { slot.textContent = ""; });
    this.root.querySelectorAll(".invalid").forEach(function (n) { n.classList.remove("invalid"); });
    this.root.querySelectorAll(".has-problem").forEach(function (n) { n.classList.remove("has-problem"); });
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

  // A problem "rule.all[1].op: …" goes next to the node at rule.all[1], its operator marked.
  SegmentEditor.prototype.placeProblem = function (problem) {
    var m = /^((?:rule|name|title|description)(?:\.[a-z_]+|\[\d+\])*): /.exec(problem);
    if (!m) return false;
    var path = m[1], part = null;
    while (path) {
      var node = this.root.querySelector('[data-path="' + path + '"]');
      if (node) {
        var slot = node.querySelector(":scope > .node-problems");
        if (!slot) return false;
        // Next to the condition the path says nothing: only the detail, capitalised (the list below keeps it whole).
        var detail = problem.slice(m[0].length);
        slot.appendChild(el("li", "error", detail.charAt(0).toUpperCase() + detail.slice(1)));
        node.classList.add("has-problem");
        if (part) {
          var control = node.querySelector(":scope > .node-body [data-part=\"" + part + "\"]");
          if (control) control.classList.add("invalid");
        }
        return true;
      }
      var cut = /(\.[a-z_]+|\[\d+\])$/.exec(path);
      if (!cut) return false;
      if (cut[1].charAt(0) === ".") part = cut[1].slice(1);
      path = path.slice(0, path.length - cut[1].length);
    }
    return false;
  };

  SegmentEditor.prototype.showHints = function () {
    var self = this;
    this.root.querySelectorAll("[data-hint-for]").forEach(function (slot) {
      slot.textContent = self.hints[slot.getAttribute("data-hint-for")] || "";
    });
  };

  // --- fields ---------------------------------------------------------------------------------

  SegmentEditor.prototype.resolve = function (name) {
    if (typeof name !== "string") return null;
    var parts = name.split(".");
    for (var i = 0; i < this.fields.length; i++) {
      var f = this.fields[i];
      if (f.parts.length !== parts.length) continue;
      var ok = f.parts.every(function (p, j) { return p.param ? parts[j] !== "" : p.text === parts[j]; });
      if (ok) return f;
    }
    return null;
  };

  function defaultName(f) {
    return f.parts.map(function (p) {
      if (p.text !== undefined) return p.text;
      return p.options && p.options.length ? p.options[0] : p.param;
    }).join(".");
  }

  function kindOf(ops, op) {
    return ops[op] ? ops[op].value : "one";
  }

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
    var top = el("div", "builder-tree");
    if (this.tree.rule === undefined) {
      top.appendChild(el("p", "hint", this.t.empty));
      if (!this.readonly) top.appendChild(this.adders(null));
    } else {
      top.appendChild(this.drawNode(this.tree.rule, "rule", null, 0));
    }
    root.appendChild(top);
    this.showHints();
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
        self.changed(false);
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

  // The node at `path`; `parent` is {list, index} inside a group, {not} under a NOT, or null at the top.
  SegmentEditor.prototype.drawNode = function (node, path, parent, depth) {
    var box = el("div", "node node-" + node.kind);
    box.setAttribute("data-path", path);
    var body = el("div", "node-body");
    if (node.kind === "all" || node.kind === "any") this.drawGroup(node, path, body, depth);
    else if (node.kind === "not") this.drawNot(node, path, body, depth);
    else if (node.kind === "condition") this.drawCondition(node, path, body);
    else if (node.kind === "segment") this.drawSegment(node, body);
    else this.drawText(node, body);
    box.appendChild(body);
    box.appendChild(el("ul", "node-problems"));
    if (!this.readonly) box.appendChild(this.moves(node, parent));
    return box;
  };

  SegmentEditor.prototype.drawGroup = function (node, path, body, depth) {
    var self = this;
    var kind = el("select", "group-kind");
    kind.setAttribute("data-part", node.kind);
    [["all", this.t.all], ["any", this.t.any]].forEach(function (o) {
      var option = el("option", null, o[1]);
      option.value = o[0];
      option.selected = node.kind === o[0];
      kind.appendChild(option);
    });
    kind.addEventListener("change", function () { node.kind = kind.value; self.changed(true); });
    body.appendChild(kind);
    var list = el("div", "group-items");
    node.items.forEach(function (item, i) {
      list.appendChild(self.drawNode(item, path + "." + node.kind + "[" + i + "]", { list: node.items, index: i }, depth + 1));
    });
    body.appendChild(list);
    if (!this.readonly) body.appendChild(this.adders(node));
  };

  SegmentEditor.prototype.drawNot = function (node, path, body, depth) {
    body.appendChild(el("span", "not-label", this.t.not));
    body.appendChild(this.drawNode(node.item, path + ".not", { not: node }, depth + 1));
  };

  SegmentEditor.prototype.drawSegment = function (node, body) {
    var self = this;
    body.appendChild(el("span", "segment-label", this.t.in_segment));
    var select = el("select", "segment-ref");
    select.setAttribute("data-part", "segment");
    var names = (this.data.segments || []).slice();
    if (names.indexOf(node.name) < 0) names.unshift(node.name);
    names.forEach(function (name) {
      var option = el("option", null, name);
      option.value = name;
      option.selected = name === node.name;
      select.appendChild(option);
    });
    select.addEventListener("change", function () { node.name = select.value; self.changed(false); });
    body.appendChild(select);
  };

  SegmentEditor.prototype.drawText = function (node, body) {
    var self = this;
    body.appendChild(el("p", "hint", this.t.as_text));
    var area = el("textarea", "code node-text");
    area.rows = Math.min(8, Math.max(2, node.yaml.split("\n").length));
    area.spellcheck = false;
    area.value = node.yaml;
    area.addEventListener("input", function () { node.yaml = area.value; self.changed(false); });
    body.appendChild(area);
  };

  SegmentEditor.prototype.drawCondition = function (node, path, body) {
    var self = this;
    var f = this.resolve(node.field);
    body.appendChild(this.fieldPicker(node, f));
    if (f) body.appendChild(this.paramPickers(node, f));
    var ops = f ? f.operators.slice() : [];
    var op = el("select", "op");
    op.setAttribute("data-part", "op");
    op.setAttribute("aria-label", this.t.operator);
    if (node.op === undefined || node.op === null || ops.indexOf(node.op) < 0) {
      var blank = el("option", null, node.op ? node.op + " (" + this.t.unknown_op + ")" : this.t.pick);
      blank.value = node.op || "";
      blank.selected = true;
      op.appendChild(blank);
    }
    ops.forEach(function (name) {
      var option = el("option", null, self.operators[name] ? self.operators[name].title : name);
      option.value = name;
      option.selected = name === node.op;
      op.appendChild(option);
    });
    op.addEventListener("change", function () {
      if (!op.value) return;
      var before = kindOf(self.operators, node.op), after = kindOf(self.operators, op.value);
      node.op = op.value;
      self.adaptValue(node, before, after);
      self.changed(true);
    });
    body.appendChild(op);
    body.appendChild(this.valueEditor(node, f, path));
  };

  SegmentEditor.prototype.adaptValue = function (node, before, after) {
    if (after === "none") { delete node.value; return; }
    if (after === "list" && node.value !== undefined && node.value !== null && !Array.isArray(node.value)) {
      node.value = [node.value];
    } else if (after !== "list" && Array.isArray(node.value)) {
      if (node.value.length) node.value = node.value[0]; else delete node.value;
    } else if ((after === "moment" || after === "span") && before !== after && before !== "none") {
      delete node.value;
    }
  };

  SegmentEditor.prototype.fieldPicker = function (node, f) {
    var self = this, wrap = el("div", "field-picker");
    var shown = f ? f.title + " · " + f.type_title : (node.field ? node.field + " (" + this.t.unknown_field + ")" : this.t.choose_field);
    var open = button("field-button", shown, this.t.choose_field, function () {
      panel.hidden = !panel.hidden;
      if (!panel.hidden) { search.value = ""; filter(); search.focus(); }
    });
    open.setAttribute("data-part", "field");
    if (node.field) open.setAttribute("data-field", node.field);
    wrap.appendChild(open);
    var panel = el("div", "field-panel");
    panel.hidden = true;
    var search = el("input", "field-search");
    search.type = "search";
    search.placeholder = this.t.search;
    search.setAttribute("aria-label", this.t.search);
    panel.appendChild(search);
    var list = el("div", "field-list");
    var none = el("p", "hint", this.t.no_fields);
    panel.appendChild(list);
    panel.appendChild(none);
    function filter() {
      var words = search.value.trim().toLowerCase().replace(/ё/g, "е").split(/\s+/).filter(Boolean);
      list.textContent = "";
      var found = 0, group = null;
      self.fields.forEach(function (candidate) {
        // Every typed word somewhere in the title, the search words or the name: "число заказов" finds
        // «число выигранных заказов».
        var hay = [candidate.title, candidate.keywords || "", candidate.pattern, candidate.type_title]
          .join(" ").toLowerCase().replace(/ё/g, "е");
        if (!words.every(function (w) { return hay.indexOf(w) >= 0; })) return;
        if (candidate.group !== group) {
          group = candidate.group;
          list.appendChild(el("h3", "field-group", group));
        }
        var item = button("field-option", null, null, function () {
          var name = candidate.parts.length && candidate.parts.some(function (p) { return p.param; })
            ? defaultName(candidate) : candidate.pattern;
          self.pickField(node, candidate, name);
        });
        item.setAttribute("data-pattern", candidate.pattern);
        item.appendChild(el("span", "field-title", candidate.title));
        item.appendChild(el("span", "field-type", candidate.type_title));
        item.appendChild(el("code", "field-name", candidate.pattern));
        list.appendChild(item);
        found++;
      });
      none.hidden = found > 0;
    }
    search.addEventListener("input", filter);
    search.addEventListener("keydown", function (event) {
      if (event.key === "Escape") panel.hidden = true;
      if (event.key === "Enter") {
        event.preventDefault();
        var first = list.querySelector(".field-option");
        if (first) first.click();
      }
    });
    wrap.appendChild(panel);
    return wrap;
  };

  SegmentEditor.prototype.pickField = function (node, f, name) {
    var before = kindOf(this.operators, node.op), was = this.resolve(node.field);
    if (!was || was.type !== f.type) delete node.value;  // "granted" means nothing to a number of orders
    node.field = name;
    if (f.operators.indexOf(node.op) < 0) {
      node.op = f.operators[0];
      delete node.value;
    } else {
      this.adaptValue(node, before, kindOf(this.operators, node.op));
    }
    if (kindOf(this.operators, node.op) === "none") delete node.value;
    this.changed(true);
  };

  // consent.<channel>.<purpose>: a select for each placeholder that lists its values, a box for the others.
  SegmentEditor.prototype.paramPickers = function (node, f) {
    var self = this, box = el("span", "field-params");
    var parts = node.field.split(".");
    f.parts.forEach(function (p, i) {
      if (!p.param) return;
      var control;
      if (p.options) {
        control = el("select", "field-param");
        var options = p.options.slice();
        if (options.indexOf(parts[i]) < 0) options.unshift(parts[i]);
        var titles = p.option_titles || {};
        options.forEach(function (value) {
          var option = el("option", null, titles[value] || value);
          option.value = value;
          option.selected = value === parts[i];
          control.appendChild(option);
        });
      } else {
        control = el("input", "field-param short");
        control.type = "text";
        control.value = parts[i];
      }
      control.setAttribute("aria-label", p.title);
      control.title = p.title;
      control.setAttribute("data-param", p.param);
      control.addEventListener(p.options ? "change" : "input", function () {
        parts[i] = control.value;
        node.field = parts.join(".");
        self.changed(false);
      });
      box.appendChild(el("span", "param-title", p.title));
      box.appendChild(control);
    });
    return box;
  };

  // --- values -------------------------------------------------------------------------------

  function typed(f, text) {
    if (f && NUMERIC[f.type] && /^-?\d+(\.\d+)?$/.test(text.trim())) {
      var n = Number(text.trim());
      if (Number.isSafeInteger(n) || (String(n) === text.trim())) return n;
    }
    return text;
  }

  function shown(value) {
    if (value === undefined || value === null) return "";
    return String(value);
  }

  SegmentEditor.prototype.valueEditor = function (node, f, path) {
    var self = this, box = el("span", "value-editor");
    box.setAttribute("data-part", "value");
    var kind = kindOf(this.operators, node.op);
    if (!node.op || kind === "none") return box;
    var choices = f && f.choices && (f.type === "choice") ? f.choices : null;
    if (kind === "list") {
      box.appendChild(this.listEditor(node, f, choices));
    } else if (choices) {
      var select = el("select", "value-choice");
      select.setAttribute("aria-label", this.t.value);
      var values = choices.map(function (c) { return c.value; });
      if (node.value === undefined || values.indexOf(node.value) < 0) {
        var odd = el("option", null, node.value === undefined ? this.t.pick : shown(node.value));
        odd.value = "";
        odd.selected = true;
        select.appendChild(odd);
      }
      choices.forEach(function (c) {
        var option = el("option", null, c.title);  // the title only: the code stays in the text form
        option.value = c.value;
        option.selected = c.value === node.value;
        select.appendChild(option);
      });
      select.addEventListener("change", function () {
        if (!select.value) return;
        node.value = select.value;
        self.changed(false);
      });
      box.appendChild(select);
    } else {
      var input = el("input", "value-input");
      input.type = "text";
      input.setAttribute("aria-label", this.t.value);
      if (f && NUMERIC[f.type] && kind === "one") input.inputMode = "decimal";
      input.value = shown(node.value);
      input.addEventListener("input", function () {
        node.value = kind === "one" ? typed(f, input.value) : input.value;
        self.changed(false);
      });
      box.appendChild(input);
      if (f && f.suggest && kind === "one") this.suggestions(input, node.field, function (value) {
        input.value = value;
        node.value = value;
        self.changed(false);
      });
      if (kind === "moment" || kind === "span") {
        var help = el("small", "hint value-help", kind === "moment" ? this.t.moment_help : this.t.span_help);
        box.appendChild(help);
      }
    }
    var hint = el("span", "value-hint");
    hint.setAttribute("data-hint-for", path + ".value");
    box.appendChild(hint);
    return box;
  };

  SegmentEditor.prototype.listEditor = function (node, f, choices) {
    var self = this, box = el("span", "value-list");
    if (!Array.isArray(node.value)) node.value = node.value === undefined || node.value === null ? [] : [node.value];
    var values = node.value;
    if (choices) {
      choices.forEach(function (c) {
        var label = el("label", "value-check");
        var check = el("input");
        check.type = "checkbox";
        check.value = c.value;
        check.checked = values.indexOf(c.value) >= 0;
        check.addEventListener("change", function () {
          var at = values.indexOf(c.value);
          if (check.checked && at < 0) values.push(c.value);
          if (!check.checked && at >= 0) values.splice(at, 1);
          self.changed(false);
        });
        label.appendChild(check);
        label.appendChild(document.createTextNode(" " + c.title));
        box.appendChild(label);
      });
      values.forEach(function (v) {  // values that are no choice stay, shown as chips to remove
        if (choices.some(function (c) { return c.value === v; })) return;
        box.appendChild(self.chip(values, v));
      });
      return box;
    }
    values.forEach(function (v) { box.appendChild(self.chip(values, v)); });
    var input = el("input", "value-add short");
    input.type = "text";
    input.placeholder = this.t.add_value;
    input.title = this.t.values_help;
    input.setAttribute("aria-label", this.t.values_help);
    function add(text) {
      if (text.trim() === "") return;
      values.push(typed(f, text.trim()));
      self.changed(true);
    }
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); add(input.value); }
    });
    box.appendChild(input);
    if (f && f.suggest) this.suggestions(input, node.field, add);
    return box;
  };

  SegmentEditor.prototype.chip = function (values, v) {
    var self = this, chip = el("span", "chip", shown(v));
    chip.appendChild(button("link chip-remove", "×", this.t.remove, function () {
      var at = values.indexOf(v);
      if (at >= 0) values.splice(at, 1);
      self.changed(true);
    }));
    return chip;
  };

  // The spellings the base holds, most frequent first, under a text box (GET /segments/builder/suggest).
  SegmentEditor.prototype.suggestions = function (input, field, pick) {
    var url = this.form.dataset.suggestUrl;
    if (!url || this.readonly) return;
    var list = el("ul", "suggestions");
    list.hidden = true;
    input.setAttribute("autocomplete", "off");
    input.parentNode.appendChild(list);
    var seq = 0;
    var load = debounce(function () {
      var mine = ++seq;
      var query = "?field=" + encodeURIComponent(field) + "&prefix=" + encodeURIComponent(input.value);
      fetch(url + query, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (answer) {
          if (mine !== seq) return;
          list.textContent = "";
          (answer.values || []).forEach(function (v) {
            var item = el("li");
            var b = button("suggestion", null, null, function () { list.hidden = true; pick(v.value); });
            b.setAttribute("data-value", v.value);
            b.appendChild(el("span", "suggestion-value", v.value));
            b.appendChild(el("span", "suggestion-count", v.count_text));
            item.appendChild(b);
            list.appendChild(item);
          });
          list.hidden = !list.children.length;
        });
    }, 200);
    input.addEventListener("focus", load);
    input.addEventListener("input", load);
    input.addEventListener("keydown", function (event) { if (event.key === "Escape") list.hidden = true; });
  };

  // --- changing the tree -----------------------------------------------------------------------

  function newCondition() {
    return { kind: "condition" };
  }

  SegmentEditor.prototype.adders = function (group) {
    var self = this, row = el("div", "builder-add");
    function add(item) {
      if (group) group.items.push(item);
      else if (self.tree.rule === undefined) self.tree.rule = item;
      self.changed(true);
    }
    row.appendChild(button("add-condition", "+ " + this.t.add_condition, null, function () { add(newCondition()); }));
    row.appendChild(button("add-group", "+ " + this.t.add_group, null, function () {
      add({ kind: group && group.kind === "all" ? "any" : "all", items: [newCondition()] });
    }));
    if ((this.data.segments || []).length) {
      row.appendChild(button("add-segment", "+ " + this.t.add_segment, null, function () {
        add({ kind: "segment", name: self.data.segments[0] });
      }));
    }
    return row;
  };

  SegmentEditor.prototype.replace = function (parent, node) {
    if (!parent) this.tree.rule = node;
    else if (parent.not) parent.not.item = node;
    else parent.list[parent.index] = node;
  };

  SegmentEditor.prototype.moves = function (node, parent) {
    var self = this, row = el("div", "node-moves");
    if (!parent) {  // the whole rule: a lone condition gains siblings by becoming a group
      if (node.kind !== "all" && node.kind !== "any") {
        row.appendChild(button("add-condition", "+ " + this.t.add_condition, null, function () {
          self.tree.rule = { kind: "all", items: [node, newCondition()] };
          self.changed(true);
        }));
      }
    }
    if (parent && parent.list) {
      var list = parent.list, i = parent.index;
      if (i > 0) row.appendChild(button("move-up", "↑", this.t.up, function () {
        list.splice(i - 1, 0, list.splice(i, 1)[0]);
        self.changed(true);
      }));
      if (i < list.length - 1) row.appendChild(button("move-down", "↓", this.t.down, function () {
        list.splice(i + 1, 0, list.splice(i, 1)[0]);
        self.changed(true);
      }));
      var outer = this.parentGroupOf(list);
      if (outer) row.appendChild(button("move-out", "⇤", this.t.out, function () {
        list.splice(i, 1);
        outer.list.splice(outer.index + 1, 0, node);
        self.changed(true);
      }));
    }
    if (node.kind === "not") {
      row.appendChild(button("unwrap-not", this.t.unwrap, null, function () {
        self.replace(parent, node.item);
        self.changed(true);
      }));
    } else {
      row.appendChild(button("wrap-not", this.t.wrap_not, null, function () {
        self.replace(parent, { kind: "not", item: node });
        self.changed(true);
      }));
    }
    row.appendChild(button("remove danger link", "×", this.t.remove, function () {
      if (!parent) delete self.tree.rule;
      else if (parent.not) self.replace(parent, newCondition());
      else parent.list.splice(parent.index, 1);
      self.changed(true);
    }));
    return row;
  };

  // Where the group holding `list` sits in its own parent group, for "move out of the group".
  SegmentEditor.prototype.parentGroupOf = function (list) {
    var found = null;
    function visit(node) {
      if (found || !node) return;
      if (node.kind === "not") { visit(node.item); return; }
      if (node.kind !== "all" && node.kind !== "any") return;
      node.items.forEach(function (item, i) {
        var inner = item.kind === "not" ? item.item : item;
        if (inner && (inner.kind === "all" || inner.kind === "any") && inner.items === list && item === inner) {
          found = { list: node.items, index: i };
        }
        visit(item);
      });
    }
    visit(this.tree.rule);
    return found;
  };

  // --- start ----------------------------------------------------------------------------------

  function start() {
    var form = document.getElementById("segment-form");
    var source = document.getElementById("segment-builder-data");
    if (!form || !source || !document.getElementById("segment-builder")) return;
    var editor = new SegmentEditor(form, JSON.parse(source.textContent));
    editor.writeLater = debounce(function () { editor.writeTree(); }, 300);
    editor.render();
    if (editor.readonly) return;
    editor.area.addEventListener("input", debounce(function () { editor.checkText(true); }, 300));
    editor.checkText(false);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
