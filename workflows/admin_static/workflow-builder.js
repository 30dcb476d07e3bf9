/* Hub admin: the workflow builder (workflows/builder_admin.py). The YAML text box works without this
   file; with it, the workflow is drawn as a flow of cards — the trigger, each step with its form, conditions
   with the segment rule editor (Hub.RuleEditor) and their «да»/«нет» branches — and edits in either form
   update the other. The server reads the text into the builder's tree (/workflows/builder/check with
   "model") and writes a changed tree back as YAML (/workflows/builder/write), so the browser needs no YAML
   parser; a step the builder has no form for stays a text node, written back exactly as it was. */
(function () {
  "use strict";

  var debounce = window.Hub.debounce;
  var postJson = window.Hub.post;
  var UNITS = ["m", "h", "d", "w"];
  var UNIT_TEXT = { m: "minutes", h: "hours", d: "days", w: "weeks" };
  var SHORT_NEW = { wait: true, tag: true, crm_comment: true };
  var TRIGGER_KINDS = ["segment", "segment_exit", "event", "date", "schedule"];
  var BOUGHT_SINCE = { kind: "condition", field: "orders.last_at", op: "after", value: "run.started_at" };

  var el = window.Hub.el;
  var button = window.Hub.button;

  function select(options, value, withEmpty) {
    var s = el("select");
    if (withEmpty !== undefined) {
      var empty = el("option", null, withEmpty);
      empty.value = "";
      s.appendChild(empty);
    }
    var found = false;
    options.forEach(function (o) {
      var opt = el("option", null, o.title && o.title !== o.value ? o.title + " (" + o.value + ")" : o.value);
      opt.value = o.value;
      if (String(o.value) === String(value)) { opt.selected = true; found = true; }
      s.appendChild(opt);
    });
    if (!found && value !== undefined && value !== null && value !== "") {
      var odd = el("option", null, String(value));  // what the text says, even if it is not offered
      odd.value = String(value);
      odd.selected = true;
      s.appendChild(odd);
    }
    return s;
  }

  function labelled(text, control, cls) {
    var label = el("label", cls || "wf-field");
    label.appendChild(el("span", "wf-label", text));
    label.appendChild(control);
    return label;
  }

  function copy(value) { return JSON.parse(JSON.stringify(value)); }

  // A name from a title, as workflows/builder_words.py `transliterate` makes it: «Весенний возврат» → vesenniy_vozvrat.
  var TRANSLIT = { "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
                   "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
                   "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
                   "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya" };
  function translit(title) {
    var latin = Array.prototype.map.call(String(title).toLowerCase(), function (ch) {
      return Object.prototype.hasOwnProperty.call(TRANSLIT, ch) ? TRANSLIT[ch] : ch;
    }).join("");
    var name = latin.replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "");
    if (name && !/^[a-z]/.test(name)) name = "w_" + name;
    return name.slice(0, 64).replace(/_+$/, "");
  }

  // An «нет» branch with no steps is no branch: it is left out of the document.
  function prune(list) {
    (list || []).forEach(function (node) {
      if (!node || node.kind !== "if") return;
      if (Array.isArray(node.else) && !node.else.length) { delete node.else; delete node.else_one; }
      prune(node.then);
      prune(node.else);
    });
  }

  function WorkflowBuilder(form, data) {
    this.form = form;
    this.area = document.getElementById("workflow-document");
    this.root = document.getElementById("workflow-builder");
    this.list = document.getElementById("wf-problems");
    this.data = data;
    this.t = data.texts || {};
    this.model = data.model;
    this.readonly = !!data.readonly || !form.dataset.checkUrl;
    this.name = form.dataset.name || null;
    this.seq = 0;
    this.editors = [];
    this.hints = data.hints || {};
    this.kinds = {};
    var self = this;
    (data.kinds || []).forEach(function (k) { self.kinds[k.kind] = k; });
    this.writeLater = debounce(function () { self.writeTree(); }, 350);
    this.checkLater = debounce(function () { self.checkText(true); }, 500);
    this.pending = false;
  }

  // --- talking to the server ------------------------------------------------------------------

  // `redraw`: the text was edited, so the builder is drawn again from the server's reading of it.
  WorkflowBuilder.prototype.checkText = function (redraw) {
    var self = this, mine = ++this.seq;
    this.state("checking");
    postJson(this.form.dataset.checkUrl, { document: this.area.value, model: !!redraw, name: this.name })
      .then(function (answer) {
        if (mine !== self.seq) return;
        if (answer.model) {
          self.model = answer.model;
          self.render();
        }
        self.showAnswer(answer);
      }).catch(function () { if (mine === self.seq) self.state("offline"); });
  };

  WorkflowBuilder.prototype.writeTree = function () {
    var self = this, mine = ++this.seq;
    this.state("checking");
    var sent = copy(this.model);  // the drawn branches keep their (maybe empty) lists; the text leaves them out
    prune(sent.steps);
    var done = postJson(this.form.dataset.writeUrl, { model: sent, name: this.name }).then(function (answer) {
      if (mine !== self.seq) return;
      self.pending = false;
      if (typeof answer.document === "string") self.area.value = answer.document;
      self.showAnswer(answer);
    }).catch(function () { if (mine === self.seq) self.state("offline"); });
    return done;
  };

  WorkflowBuilder.prototype.changed = function (structural) {
    if (structural) this.render();
    if (this.readonly) return;
    this.pending = true;
    this.writeLater();
  };

  WorkflowBuilder.prototype.state = function (value) {
    this.list.setAttribute("data-state", value);
  };

  WorkflowBuilder.prototype.showAnswer = function (answer) {
    var self = this;
    this.list.textContent = "";
    this.clearProblems();
    var problems = answer.problems || [], shown = answer.shown || [];
    if (problems.length) {
      // Only things not filled in yet (a new workflow): a to-do list, not a list of errors.
      var todo = shown.length === problems.length && shown.every(function (w) { return w && w.todo; });
      this.list.appendChild(el("p", todo ? "todo" : "error", todo ? this.t.todo : this.t.problems));
      var ul = el("ul", "problems");
      problems.forEach(function (p, i) {
        var words = shown[i] || { where: "", text: p };  // «Шаг 7 «Подождать»: …», not the file's path
        ul.appendChild(el("li", words.todo ? "todo" : "error", words.where ? words.where + ": " + words.text :
                                                                 words.text));
        self.placeProblem(p, words.text);
      });
      this.list.appendChild(ul);
    } else if (answer.summary) {
      this.list.appendChild(el("p", "ok", answer.summary));
    }
    this.state(answer.ok ? "ok" : "problems");
    if (answer.hints) this.setHints(answer.hints);
  };

  // What relative times in the conditions mean («-60d — 60 дней назад»), by path; each rule editor shows its own.
  WorkflowBuilder.prototype.setHints = function (hints) {
    this.hints = hints || {};
    var all = this.hints;
    this.editors.forEach(function (e) { e.editor.setHints(all); });
  };

  WorkflowBuilder.prototype.clearProblems = function () {
    this.root.querySelectorAll(".node-problems").forEach(function (slot) { slot.textContent = ""; });
    this.root.querySelectorAll(".has-problem").forEach(function (n) { n.classList.remove("has-problem"); });
    this.root.querySelectorAll(".invalid").forEach(function (n) { n.classList.remove("invalid"); });
    this.editors.forEach(function (e) { e.editor.clearProblems(); });
  };

  // "steps[4].then[0].send.template: …" goes under that step's template field; rule problems go to the
  // condition's rule editor; trigger/goal/holdout/reentry/name problems to their cards.
  // `words`: the problem as the builder says it (without its place), shown in the card instead of the parser's words.
  WorkflowBuilder.prototype.placeProblem = function (problem, words) {
    var m = /^([A-Za-z_][\w]*(?:\.[\w-]+|\[\d+\])*): ([\s\S]*)$/.exec(problem);
    if (!m) return false;
    var path = m[1], detail = m[2];
    if (words && words !== detail) detail = words.charAt(0).toUpperCase() + words.slice(1);  // the builder's own words
    for (var i = 0; i < this.editors.length; i++) {
      if (this.editors[i].editor.placeProblem(path + ": " + detail)) return true;
    }
    var best = null, bestPath = "";
    this.root.querySelectorAll("[data-problems-for]").forEach(function (node) {
      var p = node.getAttribute("data-problems-for");
      if ((path === p || path.indexOf(p + ".") === 0 || path.indexOf(p + "[") === 0) && p.length > bestPath.length) {
        best = node; bestPath = p;
      }
    });
    if (!best) return false;
    var slot = best.querySelector(":scope > .node-problems");
    if (!slot) return false;
    slot.appendChild(el("li", "error", detail));  // as worded: it may start with a name (reactivation_sms)
    best.classList.add("has-problem");
    var rest = path.slice(bestPath.length).split(".").filter(Boolean);
    var key = rest.length ? rest[rest.length - 1] : null;
    if (key) {
      var field = best.querySelector(':scope > .wf-body [data-option="' + key + '"], :scope > .wf-body [data-part="' +
                                     key + '"]');
      if (field) field.classList.add("invalid");
    }
    return true;
  };

  // --- drawing ----------------------------------------------------------------------------

  WorkflowBuilder.prototype.render = function () {
    var root = this.root, self = this;
    root.textContent = "";
    this.editors = [];
    if (!this.model) {
      root.appendChild(el("p", "hint", this.t.unreadable));
      root.hidden = false;
      return;
    }
    root.appendChild(this.header());
    root.appendChild(this.triggerCard());
    var flow = el("div", "wf-flow");
    flow.setAttribute("data-problems-for", "steps");
    flow.appendChild(el("h2", null, this.t.steps));
    flow.appendChild(el("ul", "node-problems"));
    if (this.model.other && typeof this.model.other.steps === "string") {  // steps that are no list: as text
      flow.appendChild(el("p", "hint", this.t.as_text));
      flow.appendChild(this.textBox(this.model.other, "steps"));
    } else {
      if (!Array.isArray(this.model.steps)) this.model.steps = [];
      flow.appendChild(this.drawList(this.model.steps, "steps", false));
    }
    root.appendChild(flow);
    root.appendChild(this.settingsCard());
    if (this.readonly) {
      root.querySelectorAll("input, select, textarea, button").forEach(function (c) { c.disabled = true; });
    }
    self.root.hidden = false;
  };

  WorkflowBuilder.prototype.header = function () {
    var m = this.model, self = this, box = el("div", "wf-header");
    box.setAttribute("data-problems-for", "name");
    var name = el("input");
    name.id = "wf-name";
    name.value = m.name || "";
    name.spellcheck = false;
    if (this.name) name.readOnly = true;  // a saved workflow keeps its name
    // An unsaved workflow's name follows its title until the marketer types a name of their own.
    var byHand = !!this.name || (!!m.name && m.name !== translit(m.title || ""));
    name.addEventListener("input", function () {
      byHand = name.value !== "";
      if (name.value) m.name = name.value; else delete m.name;
      self.changed(false);
    });
    var title = el("input");
    title.id = "wf-title";
    title.value = m.title || "";
    title.placeholder = this.t.title_placeholder || "";
    title.addEventListener("input", function () {
      if (title.value) m.title = title.value; else delete m.title;
      if (!byHand) {
        var made = translit(title.value);
        name.value = made;
        if (made) m.name = made; else delete m.name;
      }
      self.changed(false);
    });
    var description = el("textarea");
    description.id = "wf-description";
    description.rows = 2;
    description.value = m.description || "";
    description.addEventListener("input", function () {
      if (description.value) m.description = description.value; else delete m.description;
      self.changed(false);
    });
    var body = el("div", "wf-body");
    body.appendChild(labelled(this.t.title, title));
    var nameLabel = labelled(this.t.name, name);
    if (!this.name) nameLabel.appendChild(el("span", "hint wf-hint", this.t.name_auto));
    body.appendChild(nameLabel);
    body.appendChild(labelled(this.t.description, description));
    box.appendChild(body);
    box.appendChild(el("ul", "node-problems"));
    var titleSlot = el("div");
    titleSlot.setAttribute("data-problems-for", "title");
    titleSlot.appendChild(el("ul", "node-problems"));
    box.appendChild(titleSlot);
    return box;
  };

  // A duration "7d" as a number and a unit; anything else as text.
  WorkflowBuilder.prototype.duration = function (value, onValue) {
    var t = this.t, box = el("span", "wf-duration");
    var m = /^(\d+)([mhdw])$/.exec(value === undefined || value === null ? "" : String(value));
    if (value !== undefined && value !== null && value !== "" && !m) {
      var text = el("input");
      text.value = String(value);
      text.addEventListener("input", function () { onValue(text.value.trim() || undefined); });
      box.appendChild(text);
      return box;
    }
    var number = el("input");
    number.type = "number";
    number.min = "1";
    number.className = "short";
    number.value = m ? m[1] : "";
    var unit = select(UNITS.map(function (u) { return { value: u, title: t[UNIT_TEXT[u]] }; }), m ? m[2] : "d");
    unit.querySelectorAll("option").forEach(function (o) { o.textContent = t[UNIT_TEXT[o.value]] || o.value; });
    function update() { onValue(number.value ? String(parseInt(number.value, 10)) + unit.value : undefined); }
    number.addEventListener("input", update);
    unit.addEventListener("change", update);
    box.appendChild(number);
    box.appendChild(unit);
    return box;
  };

  WorkflowBuilder.prototype.triggerCard = function () {
    var self = this, t = this.t, m = this.model, card = el("section", "wf-card wf-trigger");
    card.setAttribute("data-problems-for", "trigger");
    card.appendChild(el("h2", null, t.trigger));
    var body = el("div", "wf-body");
    card.appendChild(body);
    card.appendChild(el("ul", "node-problems"));
    if (m.other && typeof m.other.trigger === "string") {  // a trigger the builder cannot show: its text
      body.appendChild(el("p", "hint", t.as_text));
      body.appendChild(this.textBox(m.other, "trigger"));
      return card;
    }
    if (!m.trigger || typeof m.trigger !== "object") m.trigger = { kind: "segment" };
    var trigger = m.trigger;
    var kindTitles = { segment: t.segment_enter, segment_exit: t.segment_exit, event: t.event, date: t.date,
                       schedule: t.schedule };
    var kind = select(TRIGGER_KINDS.map(function (k) { return { value: k, title: kindTitles[k] }; }), trigger.kind);
    kind.querySelectorAll("option").forEach(function (o) { o.textContent = kindTitles[o.value] || o.value; });
    kind.id = "wf-trigger-kind";
    kind.addEventListener("change", function () {
      var next = { kind: kind.value };
      if (kind.value === "segment_exit") next.on = "exit";
      if ((kind.value === "segment" || kind.value === "segment_exit" || kind.value === "schedule") && trigger.segment) {
        next.segment = trigger.segment;
      }
      if (kind.value === "schedule") next.schedule = "0 10 * * *";
      if (kind.value === "date") { next.date = "contact.birthday"; next.before = "7d"; next.at = "10:00"; }
      if (kind.value === "event") next.event = "order.created";
      m.trigger = next;
      self.changed(true);
    });
    body.appendChild(labelled(t.trigger, kind));
    function set(key, value) {
      if (value === undefined || value === "") delete trigger[key]; else trigger[key] = value;
      self.changed(false);
    }
    function part(name, control, title) {
      var label = labelled(title, control);
      label.setAttribute("data-part", name);
      body.appendChild(label);
      return label;
    }
    var k = trigger.kind;
    if (k === "segment" || k === "segment_exit" || k === "schedule") {
      var segment = select(this.data.segments.map(function (s) { return { value: s.name, title: s.title }; }),
                           trigger.segment, t.pick);
      segment.addEventListener("change", function () { set("segment", segment.value); });
      part("segment", segment, t.segment);
    }
    if (k === "schedule") this.scheduleParts(trigger, part, set);
    if (k === "event") {
      var known = this.data.events.map(function (e) { return e.value; });
      var isApi = trigger.event && known.indexOf(trigger.event) < 0;
      var events = this.data.events.concat([{ value: "__api__", title: t.api_event }]);
      var event = select(events, isApi ? "__api__" : trigger.event, t.pick);
      event.querySelectorAll("option").forEach(function (o) {
        var e = events.filter(function (x) { return x.value === o.value; })[0];
        if (e && e.title) o.textContent = e.title + (e.value === "__api__" || e.title === e.value ? "" : " (" + e.value + ")");
      });
      event.addEventListener("change", function () {
        if (event.value === "__api__") { trigger.event = ""; self.changed(true); return; }
        trigger.event = event.value;
        if (event.value !== "promo.expiring") delete trigger.before;
        else trigger.before = trigger.before || "3d";
        if (event.value !== "deal.stuck") delete trigger.after;
        else trigger.after = trigger.after || "14d";
        self.changed(true);
      });
      part("event", event, t.event_name);
      if (isApi || trigger.event === "") {
        var apiName = el("input");
        apiName.value = trigger.event || "";
        apiName.placeholder = "cart_abandoned";
        apiName.addEventListener("input", function () { set("event", apiName.value.trim()); });
        part("event_name", apiName, t.api_event_name);
      }
      if (trigger.event === "promo.expiring") {
        part("before", this.duration(trigger.before, function (v) { set("before", v); }), t.before);
      }
      if (trigger.event === "deal.stuck") {
        part("after", this.duration(trigger.after, function (v) { set("after", v); }), t.stuck_for);
      }
    }
    if (k === "date") {
      var date = select(this.data.date_fields, trigger.date, t.pick);
      date.addEventListener("change", function () { set("date", date.value); });
      part("date", date, t.date_field);
      part("before", this.duration(trigger.before, function (v) { set("before", v); }), t.before);
      var at = el("input");
      at.value = trigger.at || "";
      at.placeholder = "10:00";
      at.className = "short";
      at.addEventListener("input", function () { set("at", at.value.trim()); });
      part("at", at, t.at);
    }
    return card;
  };

  // A cron schedule, with a helper for the usual ones: every day at HH:MM, every week on a day at HH:MM.
  WorkflowBuilder.prototype.scheduleParts = function (trigger, part, set) {
    var t = this.t;
    var cron = el("input");
    cron.value = trigger.schedule || "";
    cron.spellcheck = false;
    var parsed = /^(\d{1,2}) (\d{1,2}) \* \* (\*|[0-6])$/.exec(trigger.schedule || "");
    var mode = select([{ value: "daily", title: t.daily_at }, { value: "weekly", title: t.weekly_at },
                       { value: "custom", title: t.custom }], parsed ? (parsed[3] === "*" ? "daily" : "weekly") : "custom");
    mode.querySelectorAll("option").forEach(function (o) {
      o.textContent = { daily: t.daily_at, weekly: t.weekly_at, custom: t.custom }[o.value];
    });
    var days = (t.weekdays || "").split(",");
    var weekday = select([1, 2, 3, 4, 5, 6, 0].map(function (d, i) { return { value: String(d), title: days[i] }; }),
                         parsed && parsed[3] !== "*" ? parsed[3] : "1");
    weekday.querySelectorAll("option").forEach(function (o, i) { o.textContent = days[i] || o.value; });
    var time = el("input");
    time.className = "short";
    time.placeholder = "10:00";
    time.value = parsed ? ("0" + parsed[2]).slice(-2) + ":" + ("0" + parsed[1]).slice(-2) : "";
    function compose() {
      var hm = /^(\d{1,2}):(\d{2})$/.exec(time.value.trim());
      if (mode.value === "custom" || !hm) return;
      cron.value = parseInt(hm[2], 10) + " " + parseInt(hm[1], 10) + " * * " + (mode.value === "weekly" ? weekday.value : "*");
      set("schedule", cron.value);
    }
    function show() {
      weekday.hidden = mode.value !== "weekly";
      time.hidden = mode.value === "custom";
    }
    mode.addEventListener("change", function () { show(); compose(); });
    weekday.addEventListener("change", compose);
    time.addEventListener("input", compose);
    cron.addEventListener("input", function () { set("schedule", cron.value.trim()); });
    var helper = el("span", "wf-schedule");
    helper.appendChild(mode);
    helper.appendChild(weekday);
    helper.appendChild(time);
    show();
    part("schedule_helper", helper, "");
    part("schedule", cron, t.cron);
  };

  // A list of steps at `base` ("steps", "steps[3].then"); `one` says the list is written as one step.
  WorkflowBuilder.prototype.drawList = function (list, base, one) {
    var box = el("div", "wf-list"), self = this;
    list.forEach(function (node, i) {
      var path = one && list.length === 1 ? base : base + "[" + i + "]";
      box.appendChild(self.adder(list, i, base + "[" + i + "]"));
      box.appendChild(self.card(list, i, path));
    });
    box.appendChild(this.adder(list, list.length, base + "[" + list.length + "]"));
    return box;
  };

  WorkflowBuilder.prototype.adder = function (list, at, path) {
    var self = this, t = this.t, wrap = el("div", "wf-adder");
    if (this.readonly) { wrap.appendChild(el("div", "wf-arrow", "↓")); return wrap; }
    var add = button("wf-add secondary", t.add, t.add, function () {
      menu.hidden = !menu.hidden;
    });
    add.setAttribute("data-at", path);
    var menu = el("div", "wf-menu");
    menu.hidden = true;
    var choices = (this.data.kinds || []).filter(function (k) { return k.form.length; }).map(function (k) {
      return { kind: k.kind, title: k.title, summary: k.summary };
    });
    choices.push({ kind: "if", title: t.if, summary: t.if_summary });
    choices.push({ kind: "exit", title: t.exit, summary: t.exit_summary });
    choices.forEach(function (c) {
      var b = button("wf-kind", null, c.summary, function () {
        list.splice(at, 0, self.newNode(c.kind));
        self.changed(true);
      });
      b.setAttribute("data-add-kind", c.kind);
      b.appendChild(el("strong", null, c.title));
      if (c.summary) b.appendChild(el("span", "hint", " " + c.summary));
      menu.appendChild(b);
    });
    wrap.appendChild(el("div", "wf-arrow", "↓"));
    wrap.appendChild(add);
    wrap.appendChild(menu);
    return wrap;
  };

  WorkflowBuilder.prototype.newNode = function (kind) {
    if (kind === "exit") return { kind: "exit" };
    if (kind === "if") return { kind: "if", rule: undefined, then: [{ kind: "exit" }], then_one: true };
    var node = { kind: kind, options: {} };
    if (SHORT_NEW[kind]) node.short = true;
    return node;
  };

  WorkflowBuilder.prototype.card = function (list, i, path) {
    var self = this, t = this.t, node = list[i];
    var card = el("section", "wf-step wf-card");
    card.setAttribute("data-path", path);
    card.setAttribute("data-kind", node.kind);
    card.setAttribute("data-problems-for", path);
    var head = el("div", "wf-head");
    var kind = this.kinds[node.kind];
    var title = node.kind === "if" ? t.if : node.kind === "exit" ? t.exit : kind ? kind.title : node.kind;
    head.appendChild(el("strong", "wf-kind-title", title));
    if (kind && kind.summary) head.appendChild(el("span", "hint", " " + kind.summary));
    if (!this.readonly) {
      var moves = el("span", "wf-moves");
      if (i > 0) moves.appendChild(button("wf-up secondary", "↑", t.up, function () {
        list.splice(i - 1, 0, list.splice(i, 1)[0]); self.changed(true);
      }));
      if (i < list.length - 1) moves.appendChild(button("wf-down secondary", "↓", t.down, function () {
        list.splice(i + 1, 0, list.splice(i, 1)[0]); self.changed(true);
      }));
      moves.appendChild(button("wf-remove secondary", "×", t.remove, function () {
        list.splice(i, 1); self.changed(true);
      }));
      head.appendChild(moves);
    }
    card.appendChild(head);
    var body = el("div", "wf-body");
    card.appendChild(body);
    card.appendChild(el("ul", "node-problems"));
    if (node.kind === "text") {
      body.appendChild(el("p", "hint", t.as_text));
      body.appendChild(this.textBox(node, "text"));
    } else if (node.kind === "if") {
      this.drawIf(card, body, node, path);
    } else if (node.kind !== "exit" && kind) {
      this.drawForm(body, node, kind, path);
    }
    return card;
  };

  WorkflowBuilder.prototype.textBox = function (node, key) {
    var self = this, area = el("textarea", "code wf-text-node");
    area.rows = Math.min(10, (node[key] || "").split("\n").length + 1);
    area.value = node[key] || "";
    area.spellcheck = false;
    area.addEventListener("input", function () { node[key] = area.value; self.changed(false); });
    return area;
  };

  // Options that only mean something beside another option's value: hidden until it has it (or they are set,
  // so a value the server refuses stays in sight with its problem). Sending in the quiet hours is for
  // transactional messages only.
  var ONLY_WITH = { send: { quiet_hours: { key: "purpose", value: "transactional" } } };

  WorkflowBuilder.prototype.drawForm = function (body, node, kind, path) {
    var self = this, options = node.options || (node.options = {});
    var fields = {}, only = ONLY_WITH[node.kind] || {};
    function showOnly() {
      Object.keys(only).forEach(function (key) {
        if (fields[key]) fields[key].hidden = options[only[key].key] !== only[key].value && options[key] === undefined;
      });
    }
    kind.form.forEach(function (f) {
      var wrap = self.control(f, options, fields, function (value) {
        if (value === undefined || value === "") delete options[f.key]; else options[f.key] = value;
        showOnly();
        if (f.kind === "channel") {  // the templates offered follow the channel
          var old = fields.template;
          if (old) {
            var next = self.control(kind.form.filter(function (x) { return x.key === "template"; })[0], options, fields,
                                    function (v) { if (v) options.template = v; else delete options.template; self.changed(false); });
            if (old.parentNode) old.parentNode.replaceChild(next, old);
            fields.template = next;
          }
        }
        self.changed(false);
      });
      fields[f.key] = wrap;
      body.appendChild(wrap);
    });
    showOnly();
    void path;
  };

  WorkflowBuilder.prototype.control = function (f, options, fields, onValue) {
    var t = this.t, value = options[f.key], control;
    if (f.kind === "duration") {
      control = this.duration(value, onValue);
    } else if (f.kind === "choice") {
      control = select(f.choices.map(function (c) { return { value: c[0], title: c[1] }; }), value, t.pick);
      control.querySelectorAll("option").forEach(function (o) {
        var c = f.choices.filter(function (x) { return x[0] === o.value; })[0];
        if (c) o.textContent = c[1];
      });
      control.addEventListener("change", function () { onValue(control.value || undefined); });
    } else if (f.kind === "channel") {
      control = select(this.data.channels.map(function (c) { return { value: c }; }), value, t.pick);
      control.addEventListener("change", function () { onValue(control.value || undefined); });
    } else if (f.kind === "template") {
      control = this.templatePicker(options, value, onValue);
    } else if (f.kind === "purpose") {
      control = select(this.data.purposes, value, t.pick);
      control.addEventListener("change", function () { onValue(control.value || undefined); });
    } else if (f.kind === "percent") {
      control = el("span", "wf-percent");
      var pct = el("input");
      pct.type = "number";
      pct.min = "0";
      pct.max = "100";
      pct.step = "any";
      pct.className = "short";
      var pm = /^([\d.]+)\s*%$/.exec(value === undefined ? "" : String(value));
      pct.value = pm ? pm[1] : (value === undefined ? "" : String(value));
      pct.addEventListener("input", function () { onValue(pct.value ? pct.value + "%" : undefined); });
      control.appendChild(pct);
      control.appendChild(el("span", null, " %"));
    } else if (f.kind === "integer") {
      control = el("input");
      control.type = "number";
      control.className = "short";
      control.value = value === undefined ? "" : String(value);
      control.addEventListener("input", function () {
        var n = parseInt(control.value, 10);
        onValue(isNaN(n) ? undefined : n);
      });
    } else {
      control = el("input");
      if (f.kind === "template_text") control.className = "wide";
      if (f.kind === "time") control.className = "short";
      control.value = value === undefined || value === null ? "" : String(value);
      control.spellcheck = f.kind === "template_text" || f.kind === "text";
      control.addEventListener("input", function () { onValue(control.value === "" ? undefined : control.value); });
    }
    if (f.placeholder && control.tagName === "INPUT") control.placeholder = f.placeholder;
    if (f.placeholder && control.querySelector && control.querySelector("input[type=number]") && f.kind !== "duration") {
      control.querySelector("input").placeholder = f.placeholder.replace("%", "");
    }
    var wrap = labelled(f.title + (f.required ? " *" : ""), control);
    wrap.setAttribute("data-option", f.key);
    if (f.kind === "template_text" && !this.readonly) wrap.appendChild(this.variablePicker(control, onValue));
    if (f.hint) wrap.appendChild(el("span", "hint wf-hint", f.hint));
    return wrap;
  };

  // Templates of the chosen channel only (email letters or text messages), by title with the name small beside.
  WorkflowBuilder.prototype.templatePicker = function (options, value, onValue) {
    var t = this.t, box = el("span", "wf-template");
    if (!options.channel) {
      var waiting = select([], value, t.channel_first);
      waiting.disabled = !value;
      waiting.addEventListener("change", function () { onValue(waiting.value || undefined); });
      box.appendChild(waiting);
      return box;
    }
    var email = options.channel === "email";
    var offered = this.data.templates.filter(function (x) { return x.email === email; });
    var control = select(offered.map(function (x) { return { value: x.name }; }), value, t.pick);
    var byName = {};
    offered.forEach(function (x) { byName[x.name] = x; });
    control.querySelectorAll("option").forEach(function (o) {
      if (byName[o.value]) o.textContent = byName[o.value].title;
    });
    var code = el("small", "hint wf-code");
    function showName() { code.textContent = control.value && byName[control.value] && byName[control.value].title !==
                                             control.value ? control.value : ""; }
    control.addEventListener("change", function () { showName(); onValue(control.value || undefined); });
    showName();
    box.appendChild(control);
    box.appendChild(code);
    return box;
  };

  // «Вставить…»: a variable of the contact or the promo code goes into the text at the cursor.
  WorkflowBuilder.prototype.variablePicker = function (input, onValue) {
    var t = this.t, menu = el("select", "wf-insert");
    menu.setAttribute("aria-label", t.insert);
    var first = el("option", null, t.insert);
    first.value = "";
    menu.appendChild(first);
    var groups = {};
    (this.data.variables || []).forEach(function (v) {
      if (!groups[v.group]) {
        groups[v.group] = el("optgroup");
        groups[v.group].label = v.group;
        menu.appendChild(groups[v.group]);
      }
      var o = el("option", null, v.title);
      o.value = v.snippet;
      if (v.example) o.title = v.example;
      groups[v.group].appendChild(o);
    });
    var at = null;
    function remember() { at = [input.selectionStart, input.selectionEnd]; }
    input.addEventListener("keyup", remember);
    input.addEventListener("click", remember);
    input.addEventListener("blur", remember);
    menu.addEventListener("change", function () {
      var snippet = menu.value;
      menu.value = "";
      if (!snippet) return;
      var start = at ? at[0] : input.value.length, end = at ? at[1] : input.value.length;
      input.value = input.value.slice(0, start) + snippet + input.value.slice(end);
      var caret = start + snippet.length;
      input.focus();
      input.setSelectionRange(caret, caret);
      at = [caret, caret];
      onValue(input.value);
    });
    return menu;
  };

  WorkflowBuilder.prototype.drawIf = function (card, body, node, path) {
    var self = this, t = this.t, rule = this.data.rule || {};
    var host = el("div", "segment-builder wf-rule");
    body.appendChild(host);
    if (window.Hub.RuleEditor) {
      var extra = [{ value: "run.started_at", title: t.run_started }];
      var editor = new window.Hub.RuleEditor(host, {
        catalog: rule.catalog, texts: rule.texts, segments: rule.segments, suggestUrl: rule.suggestUrl,
        path: path + ".if", readonly: this.readonly, extraValues: { date: extra, datetime: extra },
        typedTitle: t.typed_date,
        onChange: function () { node.rule = editor.getRule(); self.changed(false); }
      });
      editor.setRule(node.rule);
      editor.setHints(this.hints);
      this.editors.push({ editor: editor, path: path + ".if" });
    }
    if (!this.readonly) {  // a ready-made rule, in the card's header with what it means
      var preset = button("wf-preset-bought-since secondary", t.preset_bought, t.preset_hint, function () {
        node.rule = copy(BOUGHT_SINCE);
        self.changed(true);
      });
      var head = card.querySelector(":scope > .wf-head"), moves = head.querySelector(".wf-moves");
      var presetBox = el("span", "wf-preset");
      presetBox.appendChild(preset);
      presetBox.appendChild(el("small", "hint", t.preset_hint));
      head.insertBefore(presetBox, moves);
    }
    ["then", "else"].forEach(function (branch) {
      var box = el("div", "wf-branch");
      box.setAttribute("data-branch", branch);
      box.appendChild(el("div", "wf-branch-title", branch === "then" ? t.yes : t.no));
      // A branch the text does not have is drawn empty; an empty «нет» is left out when written (prune).
      if (!Array.isArray(node[branch])) node[branch] = [];
      var holder = node[branch];
      var view = self.drawList(holder, path + "." + branch, !!node[branch + "_one"]);
      if (!holder.length) view.insertBefore(el("p", "hint", t.empty_branch), view.firstChild);
      box.appendChild(view);
      if (!self.readonly && !(holder.length && holder[holder.length - 1].kind === "exit")) {
        box.appendChild(button("wf-exit secondary", t.exit, t.exit_summary, function () {
          holder.push({ kind: "exit" });
          self.changed(true);
        }));
      }
      body.appendChild(box);
    });
  };

  WorkflowBuilder.prototype.settingsCard = function () {
    var self = this, t = this.t, m = this.model, card = el("section", "wf-settings");
    card.appendChild(el("h2", null, t.settings));
    var body = el("div", "wf-body");
    card.appendChild(body);
    function slot(path, child) {
      var box = el("div", "wf-setting");
      box.setAttribute("data-problems-for", path);
      var inner = el("div", "wf-body");
      inner.appendChild(child);
      box.appendChild(inner);
      box.appendChild(el("ul", "node-problems"));
      body.appendChild(box);
    }
    // goal
    var goal = m.goal && typeof m.goal === "object" ? m.goal : null;
    var goalEvent = select(this.data.goal_events, goal ? goal.event : "", t.goal_none);
    goalEvent.id = "wf-goal-event";
    goalEvent.addEventListener("change", function () {
      if (!goalEvent.value) delete m.goal;
      else m.goal = { event: goalEvent.value, within: (goal && goal.within) || "30d" };
      self.changed(true);
    });
    var goalBox = el("span", "wf-goal");
    goalBox.appendChild(labelled(t.goal, goalEvent));
    if (goal) {
      var within = this.duration(goal.within, function (v) {
        if (v === undefined) delete goal.within; else goal.within = v;
        self.changed(false);
      });
      within.id = "wf-goal-within";
      goalBox.appendChild(labelled(t.goal_within, within));
    }
    slot("goal", goalBox);
    // holdout
    var holdout = el("input");
    holdout.id = "wf-holdout";
    holdout.type = "number";
    holdout.min = "0";
    holdout.max = "50";
    holdout.className = "short";
    var hm = /^([\d.]+)%$/.exec(m.holdout === undefined || m.holdout === null ? "" : String(m.holdout));
    holdout.value = hm ? hm[1] : (m.holdout === undefined || m.holdout === null ? "" : String(m.holdout));
    holdout.addEventListener("input", function () {
      if (holdout.value === "") delete m.holdout; else m.holdout = holdout.value + "%";
      self.changed(false);
    });
    slot("holdout", labelled(t.holdout, holdout));
    // reentry
    var again = m.reentry !== undefined && m.reentry !== null && m.reentry !== "never";
    var reentry = select([{ value: "never", title: t.reentry_never }, { value: "after", title: t.reentry_after }],
                         again ? "after" : "never");
    reentry.querySelectorAll("option").forEach(function (o) {
      o.textContent = o.value === "never" ? t.reentry_never : t.reentry_after;
    });
    reentry.id = "wf-reentry";
    reentry.addEventListener("change", function () {
      m.reentry = reentry.value === "never" ? "never" : "180d";
      self.changed(true);
    });
    var reBox = el("span", "wf-reentry");
    reBox.appendChild(labelled(t.reentry, reentry));
    if (again) {
      var after = this.duration(m.reentry, function (v) { m.reentry = v === undefined ? "never" : v; self.changed(false); });
      after.id = "wf-reentry-after";
      reBox.appendChild(after);
    }
    slot("reentry", reBox);
    // keys the builder has no form for, as their text
    Object.keys(m.other || {}).forEach(function (key) {
      if (key === "trigger" || key === "steps") return;
      var box = el("div");
      box.appendChild(el("p", "hint", key + " — " + t.as_text));
      box.appendChild(self.textBox(m.other, key));
      slot(key, box);
    });
    return card;
  };

  // --- the page ---------------------------------------------------------------------------

  function start() {
    var form = document.getElementById("workflow-form");
    var dataNode = document.getElementById("workflow-builder-data");
    if (!form || !dataNode || !document.getElementById("workflow-builder")) return;
    var data = JSON.parse(dataNode.textContent);
    var builder = new WorkflowBuilder(form, data);
    builder.render();
    if ((data.problems || []).length) builder.showAnswer({ ok: false, problems: data.problems, shown: data.shown });
    if (builder.readonly) return;
    builder.area.addEventListener("input", function () { builder.pending = false; builder.checkLater(); });
    form.addEventListener("submit", function (event) {
      if (!builder.pending) return;
      event.preventDefault();  // the text must hold the last click before it is saved
      builder.writeTree().then(function () { builder.pending = false; form.submit(); });
    });
    if (!(data.problems || []).length) builder.checkText(false);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
