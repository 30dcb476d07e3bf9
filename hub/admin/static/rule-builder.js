/* Hub admin: the rule editor. It draws one rule of the segment language (the tree of
   hub/admin/rule_model.py: condition, all/any/not groups, another segment, text) into an element
   and lets a person change it with the field picker, the operators, typed values, suggestions
   from the base, И/ИЛИ/НЕ groups and moves. The segment page (segment-builder.js) uses it for a
   segment's rule; any page that asks for a rule (a workflow's `if`) mounts its own:

     var editor = new window.Hub.RuleEditor(element, {catalog, texts, segments, suggestUrl, path,
                                                      readonly, extraValues, typedTitle, onChange});
     editor.setRule(node); editor.getRule(); editor.setHints({...}); editor.placeProblem("path: …");

   The editor knows nothing of YAML or of the page around it: the page sends the tree to the
   server and shows what the server says. */
(function () {
  "use strict";

  var debounce = window.Hub.debounce;

  var el = window.Hub.el;
  var button = window.Hub.button;

  var NUMERIC = { integer: true, number: true, money: true };
  // A choice offered for dates is offered for timestamps too, and the other way round.
  var SAME_KIND = { date: "datetime", datetime: "date" };

  function escapeRe(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  function RuleEditor(root, options) {
    options = options || {};
    this.root = root;
    this.t = options.texts || {};
    this.path = options.path || "rule";
    this.readonly = !!options.readonly;
    this.segments = (options.segments || []).slice();
    this.suggestUrl = options.suggestUrl || null;
    this.extraValues = options.extraValues || {};
    this.typedTitle = options.typedTitle || "";  // what the typed value is called beside the page's own values
    this.onChange = options.onChange || function () {};
    this.rule = undefined;
    this.hints = {};
    this.fields = [];
    this.operators = (options.catalog && options.catalog.operators) || {};
    var self = this;
    ((options.catalog && options.catalog.groups) || []).forEach(function (group) {
      group.fields.forEach(function (f) {
        var copy = {};
        Object.keys(f).forEach(function (k) { copy[k] = f[k]; });
        copy.group = group.title;
        self.fields.push(copy);
      });
    });
    root.classList.add("rule-editor");
  }

  // --- the page's side --------------------------------------------------------------------------

  RuleEditor.prototype.setRule = function (node) {
    this.rule = node === null ? undefined : node;
    this.render();
  };

  RuleEditor.prototype.getRule = function () {
    return this.rule;
  };

  RuleEditor.prototype.setHints = function (hints) {
    this.hints = hints || {};
    this.showHints();
  };

  // Every edit ends here: a structural one draws the tree again before the page hears of it.
  RuleEditor.prototype.changed = function (structural) {
    if (structural) this.render();
    this.onChange(!!structural);
  };

  RuleEditor.prototype.render = function () {
    var root = this.root;
    root.textContent = "";
    if (this.rule === undefined) {
      root.appendChild(el("p", "hint", this.t.empty));
      if (!this.readonly) root.appendChild(this.adders(null));
    } else {
      root.appendChild(this.drawNode(this.rule, this.path, null, 0));
    }
    this.showHints();
    if (this.readonly) {
      root.querySelectorAll("input, select, textarea, button").forEach(function (c) { c.disabled = true; });
    }
  };

  RuleEditor.prototype.clearProblems = function () {
    this.root.querySelectorAll(".node-problems").forEach(function (slot) { slot.textContent = ""; });
    this.root.querySelectorAll(".invalid").forEach(function (n) { n.classList.remove("invalid"); });
    this.root.querySelectorAll(".has-problem").forEach(function (n) { n.classList.remove("has-problem"); });
  };

  // A problem "rule.all[1].op: …" goes next to the node at rule.all[1], its operator marked.
  // Problems about other paths are left to the page (false).
  RuleEditor.prototype.placeProblem = function (problem) {
    if (typeof problem !== "string") return false;
    var m = new RegExp("^(" + escapeRe(this.path) + "(?:\\.[a-z_]+|\\[\\d+\\])*): ").exec(problem);
    if (!m) return false;
    var path = m[1], part = null;
    while (path.length >= this.path.length) {
      var node = this.root.querySelector('[data-path="' + path + '"]');
      if (node) {
        var slot = node.querySelector(":scope > .node-problems");
        if (!slot) return false;
        // Next to the condition the path says nothing: only the detail, capitalised (the page's list keeps it whole).
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

  RuleEditor.prototype.showHints = function () {
    var self = this;
    this.root.querySelectorAll("[data-hint-for]").forEach(function (slot) {
      slot.textContent = self.hints[slot.getAttribute("data-hint-for")] || "";
    });
  };

  // The page's own choices for a field's type (a workflow's "the moment the run began").
  RuleEditor.prototype.extrasFor = function (f, kind) {
    if (!f || (kind !== "one" && kind !== "moment")) return [];
    var found = this.extraValues[f.type];
    if (!found && SAME_KIND[f.type]) found = this.extraValues[SAME_KIND[f.type]];
    return (found || []).filter(function (x) { return x && typeof x.value === "string"; });
  };

  // --- fields ---------------------------------------------------------------------------------

  RuleEditor.prototype.resolve = function (name) {
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

  // The node at `path`; `parent` is {list, index} inside a group, {not} under a NOT, or null at the top.
  RuleEditor.prototype.drawNode = function (node, path, parent, depth) {
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

  RuleEditor.prototype.drawGroup = function (node, path, body, depth) {
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

  RuleEditor.prototype.drawNot = function (node, path, body, depth) {
    body.appendChild(el("span", "not-label", this.t.not));
    body.appendChild(this.drawNode(node.item, path + ".not", { not: node }, depth + 1));
  };

  RuleEditor.prototype.drawSegment = function (node, body) {
    var self = this;
    body.appendChild(el("span", "segment-label", this.t.in_segment));
    var select = el("select", "segment-ref");
    select.setAttribute("data-part", "segment");
    var names = this.segments.slice();
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

  RuleEditor.prototype.drawText = function (node, body) {
    var self = this;
    body.appendChild(el("p", "hint", this.t.as_text));
    var area = el("textarea", "code node-text");
    if (typeof node.yaml !== "string") node.yaml = "";
    area.rows = Math.min(8, Math.max(2, node.yaml.split("\n").length));
    area.spellcheck = false;
    area.value = node.yaml;
    area.addEventListener("input", function () { node.yaml = area.value; self.changed(false); });
    body.appendChild(area);
  };

  RuleEditor.prototype.drawCondition = function (node, path, body) {
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

  RuleEditor.prototype.adaptValue = function (node, before, after) {
    if (after === "none") { delete node.value; return; }
    if (after === "list" && node.value !== undefined && node.value !== null && !Array.isArray(node.value)) {
      node.value = [node.value];
    } else if (after !== "list" && Array.isArray(node.value)) {
      if (node.value.length) node.value = node.value[0]; else delete node.value;
    } else if ((after === "moment" || after === "span") && before !== after && before !== "none") {
      delete node.value;
    }
  };

  RuleEditor.prototype.fieldPicker = function (node, f) {
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

  RuleEditor.prototype.pickField = function (node, f, name) {
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
  RuleEditor.prototype.paramPickers = function (node, f) {
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

  RuleEditor.prototype.valueEditor = function (node, f, path) {
    var self = this, box = el("span", "value-editor");
    box.setAttribute("data-part", "value");
    var kind = kindOf(this.operators, node.op);
    if (!node.op || kind === "none") return box;
    var choices = f && f.choices && (f.type === "choice") ? f.choices : null;
    var extras = this.extrasFor(f, kind);
    if (kind === "list") {
      box.appendChild(this.listEditor(node, f, choices));
    } else if (choices) {
      var select = el("select", "value-choice");
      select.setAttribute("aria-label", this.t.value);
      var values = choices.concat(extras).map(function (c) { return c.value; });
      if (node.value === undefined || values.indexOf(node.value) < 0) {
        var odd = el("option", null, node.value === undefined ? this.t.pick : shown(node.value));
        odd.value = "";
        odd.selected = true;
        select.appendChild(odd);
      }
      choices.concat(extras).forEach(function (c) {
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
      var help = null;
      if (kind === "moment" || kind === "span") {
        help = el("small", "hint value-help", kind === "moment" ? this.t.moment_help : this.t.span_help);
        box.appendChild(help);
      }
      if (extras.length) this.extraToggles(node, extras, input, help, box);
    }
    var hint = el("span", "value-hint");
    hint.setAttribute("data-hint-for", path + ".value");
    box.appendChild(hint);
    return box;
  };

  // The page's own values beside the typed one, as a choice: «○ дата… [   ]  ○ момент входа в сценарий».
  // Choosing a page's value stores its code as the value and hides the box; choosing the typed one shows it.
  var choiceGroups = 0;
  RuleEditor.prototype.extraToggles = function (node, extras, input, help, box) {
    var self = this, group = "rule-value-" + (++choiceGroups);
    function showTyped(on) {
      input.hidden = !on;
      if (help) help.hidden = !on;
    }
    function radio(value, title) {
      var label = el("label", "value-extra");
      var choice = el("input");
      choice.type = "radio";
      choice.name = group;
      choice.value = value;
      choice.setAttribute("data-extra", value);
      label.appendChild(choice);
      label.appendChild(document.createTextNode(" " + title));
      return { label: label, input: choice };
    }
    var chosen = extras.some(function (x) { return x.value === node.value; });
    var typed = radio("", this.typedTitle || this.t.value || "");
    typed.input.checked = !chosen;
    typed.input.addEventListener("change", function () {
      if (!typed.input.checked) return;
      if (extras.some(function (x) { return x.value === node.value; })) delete node.value;
      showTyped(true);
      input.focus();
      self.changed(false);
    });
    box.insertBefore(typed.label, input);
    extras.forEach(function (x) {
      var own = radio(x.value, x.title);
      own.input.checked = node.value === x.value;
      own.input.addEventListener("change", function () {
        if (!own.input.checked) return;
        node.value = x.value;
        input.value = "";
        showTyped(false);
        self.changed(false);
      });
      box.appendChild(own.label);
    });
    if (chosen) input.value = "";
    showTyped(!chosen);
  };

  RuleEditor.prototype.listEditor = function (node, f, choices) {
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

  RuleEditor.prototype.chip = function (values, v) {
    var self = this, chip = el("span", "chip", shown(v));
    chip.appendChild(button("link chip-remove", "×", this.t.remove, function () {
      var at = values.indexOf(v);
      if (at >= 0) values.splice(at, 1);
      self.changed(true);
    }));
    return chip;
  };

  // The spellings the base holds, most frequent first, under a text box (GET /segments/builder/suggest).
  RuleEditor.prototype.suggestions = function (input, field, pick) {
    var url = this.suggestUrl;
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

  RuleEditor.prototype.adders = function (group) {
    var self = this, row = el("div", "builder-add");
    function add(item) {
      if (group) group.items.push(item);
      else if (self.rule === undefined) self.rule = item;
      self.changed(true);
    }
    row.appendChild(button("add-condition", "+ " + this.t.add_condition, null, function () { add(newCondition()); }));
    row.appendChild(button("add-group", "+ " + this.t.add_group, null, function () {
      add({ kind: group && group.kind === "all" ? "any" : "all", items: [newCondition()] });
    }));
    if (this.segments.length) {
      row.appendChild(button("add-segment", "+ " + this.t.add_segment, null, function () {
        add({ kind: "segment", name: self.segments[0] });
      }));
    }
    return row;
  };

  RuleEditor.prototype.replace = function (parent, node) {
    if (!parent) this.rule = node;
    else if (parent.not) parent.not.item = node;
    else parent.list[parent.index] = node;
  };

  RuleEditor.prototype.moves = function (node, parent) {
    var self = this, row = el("div", "node-moves");
    if (!parent) {  // the whole rule: a lone condition gains siblings by becoming a group
      if (node.kind !== "all" && node.kind !== "any") {
        row.appendChild(button("add-condition", "+ " + this.t.add_condition, null, function () {
          self.rule = { kind: "all", items: [node, newCondition()] };
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
      if (!parent) self.rule = undefined;
      else if (parent.not) self.replace(parent, newCondition());
      else parent.list.splice(parent.index, 1);
      self.changed(true);
    }));
    return row;
  };

  // Where the group holding `list` sits in its own parent group, for "move out of the group".
  RuleEditor.prototype.parentGroupOf = function (list) {
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
    visit(this.rule);
    return found;
  };

  window.Hub.RuleEditor = RuleEditor;
})();
