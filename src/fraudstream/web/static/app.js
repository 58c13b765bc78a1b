// The dashboard page: live feed (server-sent events), charts, search, an alert's record and
// triage. Every value from the store is put on the page as text (textContent, text nodes),
// never as HTML: an alert's fields may hold anything a producer sent.
"use strict";

(function () {
  const FEED_MAX = 200; // alerts the live feed keeps
  const STATS_EVERY_MS = 3000; // charts refresh at most this often while alerts arrive
  const SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW"];
  const COLOURS = {
    CRITICAL: "#c62828", HIGH: "#ef6c00", MEDIUM: "#b58900", LOW: "#607d8b",
    VELOCITY_FRAUD: "#1565c0", HIGH_VALUE_FRAUD: "#b58900", GEO_ANOMALY_FRAUD: "#6a1b9a", DEVICE_SHARING_FRAUD: "#c62828",
    ACCOUNT_TAKEOVER: "#00897b",
  };
  const SPARE = ["#5d4037", "#ad1457", "#558b2f", "#455a64", "#f06292"];
  const HELD_NOTE = "held back: looked normal for this customer";
  const VERDICT_TEXT = { confirmed_fraud: "confirmed fraud", false_positive: "false positive" };

  const $ = (id) => document.getElementById(id);

  // el("li", {class: "x"}, "text", child) — strings become text nodes, never markup.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "title") node.title = value;
      else node.dataset[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function fmtTime(ms) {
    if (ms === null || ms === undefined) return "–";
    const d = new Date(ms);
    return isNaN(d) ? String(ms) : d.toISOString().replace("T", " ").slice(0, 19) + "Z";
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined) return "–";
    const sign = ms < 0 ? "−" : "";
    let s = Math.abs(ms) / 1000;
    if (s < 1) return sign + Math.round(s * 1000) + " ms";
    if (s < 90) return sign + s.toFixed(1) + " s";
    if (s < 5400) return sign + (s / 60).toFixed(1) + " min";
    if (s < 172800) return sign + (s / 3600).toFixed(1) + " h";
    return sign + (s / 86400).toFixed(1) + " days";
  }

  function fmtBucket(ms) {
    for (const [unit, size] of [["day", 86400000], ["h", 3600000], ["min", 60000], ["s", 1000]]) {
      if (ms % size === 0) return (ms === size ? "" : ms / size + " ") + unit;
    }
    return ms + " ms";
  }

  function fmtAmount(v) {
    return v === null || v === undefined ? "–" : "₹" + Number(v).toLocaleString("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function fmtRate(v) {
    return v === null || v === undefined ? "–" : Number(v).toFixed(v < 10 ? 2 : 0);
  }

  function cookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...rest] = part.trim().split("=");
      if (key === name) return decodeURIComponent(rest.join("="));
    }
    return "";
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || response.status + " " + response.statusText);
    return body;
  }

  function reviewBadge(review) {
    if (!review) return el("span", { class: "badge" }, "unreviewed");
    return el("span", { class: "badge " + review.verdict, title: "by " + review.reviewer + " at " + fmtTime(review.reviewed_at) },
      VERDICT_TEXT[review.verdict] || review.verdict);
  }

  // The learned model's risk for the alert's order, 0.00-1.00 with a small bar; "—" without one.
  function riskBadge(risk, long) {
    if (typeof risk !== "number" || !isFinite(risk)) {
      return el("span", { class: "risk none", title: "no risk: the model did not score this order" }, "risk —");
    }
    const r = Math.min(1, Math.max(0, risk));
    const bar = el("span", { class: "bar" });
    bar.style.width = Math.round(r * 100) + "%"; // CSSOM, which the page's CSP allows
    return el("span", { class: "risk " + (r >= 0.7 ? "r-high" : r >= 0.3 ? "r-mid" : "r-low"),
      title: "risk " + r.toFixed(3) + ": the learned model's, for this order" },
      el("span", { class: "track" }, bar), long ? "risk " + r.toFixed(3) : r.toFixed(2));
  }

  // The version of the live rules that raised the alert ("v3"); "–" for alerts from before versions.
  function versionBadge(a) {
    const v = a.rule_version;
    if (v === null || v === undefined) return el("span", { class: "rv none", title: "raised before versioned rules" }, "rules –");
    return el("span", { class: "rv", title: "raised by version " + v + " of the rules" }, "v" + v);
  }

  function alertItem(a, fresh) {
    const li = el("li", { class: "sev-" + a.severity + (fresh ? " fresh" : "") + (a.held_back ? " held" : ""), alert: a.alert_id },
      el("span", { class: "sev t-" + a.severity }, a.severity),
      el("span", { class: "who" }, a.alert_type, " · user ", a.user_id, " · device ", a.device_id),
      reviewBadge(a.review),
      riskBadge(a.risk),
      versionBadge(a),
      el("span", { class: "msg" }, fmtTime(a.event_time), " · ", fmtAmount(a.amount), " · ", a.message),
      a.held_back ? el("span", { class: "held-note" }, HELD_NOTE) : null);
    li.addEventListener("click", () => openAlert(a.alert_id));
    return li;
  }

  // -- the live feed --------------------------------------------------------------------------

  const feedItems = new Map(); // alert id -> item, for review updates

  function addToFeed(items) {
    const feed = $("feed");
    for (const a of items.slice().reverse()) { // items come newest first; insert oldest first
      const li = alertItem(a, true);
      feed.insertBefore(li, feed.firstChild);
      feedItems.set(a.alert_id, a);
    }
    while (feed.children.length > FEED_MAX) {
      feedItems.delete(feed.lastChild.dataset.alert);
      feed.removeChild(feed.lastChild);
    }
    $("feed-empty").hidden = feed.children.length > 0;
    $("feed-count").textContent = feed.children.length ? "(" + feed.children.length + " since this page opened)" : "";
  }

  function reviewed(review) {
    const a = feedItems.get(review.alert_id);
    if (a) {
      a.review = review;
      for (const li of $("feed").children) {
        if (li.dataset.alert === review.alert_id) li.replaceWith(alertItem(a, false));
      }
    }
    if (lastResults.some((r) => r.alert_id === review.alert_id)) runSearch(currentPage);
  }

  let feedLastId = null; // the newest alert row the feed got: a new connection asks for what followed

  function connect() {
    const source = new EventSource(feedLastId === null ? "/api/events" : "/api/events?after=" + encodeURIComponent(feedLastId));
    const conn = $("conn");
    source.addEventListener("open", () => { conn.textContent = "live"; conn.className = "conn up"; });
    source.addEventListener("error", () => {
      conn.textContent = "reconnecting…"; conn.className = "conn down";
      // The browser retries by itself after a dropped connection, but gives up for good on an
      // answer that is not a stream (503: too many feeds, 401, a restart's 502): start anew.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
    });
    source.addEventListener("alerts", (e) => {
      if (/^\d+$/.test(e.lastEventId)) feedLastId = e.lastEventId;
      addToFeed(JSON.parse(e.data));
      scheduleStats();
      if (currentPage === 1) scheduleSearch();
    });
    source.addEventListener("health", (e) => renderHealth(JSON.parse(e.data)));
    source.addEventListener("review", (e) => reviewed(JSON.parse(e.data)));
  }

  // -- pipeline health ------------------------------------------------------------------------

  function card(id, state, value, sub) {
    const c = $(id);
    c.className = "card " + (state || "");
    c.querySelector(".v").textContent = value;
    const s = c.querySelector(".s");
    if (sub !== undefined && s.tagName !== "UL") s.textContent = sub;
  }

  function renderHealth(h) {
    const store = h.store || {};
    const where = $("store-state");
    const shared = store.kind === "postgresql" ? " in PostgreSQL" : "";
    where.textContent = store.present ? store.alerts + " alerts stored" + shared : (store.message || "no store yet");
    where.title = store.location ? "store: " + store.location : "";
    const job = h.job || {};
    if (!job.job_id && !job.running) card("h-job", "bad", "not running", job.message || "");
    else card("h-job", job.running ? "ok" : "bad", job.state || (job.running ? "RUNNING" : "stopped"), job.message || "job " + job.job_id);
    card("h-orders", job.running ? "ok" : "", fmtRate(job.orders_per_s), job.running ? "per second (job)" : "no job");
    card("h-alerts", "", fmtRate(store.alerts_per_s), "per second (stored)");
    const lag = job.event_time_lag_ms;
    card("h-lag", lag === null || lag === undefined ? "" : lag > 60000 ? "warn" : "ok", fmtDuration(lag),
      job.watermark ? "watermark " + fmtTime(job.watermark) : "no watermark yet");
    const cp = job.checkpoint;
    if (cp && cp.id !== undefined) {
      card("h-checkpoint", cp.age_ms > 60000 ? "warn" : "ok", "#" + cp.id + ", " + fmtDuration(cp.age_ms) + " ago",
        "took " + fmtDuration(cp.duration_ms) + ", " + cp.completed + " completed, " + cp.failed + " failed");
    } else card("h-checkpoint", "", cp ? "none yet" : "–", job.running ? "" : "no job");
    const copier = h.copier || {};
    if (copier.state === "ok") {
      // The server counts "behind" net of Kafka's transaction markers (web/health.py).
      const caughtUp = copier.caught_up;
      card("h-copier", caughtUp ? "ok" : "warn", caughtUp ? "caught up" : copier.behind + " behind",
        copier.partitions.map((p) => p.topic + "/" + p.partition + ": " + p.next_offset + " of " + p.end).join(", "));
    } else card("h-copier", copier.state === "unknown" ? "warn" : "", copier.state === "unknown" ? "unknown" : "not used", copier.message || "");
    const dead = store.dead_letters || [];
    const total = dead.reduce((n, d) => n + d.records, 0);
    card("h-dead", total ? "warn" : "ok", String(total));
    const list = $("h-dead").querySelector(".s");
    clear(list);
    for (const d of dead) list.append(el("li", {}, d.reason, ": ", d.records));
  }

  // -- charts ---------------------------------------------------------------------------------

  const charts = {};
  let statsTimer = null;
  let statsAt = 0;

  function scheduleStats() {
    if (statsTimer) return;
    const wait = Math.max(0, STATS_EVERY_MS - (Date.now() - statsAt));
    statsTimer = setTimeout(() => { statsTimer = null; loadStats(); }, wait);
  }

  function drawChart(id, buckets, series, order) {
    const target = $(id);
    if (charts[id]) { charts[id].destroy(); delete charts[id]; }
    clear(target);
    const keys = Object.keys(series).sort((a, b) => (order ? order.indexOf(a) - order.indexOf(b) : a.localeCompare(b)));
    if (!buckets.length || !keys.length) {
      target.append(el("p", { class: "muted" }, "no alerts in this range"));
      return;
    }
    const data = [buckets.map((b) => b / 1000), ...keys.map((k) => series[k])];
    const opts = {
      width: Math.max(target.clientWidth, 300),
      height: 180,
      // steps: each bucket's count holds over the bucket's width
      series: [{}, ...keys.map((k, i) => ({ label: k, stroke: COLOURS[k] || SPARE[i % SPARE.length], width: 2,
        paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } }))],
      axes: [{}, { size: 40 }],
      scales: { x: { time: true } },
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"), // the axis in UTC, like every time shown
      legend: { live: false },
    };
    charts[id] = new uPlot(opts, data, target);
  }

  function filterRange() {
    const form = $("search");
    const out = new URLSearchParams();
    for (const name of ["since", "until"]) {
      const v = form.elements[name].value;
      // The inputs are labelled UTC, as is every time on the page: not the browser's zone.
      if (v) out.set(name, String(Date.parse(v + "Z")));
    }
    return out;
  }

  function topList(id, rows, field) {
    const list = $(id);
    clear(list);
    for (const r of rows) {
      const li = el("li", {}, r.key === null ? "(none)" : r.key, " ", el("span", { class: "muted" }, "(" + r.alerts + ")"));
      li.addEventListener("click", () => {
        const form = $("search");
        form.elements.user.value = field === "user" ? r.key : "";
        form.elements.device.value = field === "device" ? r.key : "";
        runSearch(1);
      });
      list.append(li);
    }
  }

  async function loadStats() {
    statsAt = Date.now();
    try {
      const query = filterRange();
      query.set("top", "8");
      const s = await getJSON("/api/stats?" + query.toString());
      $("bucket").textContent = s.bucket_ms ? "(alerts per " + fmtBucket(s.bucket_ms) + " of event time)" : "";
      drawChart("chart-type", s.buckets, s.by_type);
      drawChart("chart-severity", s.buckets, s.by_severity, SEVERITIES);
      topList("top-users", s.top_users, "user");
      topList("top-devices", s.top_devices, "device");
    } catch (err) {
      $("bucket").textContent = "(charts unavailable: " + err.message + ")";
    }
  }

  // -- search ---------------------------------------------------------------------------------

  let currentPage = 1;
  let maxId = null; // page 1's newest row: later pages ask for rows up to it, so they do not shift
  let lastResults = [];
  let searchTimer = null;

  function scheduleSearch() {
    if (searchTimer) return;
    searchTimer = setTimeout(() => { searchTimer = null; runSearch(currentPage); }, 1000);
  }

  function searchParams(page) {
    const form = $("search");
    const out = filterRange();
    for (const name of ["user", "device", "type", "severity", "review", "min_risk", "held_back", "rule_version"]) {
      const v = form.elements[name].value.trim();
      if (v) out.set(name, v);
    }
    if (form.elements.sort.value === "risk") out.set("sort", "risk");
    out.set("page", String(page));
    if (page > 1 && maxId !== null) out.set("before_id", String(maxId));
    return out;
  }

  async function runSearch(page) {
    const error = $("search-error");
    try {
      const r = await getJSON("/api/alerts?" + searchParams(page).toString());
      error.textContent = r.store ? "no store yet: " + r.store : "";
      currentPage = r.page;
      if (r.page === 1) maxId = r.max_id === undefined ? null : r.max_id;
      lastResults = r.items;
      const body = $("results").querySelector("tbody");
      clear(body);
      for (const a of r.items) {
        const tr = el("tr", { class: "sev-" + a.severity + (a.held_back ? " held" : ""), alert: a.alert_id },
          el("td", {}, fmtTime(a.event_time)),
          el("td", { class: "sev t-" + a.severity }, a.severity),
          el("td", {}, a.alert_type),
          el("td", {}, a.user_id),
          el("td", {}, a.device_id),
          el("td", { class: "num" }, fmtAmount(a.amount)),
          el("td", {}, riskBadge(a.risk)),
          el("td", {}, versionBadge(a)),
          el("td", {}, reviewBadge(a.review)),
          el("td", {}, a.message, a.held_back ? el("div", { class: "held-note" }, HELD_NOTE) : null));
        tr.addEventListener("click", () => openAlert(a.alert_id));
        body.append(tr);
      }
      const pages = Math.max(1, Math.ceil(r.total / r.page_size));
      $("page-info").textContent = "page " + r.page + " of " + pages + " · " + r.total + " alerts";
      $("prev").disabled = r.page <= 1;
      $("next").disabled = r.page >= pages;
    } catch (err) {
      error.textContent = err.message;
    }
  }

  // -- one alert, and triage ------------------------------------------------------------------

  let openId = null;

  function kv(target, pairs) {
    clear(target);
    for (const [key, value] of pairs) {
      target.append(el("dt", {}, key), el("dd", {}, value));
    }
  }

  function detailText(value) {
    if (Array.isArray(value)) return value.join(", ");
    if (value !== null && typeof value === "object") return JSON.stringify(value);
    return value;
  }

  function fillList(id, items) {
    const list = $(id);
    clear(list);
    for (const a of items) list.append(alertItem(a, false));
    if (!items.length) list.append(el("li", { class: "muted" }, "none"));
  }

  // The triggering order's fields beyond the store's summary (the archive has them), by label;
  // labels of the generator (behavior, fraud_actor) are not shown to the analyst judging it.
  const ORDER_FIELDS = [["city", "city"], ["restaurant_id", "restaurant"], ["payment_method", "payment"]];
  const SHOWN = new Set(["transaction_id", "user_id", "device_id", "amount", "event_time", "city", "restaurant_id",
    "payment_method", "behavior", "fraud_actor"]);

  // The orders the rule looked at (from the archive), newest first, or why there are none.
  function fillOrders(orders, archive, triggerId) {
    const byUser = orders.key !== "device_id";  // a user's orders show their device, a device's their user
    $("d-orders-who").textContent = byUser ? "device" : "user";
    const body = $("d-orders").querySelector("tbody");
    clear(body);
    for (const o of orders.items) {
      const tr = el("tr", { class: o.transaction_id === triggerId ? "trigger" : "" },
        el("td", {}, fmtTime(o.event_time)),
        el("td", {}, o.transaction_id),
        el("td", {}, fmtAmount(o.amount)),
        el("td", {}, o.city),
        el("td", {}, byUser ? o.device_id : o.user_id),
        el("td", {}, o.payment_method));
      body.append(tr);
    }
    let note;
    if (archive !== "available") note = "Archive: " + archive + ".";
    else if (orders.key) {
      note = orders.total + (orders.total === 1 ? " order of " : " orders of ") + (orders.key === "user_id" ? "user " : "device ") + orders.value +
        " from " + fmtTime(orders.after) + " (excluded) to " + fmtTime(orders.until) +
        (orders.total > orders.items.length ? ", the newest " + orders.items.length + " shown" : "") +
        (orders.truncated ? "; only the window's newest hours were read" : "") + ".";
    } else note = "This rule looks at the order alone.";
    $("d-orders-note").textContent = note;
    $("d-orders").hidden = !orders.items.length;
  }

  function fmtNumber(v) {
    return Number(v).toLocaleString("en-IN", { maximumFractionDigits: 2 });
  }

  // ACCOUNT_TAKEOVER: the features that raised the order's risk, in words (the server's), each
  // with its value, the value usual for honest orders, and how much the risk falls without it.
  function fillReasons(reasons) {
    const body = $("d-reasons").querySelector("tbody");
    clear(body);
    for (const x of reasons) {
      body.append(el("tr", {}, el("td", { title: x.feature }, x.text), el("td", {}, fmtNumber(x.value)),
        el("td", {}, fmtNumber(x.usual)), el("td", {}, "+" + Number(x.raised_by).toFixed(3))));
    }
    $("d-reasons-box").hidden = !reasons.length;
  }

  async function openAlert(alertId) {
    openId = alertId;
    $("d-triage-msg").textContent = "";
    try {
      const r = await getJSON("/api/alerts/" + encodeURIComponent(alertId));
      if (openId !== alertId) return;
      const a = r.alert;
      $("d-title").textContent = a.severity + " " + a.alert_type;
      $("d-title").className = "t-" + a.severity;
      $("d-message").textContent = a.message;
      const o = r.order;
      const order = [["transaction", o.transaction_id], ["user", o.user_id], ["device", o.device_id],
        ["amount", fmtAmount(o.amount)], ["event time", fmtTime(o.event_time)]];
      for (const [key, label] of ORDER_FIELDS) if (o[key] !== undefined) order.push([label, o[key]]);
      for (const [key, value] of Object.entries(o)) {  // the producer's extra fields, as archived
        if (!SHOWN.has(key)) order.push([key.replace(/_/g, " "), detailText(value)]);
      }
      order.push(["detected", fmtTime(a.detected_at)], ["alert id", a.alert_id],
        ["rules version", a.rule_version === null || a.rule_version === undefined ? "– (before versioned rules)" : "v" + a.rule_version]);
      kv($("d-order"), order);
      const risk = $("d-risk");
      clear(risk);
      risk.append(riskBadge(a.risk, true));
      if (a.held_back) risk.append(el("span", { class: "held-note" }, HELD_NOTE + " (stored, not notified)"));
      fillReasons(r.reasons || []);
      const shown = Object.entries(r.details).filter(([k]) => !(k === "reasons" && (r.reasons || []).length));
      kv($("d-details"), shown.map(([k, v]) => [k.replace(/_/g, " "), detailText(v)]));
      fillOrders(r.orders, r.archive, o.transaction_id);
      const history = $("d-reviews");
      clear(history);
      for (const v of r.reviews) {
        history.append(el("li", {}, el("span", { class: "badge " + v.verdict }, VERDICT_TEXT[v.verdict] || v.verdict),
          " by ", v.reviewer, " at ", fmtTime(v.reviewed_at), v.note ? " — " + v.note : ""));
      }
      if (!r.reviews.length) history.append(el("li", { class: "muted" }, "not reviewed yet"));
      fillList("d-user", r.same_user);
      fillList("d-device", r.same_device);
      $("detail").hidden = false;
    } catch (err) {
      $("search-error").textContent = "cannot open the alert: " + err.message;
    }
  }

  async function triage(verdict) {
    const msg = $("d-triage-msg");
    const reviewer = $("reviewer").value.trim();
    if (!reviewer) {
      msg.textContent = "Enter your name as reviewer (top right) first.";
      $("reviewer").focus();
      return;
    }
    const note = $("d-note").value.trim();
    try {
      const response = await fetch("/api/alerts/" + encodeURIComponent(openId) + "/reviews", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": cookie("fraudstream_csrf") },
        body: JSON.stringify({ verdict: verdict, note: note || null, reviewer: reviewer }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(body.error || String(response.status));
      $("d-note").value = "";
      await openAlert(openId);
      msg.textContent = "Stored: " + VERDICT_TEXT[verdict] + ".";
    } catch (err) {
      msg.textContent = "Not stored: " + err.message;
    }
  }

  // A notification's link: <dashboard>/#/alerts/<alert id>.
  function openFromHash() {
    const m = /^#\/alerts\/(.+)$/.exec(location.hash);
    if (!m) return;
    let alertId;
    try { alertId = decodeURIComponent(m[1]); } catch (err) { return; }
    openAlert(alertId);
  }

  // -- the rules: in force, history, proposing a change ------------------------------------

  const RULES_EVERY_MS = 10000;

  function fmtValue(v) {
    if (typeof v === "boolean") return v ? "on" : "off";
    if (v === null || v === undefined) return "–";
    return String(v);
  }

  function versionLine(v) {
    return el("li", {},
      el("strong", {}, "v" + v.version), " ", fmtTime(v.created_at), " by ", v.author || "?",
      v.comment ? el("span", { class: "comment" }, " — ", v.comment) : null,
      v.reverts !== null && v.reverts !== undefined ? el("span", { class: "muted" }, " (reverts v" + v.reverts + ")") : null,
      v.changes.length ? el("ul", { class: "changes" }, ...v.changes.map((c) => el("li", {}, c))) : null);
  }

  async function loadRules() {
    try {
      const r = await getJSON("/api/rules");
      $("rules-state").textContent = "(topic " + r.topic + ")";
      $("propose-disabled").hidden = r.proposing;
      $("propose").hidden = !r.proposing;
      if (r.state !== "ok") {
        $("rules-error").textContent = r.message;
        $("rules-current").hidden = true;
        return;
      }
      $("rules-error").textContent = "";
      const c = r.current;
      const meta = $("rules-meta");
      clear(meta);
      meta.append(el("strong", { class: "rules-version" }, "version " + c.version + " in force"),
        c.version === 0 ? " (the settings' own: nothing published yet)" : " — by " + c.author + " at " + fmtTime(c.created_at),
        c.comment ? el("span", { class: "comment" }, " — ", c.comment) : null);
      const body = $("rules-table").querySelector("tbody");
      clear(body);
      for (const it of c.items) {
        body.append(el("tr", { class: it.differs ? "differs" : "" }, el("td", {}, it.key), el("td", {}, fmtValue(it.value)),
          el("td", { class: "muted" }, it.differs ? fmtValue(it.settings) : "same")));
      }
      $("rules-current").hidden = false;
      const history = $("rules-history");
      clear(history);
      for (const v of r.history) history.append(versionLine(v));
      if (!r.history.length) history.append(el("li", { class: "muted" }, "no version published yet"));
      const rejected = $("rules-rejected");
      clear(rejected);
      for (const x of r.rejected) rejected.append(el("li", {}, "offset " + x.offset + ": ", x.reason));
      $("rules-rejected-box").hidden = !r.rejected.length;
    } catch (err) {
      $("rules-error").textContent = "rules unavailable: " + err.message;
    }
  }

  // A backtest's result, whatever its shape: objects as key/value tables, lists of objects as tables.
  function renderResult(value) {
    if (Array.isArray(value)) {
      if (value.length && value.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
        const cols = [...new Set(value.flatMap((x) => Object.keys(x)))];
        return el("table", { class: "orders" }, el("thead", {}, el("tr", {}, ...cols.map((k) => el("th", {}, k.replace(/_/g, " "))))),
          el("tbody", {}, ...value.map((x) => el("tr", {}, ...cols.map((k) => el("td", {}, renderResult(x[k])))))));
      }
      return value.map(fmtNumberish).join(", ");
    }
    if (value !== null && typeof value === "object") {
      const dl = el("dl", { class: "kv" });
      for (const [k, v] of Object.entries(value)) dl.append(el("dt", {}, k.replace(/_/g, " ")), el("dd", {}, renderResult(v)));
      return dl;
    }
    return fmtNumberish(value);
  }

  function fmtNumberish(v) {
    if (typeof v === "number" && !Number.isInteger(v)) return v.toFixed(3);
    return fmtValue(v);
  }

  let proposalTimer = null;

  async function postJSON(url, data) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": cookie("fraudstream_csrf") },
      body: JSON.stringify(data),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || String(response.status));
    return body;
  }

  function showProposal(p) {
    $("proposal").hidden = false;
    const state = { running: "Backtesting version " + p.candidate.version + "…", done: "Backtest finished: publish version " + p.candidate.version + "?",
      failed: "Not published: " + (p.error || "the backtest failed"), published: "Published version " + p.candidate.version + "." };
    $("proposal-state").textContent = state[p.state] || p.state;
    const changes = $("proposal-changes");
    clear(changes);
    for (const c of p.candidate.changes) changes.append(el("li", {}, c));
    $("proposal-progress").textContent = p.progress.join("\n");
    const result = $("proposal-result");
    clear(result);
    if (p.result !== null && p.result !== undefined) result.append(renderResult(p.result));
    const publish = $("proposal-publish");
    publish.hidden = p.state !== "done";
    publish.textContent = "Publish version " + p.candidate.version;
    publish.dataset.proposal = p.id;
    clearTimeout(proposalTimer);
    if (p.state === "running") proposalTimer = setTimeout(() => pollProposal(p.id), 1000);
    if (p.state === "published") loadRules();
  }

  async function pollProposal(id) {
    try {
      showProposal((await getJSON("/api/rules/proposals/" + encodeURIComponent(id))).proposal);
    } catch (err) {
      $("propose-error").textContent = err.message;
    }
  }

  async function propose(e) {
    e.preventDefault();
    const form = $("propose");
    const error = $("propose-error");
    error.textContent = "";
    const author = $("reviewer").value.trim();
    if (!author) {
      error.textContent = "Enter your name as reviewer (top right) first: it is recorded as the author.";
      $("reviewer").focus();
      return;
    }
    const data = { changes: form.elements.changes.value, comment: form.elements.comment.value.trim(), author: author,
      rules_token: form.elements.rules_token.value };
    if (form.elements.hours.value !== "") data.hours = Number(form.elements.hours.value);
    try {
      showProposal((await postJSON("/api/rules/proposals", data)).proposal);
    } catch (err) {
      error.textContent = err.message;
    }
  }

  async function publishProposal() {
    const id = $("proposal-publish").dataset.proposal;
    try {
      showProposal((await postJSON("/api/rules/proposals/" + encodeURIComponent(id) + "/publish",
        { rules_token: $("propose").elements.rules_token.value })).proposal);
    } catch (err) {
      $("propose-error").textContent = "Not published: " + err.message;
    }
  }

  // -- wiring ---------------------------------------------------------------------------------

  function start() {
    const reviewer = $("reviewer");
    reviewer.value = localStorage.getItem("fraudstream.reviewer") || "";
    reviewer.addEventListener("change", () => localStorage.setItem("fraudstream.reviewer", reviewer.value.trim()));
    $("search").addEventListener("submit", (e) => { e.preventDefault(); runSearch(1); loadStats(); });
    $("search").addEventListener("reset", () => setTimeout(() => { runSearch(1); loadStats(); }, 0));
    $("prev").addEventListener("click", () => runSearch(currentPage - 1));
    $("next").addEventListener("click", () => runSearch(currentPage + 1));
    $("detail-close").addEventListener("click", () => { $("detail").hidden = true; openId = null; });
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("detail").hidden = true; });
    const held = $("feed-held");
    held.checked = localStorage.getItem("fraudstream.feed.hideHeld") !== "1";
    const showHeld = () => {
      $("feed").classList.toggle("hide-held", !held.checked);
      localStorage.setItem("fraudstream.feed.hideHeld", held.checked ? "0" : "1");
    };
    held.addEventListener("change", showHeld);
    showHeld();
    $("propose").addEventListener("submit", propose);
    $("proposal-publish").addEventListener("click", publishProposal);
    $("confirm").addEventListener("click", () => triage("confirmed_fraud"));
    $("falsepos").addEventListener("click", () => triage("false_positive"));
    window.addEventListener("resize", () => scheduleStats());
    window.addEventListener("hashchange", openFromHash);
    connect();
    openFromHash();
    getJSON("/api/health").then(renderHealth).catch(() => {});
    loadStats();
    runSearch(1);
    loadRules();
    setInterval(loadRules, RULES_EVERY_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
