/* omnibot agent desk: queue on the left, the selected handoff's whole context on the right.
 * Plain JS, no dependencies. Every piece of server data goes into the DOM through textContent
 * or element properties, never as HTML: customer text may contain markup or template syntax. */
"use strict";

(() => {
  const $ = (sel) => document.querySelector(sel);
  const POLL_MS = 10000;
  const views = window.DeskViews || null;   // desk_views.js: Mine / Unassigned / All, unread, alerts, customer panel
  const TOAST_MS = 6000;

  const state = {
    me: null,             // {name, email, role, teams}
    accounts: false,      // agent accounts exist: log in with e-mail and password
    queue: [],            // Handoff[]
    selectedId: null,
    detail: null,         // {handoff, context} of the selected handoff
    detailSeq: 0,         // drops stale detail responses
    drafts: new Map(),    // handoff id -> unsent reply text
    ws: null,
    wsBackoff: 1000,
    wsTimer: null,
    pollTimer: null,
    tickTimer: null,
    refreshTimer: null,
    pendingDetail: false,
    scrollDown: false,    // jump to the newest message on the next render
    search: "",           // the query whose results are listed ("" = none)
    results: [],          // search results
    historyId: null,      // the past conversation open read-only (instead of a handoff)
    history: null,        // its record: conversation, customer, transcript, tickets, handoffs
    historySeq: 0,
    historyTimer: null,
  };

  // -- small helpers -----------------------------------------------------------

  /** Build an element. attrs: class, text, data (object), or any property/attribute. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key === "data") for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (err) {
      throw new ApiError(0, "The server cannot be reached.");
    }
    let data = null;
    try { data = await res.json(); } catch (err) { /* empty or not JSON */ }
    if (res.status === 401 && path.startsWith("/agent/api/")) showLogin();
    if (!res.ok) {
      const msg = data && typeof data.error === "string" ? data.error : `${res.status} ${res.statusText}`;
      throw new ApiError(res.status, msg);
    }
    return data || {};
  }

  let toastTimer = null;
  function toast(message, isError = true) {
    const t = $("#toast");
    t.textContent = message;
    t.classList.toggle("error", isError);
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, TOAST_MS);
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min`;
    const h = Math.floor(m / 60);
    if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
    const d = Math.floor(h / 24);
    return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
  }

  function timeLabel(iso) {
    const d = new Date(iso);
    if (!iso || Number.isNaN(d.getTime())) return "";
    const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (d.toDateString() === new Date().toDateString()) return hm;
    return `${d.toLocaleDateString([], { day: "numeric", month: "short" })} ${hm}`;
  }

  function timeEl(iso) {
    const d = new Date(iso);
    if (!iso || Number.isNaN(d.getTime())) return null;
    return el("time", { dateTime: iso, title: d.toLocaleString(), text: timeLabel(iso) });
  }

  /** A span that counts up live from `seconds` ago (see tick()). */
  function liveDuration(seconds, prefix = "") {
    const since = Date.now() - Math.max(0, Number(seconds) || 0) * 1000;
    const span = el("span", { class: "tick", data: { since, prefix } });
    span.textContent = prefix + duration((Date.now() - since) / 1000);
    return span;
  }

  function tick() {
    for (const span of document.querySelectorAll(".tick")) {
      span.textContent = span.dataset.prefix + duration((Date.now() - Number(span.dataset.since)) / 1000);
    }
  }

  /** Only http(s) and same-origin relative URLs become links or images. */
  function safeUrl(url) {
    if (typeof url !== "string" || !url) return null;
    try {
      const u = new URL(url, location.href);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (err) {
      return null;
    }
  }

  const token = (s) => String(s || "unknown").toLowerCase().replace(/[^a-z0-9_-]/g, "-");
  const channelBadge = (ch) => el("span", { class: `badge ch-${token(ch)}`, text: ch || "unknown channel" });
  // a readable name, never the internal cus_ id (handoff/context.py readable_name)
  const customerName = (c, channel) => (c && (c.display || c.name)) ||
    (views ? views.fallbackName(c, channel) : "Unknown customer");
  const mine = (h) => !!(h && state.me && h.state === "claimed" && h.agent === state.me.name);
  const humanize = (key) => {
    const s = String(key).replace(/[_-]+/g, " ").trim();
    return s.charAt(0).toUpperCase() + s.slice(1);
  };

  function stateBadge(h) {
    if (h.state === "queued") {
      return el("span", { class: "badge st-queued", text: h.position ? `waiting #${h.position}` : "waiting" });
    }
    if (h.state === "claimed") {
      const you = mine(h);
      return el("span", { class: `badge st-claimed${you ? " st-mine" : ""}`,
        text: `claimed by ${h.agent || "someone"}${you ? " (you)" : ""}` });
    }
    return el("span", { class: `badge st-${token(h.state)}`, text: h.state === "returned" ? "back with the bot" : h.state });
  }

  function prioMarker(h) {
    const p = Number(h.priority) || 0;
    return p > 0 ? el("span", { class: "prio", title: `Priority ${p}`, "aria-label": `priority ${p}`, text: `▲ P${p}` }) : null;
  }

  // -- attachments ---------------------------------------------------------------

  const isImage = (a) => a.kind === "image" || /^image\//.test(a.mime || "") ||
    /\.(png|jpe?g|gif|webp|bmp)(\?|$)/i.test(a.url || "");

  function attachmentList(items) {
    const box = el("div", { class: "atts" });
    for (const a of items) {
      const url = safeUrl(a.url) && a.url;
      const name = a.name || (isImage(a) ? "photo" : "file");
      if (!url) {
        box.append(el("span", { class: "file", text: `${name} (not available here)` }));
      } else if (isImage(a)) {
        box.append(el("a", { href: url, target: "_blank", rel: "noopener noreferrer", title: name },
          el("img", { src: url, alt: name, loading: "lazy" })));
      } else {
        const size = a.size ? ` (${Math.ceil(a.size / 1024)} KB)` : "";
        box.append(el("a", { class: "file", href: url, target: "_blank", rel: "noopener noreferrer", text: `${name}${size}` }));
      }
    }
    return box;
  }

  const isAttachmentList = (v) => Array.isArray(v) && v.length > 0 &&
    v.every((x) => x && typeof x === "object" && typeof x.url === "string");

  // -- open complaints (tickets) and SLA alerts -------------------------------------

  async function loadTickets() {
    const data = await api("GET", "/agent/api/tickets");
    const list = $("#tickets");
    const tickets = Array.isArray(data.tickets) ? data.tickets : [];
    list.replaceChildren(...tickets.map((t) => {
      const due = el("span", { class: `due${t.overdue ? " overdue" : ""}`,
                               text: `${t.overdue ? "overdue since" : "due"} ${timeLabel(t.due_at)}` });
      const item = el("li", { class: "ticket-item", "data-ref": t.reference },
        el("span", { class: "ref", text: t.reference }),
        el("span", { text: `${t.category || "complaint"} · ${t.severity} · ${t.department_name}` }),
        due);
      if (t.handoff) {
        item.append(el("span", { class: "badge", text: t.handoff.state === "queued" ? "in queue" : `with ${t.handoff.agent}` }));
      } else {
        const b = el("button", { type: "button", class: "resolve-ticket", text: "Resolve…" });
        b.addEventListener("click", () => resolveTicket(t.reference));
        item.append(b);
      }
      return item;
    }));
    if (!tickets.length) list.append(el("li", { class: "queue-empty", text: "No open complaints." }));
    $("#tickets-count").textContent = `${tickets.length} open`;
  }

  async function resolveTicket(ref) {
    const result = window.prompt(`What was done about ${ref}? (sent to the customer)`, "");
    if (result === null) return;
    try {
      await api("POST", `/agent/api/tickets/${encodeURIComponent(ref)}/resolve`, { result });
      toast(`${ref} resolved; the customer was told.`, false);
      await loadTickets();
    } catch (err) {
      reportError(err);
    }
  }

  function showSlaAlert(alert) {
    if (!alert || !alert.text) return;
    const li = el("li", { class: alert.level === "near" ? "near" : "breached", role: "alert", text: alert.text });
    $("#sla-alerts").prepend(li);
    toast(alert.text, alert.level !== "near");
  }

  function renderTicketBox(ticket) {
    const box = $("#ticket-box");
    if (!ticket || !ticket.reference) { box.hidden = true; return; }
    box.hidden = false;
    const rows = [["Reference", ticket.reference], ["Severity", ticket.severity], ["Department", ticket.department],
                  ["Priority", String(ticket.priority)], ["Why", (ticket.reasons || []).join("; ") || "—"]];
    $("#ticket").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  }

  // -- history and search -----------------------------------------------------------

  const STATE_NAMES = { bot: "with the bot", waiting: "waiting", with_agent: "with an agent", closed: "closed" };
  const csatText = (n) => `CSAT ${n}/5`;

  async function runSearch(q) {
    state.search = q;
    if (!q) { renderResults(); return; }
    const data = await api("GET", `/agent/api/search?q=${encodeURIComponent(q)}&limit=50`);
    if (state.search !== q) return;
    state.results = Array.isArray(data.results) ? data.results : [];
    renderResults();
  }

  function renderResults() {
    const pane = $("#search-pane");
    pane.hidden = !state.search;
    if (!state.search) { state.results = []; $("#search-results").replaceChildren(); return; }
    const items = state.results.map((r) => {
      const t = r.ticket;
      const btn = el("button", {
        type: "button", class: "search-item", data: { conversationId: r.conversation_id },
        "aria-current": r.conversation_id === state.historyId ? "true" : "false" },
      el("span", { class: "qi-row" },
        el("span", { class: "qi-name", text: customerName(r.customer, r.channel) }),
        el("span", { class: "qi-wait" }, timeEl(r.updated_at))),
      el("span", { class: "qi-row wrap" }, channelBadge(r.channel),
        el("span", { class: `badge st-${token(r.state)}`, text: STATE_NAMES[r.state] || r.state }),
        t ? el("span", { class: "badge", text: `${t.reference} · ${t.status}` }) : null,
        t && t.csat ? el("span", { class: "csat", text: csatText(t.csat) }) : null),
      t && t.order_number ? el("span", { class: "qi-last", text: `Order ${t.order_number}` }) : null,
      el("span", { class: "qi-last", text: r.snippet || (r.last_message && r.last_message.text) || "" }));
      btn.addEventListener("click", () => openHistory(r.conversation_id));
      return el("li", null, btn);
    });
    $("#search-results").replaceChildren(...items);
    if (!items.length) $("#search-results").append(el("li", { class: "queue-empty", text: "Nothing found." }));
    $("#search-count").textContent = `${items.length} found`;
  }

  function openHistory(cid) {
    saveDraft();
    state.selectedId = null;
    state.detail = null;
    state.historyId = cid;
    state.history = null;
    history.replaceState(null, "", `#c=${encodeURIComponent(cid)}`);
    for (const b of document.querySelectorAll(".queue-item")) b.setAttribute("aria-current", "false");
    for (const b of document.querySelectorAll(".search-item")) {
      b.setAttribute("aria-current", b.dataset.conversationId === cid ? "true" : "false");
    }
    $("#history-transcript").replaceChildren();
    renderDetail();
    loadHistory().catch(reportError);
  }

  function closeHistory() {
    state.historyId = null;
    state.history = null;
    history.replaceState(null, "", location.pathname);
    for (const b of document.querySelectorAll(".search-item")) b.setAttribute("aria-current", "false");
    renderDetail();
  }

  async function loadHistory() {
    const cid = state.historyId;
    if (!cid) return;
    const seq = ++state.historySeq;
    try {
      const data = await api("GET", `/agent/api/conversations/${encodeURIComponent(cid)}`);
      if (seq !== state.historySeq || cid !== state.historyId) return;
      state.history = data;
    } catch (err) {
      if (seq !== state.historySeq) return;
      if (err.status === 404) { toast("That conversation no longer exists."); closeHistory(); return; }
      throw err;
    }
    renderHistory();
  }

  /** Coalesce live events about the open past conversation into one reload. */
  function scheduleHistoryRefresh() {
    if (state.historyTimer) return;
    state.historyTimer = setTimeout(() => {
      state.historyTimer = null;
      loadHistory().catch(reportError);
      if (state.search) runSearch(state.search).catch(reportError);
    }, 150);
  }

  function renderHistory() {
    const d = state.history;
    $("#history").hidden = !state.historyId;
    if (!d) {
      $("#history-header").replaceChildren(el("p", { class: "none", text: "Loading…" }));
      $("#reopen-btn").hidden = $("#history-open-btn").hidden = true;
      return;
    }
    const conv = d.conversation || {};
    const customer = d.customer || {};
    const last = (d.handoffs || [])[(d.handoffs || []).length - 1];
    const teamName = (t) => (d.team_names && d.team_names[t]) || t || "no team";
    $("#history-header").replaceChildren(
      el("h2", { text: customerName(customer, conv.channel) }),
      el("div", { class: "head-meta" }, channelBadge(conv.channel),
        el("span", { class: `badge st-${token(conv.state)}`, text: STATE_NAMES[conv.state] || conv.state || "" }),
        last ? el("span", { class: "badge team", text: teamName(last.team) }) : null,
        el("span", null, "started ", timeEl(conv.created_at)), el("span", null, "last active ", timeEl(conv.updated_at))));
    const active = d.handoff;
    $("#reopen-btn").hidden = !!active;
    $("#history-open-btn").hidden = !active;
    $("#history-note").textContent = active
      ? (active.state === "queued" ? "In the queue now: open it there to claim and answer."
        : `${active.agent || "An agent"} has it now.`)
      : "Read-only. Reopen it to put it back in its team's queue; the customer is told nothing until you reply.";

    const tickets = (d.tickets || []).map((t) => el("div", { class: "history-ticket", data: { ref: t.reference } },
      el("div", { class: "line" }, el("strong", { text: t.reference }),
        el("span", { class: "badge", text: t.status }), t.category ? el("span", { text: t.category }) : null),
      t.order_number ? el("div", { text: `Order ${t.order_number}` }) : null,
      t.result ? el("div", { text: `Result: ${t.result}` }) : null,
      t.resolved_by ? el("div", null, `Resolved by ${t.resolved_by} `, timeEl(t.resolved_at)) : null,
      el("div", { class: "csat-line" }, t.csat
        ? el("span", { class: "csat", text: csatText(t.csat) }) : el("span", { class: "none", text: "No CSAT answer yet." }),
        t.csat_at ? el("span", null, " ", timeEl(t.csat_at)) : null),
      t.csat_comment ? el("div", { class: "comment", text: `“${t.csat_comment}”` }) : null));
    $("#history-tickets").replaceChildren(...(tickets.length ? tickets : [el("p", { class: "none", text: "No tickets." })]));

    const ids = (customer.identities || []).map((i) => el("li", { class: "ident" },
      el("span", { class: "line" }, channelBadge(i.channel), el("span", { text: i.external_id || "" }))));
    $("#history-customer").replaceChildren(...(ids.length ? ids : [el("li", { class: "none", text: "No identities." })]));
    const hs = (d.handoffs || []).map((h) => el("li", null,
      el("span", { class: "line" }, el("span", { class: `badge st-${token(h.state)}`, text: h.state }),
        el("span", { class: "badge team", text: teamName(h.team) }), timeEl(h.created_at)),
      el("span", { class: "summary", text: `${h.reason || ""}${h.agent ? ` · ${h.agent}` : ""}` })));
    $("#history-handoffs").replaceChildren(...(hs.length ? hs : [el("li", { class: "none", text: "Never handed to a person." })]));

    const box = $("#history-transcript");
    const msgs = Array.isArray(d.transcript) ? d.transcript : [];
    const none = new Set();
    box.replaceChildren(...msgs.map((m) => renderMessage(m, customer, none)));
    if (!msgs.length) box.append(el("p", { class: "none", text: "No messages." }));
    box.scrollTop = box.scrollHeight;
    document.dispatchEvent(new CustomEvent("omnibot:rendered"));
  }

  async function reopen(button) {
    const cid = state.historyId;
    if (!cid) return;
    const note = window.prompt("Why reopen it? (a note for the team; the customer does not see it)", "");
    if (note === null) return;
    button.disabled = true;
    try {
      const data = await api("POST", `/agent/api/conversations/${encodeURIComponent(cid)}/reopen`, { note });
      toast("Reopened: it is back in the queue.", false);
      await loadHistory();
      await loadQueue();
      if (data.handoff && data.handoff.id) select(String(data.handoff.id));
    } catch (err) {
      reportError(err);
    } finally {
      button.disabled = false;
    }
  }

  // -- queue ---------------------------------------------------------------------

  async function loadQueue() {
    const data = await api("GET", "/agent/api/queue");
    state.queue = Array.isArray(data.handoffs) ? data.handoffs : [];
    if (views) views.onQueue(data);
    renderQueue();
    await loadTickets().catch(() => {});   // older servers have no ticket list
  }

  function renderQueue() {
    const list = $("#queue");
    const focusedId = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.handoffId : undefined;
    const items = (views ? views.visible(state.queue) : state.queue).map((h) => {
      const id = String(h.id);
      const btn = el("button", {
        type: "button", class: `queue-item${Number(h.priority) > 0 ? " prio-item" : ""}`,
        data: { handoffId: id, state: h.state || "" },
        "aria-current": id === state.selectedId ? "true" : "false",
      },
      el("span", { class: "qi-row" },
        el("span", { class: "qi-name", text: customerName(h.customer, h.channel) }),
        views ? views.unreadBadge(h) : null,
        prioMarker(h),
        el("span", { class: "qi-wait", title: h.state === "queued" ? "waiting" : "waited before claim" },
          liveOrStatic(h))),
      el("span", { class: "qi-row wrap" }, channelBadge(h.channel),
        el("span", { class: "badge team", text: h.team_name || h.team || "no team" }), stateBadge(h)),
      el("span", { class: "qi-row" }, el("span", { class: "qi-reason", text: h.agent_reason || h.reason || "no reason given" })),
      h.last_message ? el("span", { class: "qi-last", text: h.last_message }) : null);
      btn.addEventListener("click", () => select(id));
      return el("li", null, btn);
    });
    list.replaceChildren(...items);
    if (!items.length) list.append(el("li", { class: "queue-empty", text: views ? views.emptyText() : "Nobody is waiting." }));
    if (focusedId) {
      const again = list.querySelector(`.queue-item[data-handoff-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
    }
    const waiting = state.queue.filter((h) => h.state === "queued").length;
    const claimed = state.queue.length - waiting;
    $("#queue-count").textContent = `${waiting} waiting · ${claimed} claimed`;
    document.title = views ? views.title() : waiting ? `(${waiting}) Agent desk · omnibot` : "Agent desk · omnibot";
  }

  function liveOrStatic(h) {
    return h.state === "queued" ? liveDuration(h.waiting_seconds) : duration(h.waiting_seconds || 0);
  }

  // -- detail --------------------------------------------------------------------

  function select(id) {
    if (id === state.selectedId && !state.historyId) return;
    saveDraft();
    state.historyId = null;
    state.history = null;
    for (const b of document.querySelectorAll(".search-item")) b.setAttribute("aria-current", "false");
    state.selectedId = id;
    state.detail = null;
    history.replaceState(null, "", id ? `#h=${encodeURIComponent(id)}` : location.pathname);
    for (const b of document.querySelectorAll(".queue-item")) {
      b.setAttribute("aria-current", b.dataset.handoffId === id ? "true" : "false");
    }
    $("#transcript").replaceChildren();
    $("#reply-input").value = state.drafts.get(id) || "";
    loadDetail().catch(reportError);
  }

  async function loadDetail() {
    const id = state.selectedId;
    if (!id) { renderDetail(); return; }
    const seq = ++state.detailSeq;
    try {
      const data = await api("GET", `/agent/api/handoffs/${encodeURIComponent(id)}`);
      if (seq !== state.detailSeq || id !== state.selectedId) return;
      state.detail = { handoff: data.handoff || {}, context: data.context || {} };
    } catch (err) {
      if (seq !== state.detailSeq) return;
      if (err.status === 404) {
        state.selectedId = null;
        state.detail = null;
        toast("That handoff no longer exists.");
      } else throw err;
    }
    renderDetail();
  }

  function renderDetail() {
    const d = state.detail;
    $("#empty-state").hidden = !!(state.selectedId || state.historyId);
    $("#conv").hidden = !state.selectedId;
    $("#history").hidden = !state.historyId;
    if (state.historyId) renderHistory();
    const box = $("#transcript");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    if (!d) {
      $("#context-header").replaceChildren(el("p", { class: "none", text: state.selectedId ? "Loading…" : "" }));
      for (const b of ["#claim-btn", "#resolve-btn", "#release-btn", "#reply-form", "#reply-note", "#unreachable"]) $(b).hidden = true;
      return;
    }
    renderHeader(d.handoff, d.context);
    renderActions(d.handoff);
    renderSlots(d.context.slots || {}, d.context.fields);
    renderTicketBox(d.context.ticket);
    renderCustomer(d.context.customer || {});
    renderUnreachable(d.context);
    renderTranscript(d.handoff, d.context, atBottom || state.scrollDown);
    state.scrollDown = false;
    if (views) views.onDetail(d);
    document.dispatchEvent(new CustomEvent("omnibot:rendered"));   // desk_actions.js: notes, transfer
  }

  function renderHeader(h, ctx) {
    const customer = ctx.customer || h.customer || {};
    const conv = ctx.conversation || {};
    const name = el("h2", { text: customerName(customer, conv.channel || h.channel) },
      customer.tier ? el("span", { class: "sub tier", text: customer.tier }) : null);
    const meta = el("div", { class: "head-meta" },
      channelBadge(conv.channel || h.channel),
      conv.language ? el("span", { class: "badge lang", title: "the customer's language", text: conv.language }) : null,
      el("span", { class: "badge team", text: ctx.team_name || h.team_name || h.team || "no team" }),
      stateBadge(h), prioMarker(h),
      ctx.reference ? el("span", { text: `Ref ${ctx.reference}` }) : null,
      ctx.flow ? el("span", { text: `Flow: ${ctx.flow}` }) : null,
      h.state === "queued" ? liveDuration(h.waiting_seconds, "waiting ") : null,
      h.state === "claimed" && h.claimed_at ? el("span", null, "claimed ", timeEl(h.claimed_at)) : null);
    const reason = el("div", { class: "head-reason" }, el("strong", { text: "Reason: " }),
      ctx.agent_reason || h.agent_reason || ctx.reason || h.reason || "not given");
    // moved from a public group: where, and what the customer wrote there (as text, never HTML)
    const origin = ctx.origin ? el("div", { class: "head-reason" }, el("strong", { text: "Origin: " }),
      `${ctx.origin.summary}: "${(ctx.origin.public_messages || []).join(" / ")}"`) : null;
    // a channel that limits when we may write (WhatsApp's 24-hour window): open until when, or closed
    const rw = ctx.reply_window;
    const win = rw ? el("div", { class: "head-reason" }, el("strong", { text: "Replies: " }),
      rw.open ? el("span", null, "possible until ", timeEl(rw.closes_at), ` (${rw.rule})`)
              : `window closed, a reply is ${rw.outside} (${rw.rule})`) : null;
    $("#context-header").replaceChildren(...[name, meta, reason, origin, win].filter(Boolean));
  }

  function renderActions(h) {
    const you = mine(h);
    $("#claim-btn").hidden = h.state !== "queued";
    $("#resolve-btn").hidden = !you;
    $("#release-btn").hidden = !you;
    $("#reply-form").hidden = !you;
    const note = $("#reply-note");
    note.hidden = you;
    if (h.state === "queued") note.textContent = "Claim this conversation to reply.";
    else if (h.state === "claimed") note.textContent = `${h.agent || "Another agent"} is handling this conversation.`;
    else if (h.state === "resolved") note.textContent = "This conversation was resolved.";
    else note.textContent = "This conversation is back with the bot.";
  }

  function renderSlots(slots, fields) {
    // fields: [{slot, label, value, text}] in the flow's order, labelled as the flow file labels them
    const entries = Array.isArray(fields) ? fields.map((f) => [f.slot, f.text || f.value, f.label])
      : Object.entries(slots).map(([key, value]) => [key, value, humanize(key)]);
    const rows = entries.map(([key, value, label]) => {
      let dd;
      if (isAttachmentList(value)) dd = el("dd", null, attachmentList(value));
      else if (value !== null && typeof value === "object") {
        dd = el("dd", null, Array.isArray(value) && value.every((v) => typeof v !== "object")
          ? value.join(", ") : el("pre", { text: JSON.stringify(value, null, 2) }));
      } else dd = el("dd", { text: String(value) });
      return el("div", { class: "slot", data: { slot: key } }, el("dt", { title: key, text: label }), dd);
    });
    $("#slots").replaceChildren(...(rows.length ? rows : [el("p", { class: "none", text: "Nothing captured." })]));
  }

  function renderCustomer(c) {
    const ids = (c.identities || []).map((i) => el("li", { class: "ident" },
      el("span", { class: "line" }, channelBadge(i.channel), el("span", { text: i.external_id || "" }))));
    $("#identities").replaceChildren(...(ids.length ? ids : [el("li", { class: "none", text: "No identities." })]));
    const prev = (c.previous_conversations || []).map((p) => el("li", null,
      el("span", { class: "line" }, channelBadge(p.channel), timeEl(p.created_at),
        el("span", { class: `badge st-${token(p.state)}`, text: p.state || "" })),
      el("span", { class: "summary", text: p.summary || "(no customer message)" })));
    $("#previous").replaceChildren(...(prev.length ? prev : [el("li", { class: "none", text: "No earlier conversations." })]));
  }

  function waitingIds(h, ctx) {
    // Only what arrived before an agent took over counts as "sent while waiting".
    const until = h.claimed_at ? new Date(h.claimed_at).getTime() : Infinity;
    return new Set((ctx.waiting_messages || [])
      .filter((m) => !(new Date(m.at).getTime() >= until))
      .map((m) => String(m.id)));
  }

  function renderMessage(m, customer, waiting) {
    const role = token(m.role);
    const who = { customer: customerName(customer, m.channel), bot: "Bot", system: "System" }[m.role]
      || (m.role === "agent" ? m.sender || "Agent" : m.role || "?");
    const isWaiting = waiting.has(String(m.id));
    const meta = el("div", { class: "meta" },
      el("span", { class: "who", text: who }), timeEl(m.at),
      isWaiting ? el("span", { class: "waiting-label", text: "sent while waiting" }) : null,
      m.status === "failed" ? el("span", { class: "status", text: "not delivered" }) : null,
      m.status === "pending" ? el("span", { text: "sending…" }) : null);
    const body = el("div", { class: "body" });
    if (m.text) body.append(document.createTextNode(m.text));
    if (Array.isArray(m.attachments) && m.attachments.length) body.append(attachmentList(m.attachments));
    const buttons = Array.isArray(m.buttons) && m.buttons.length
      ? el("div", { class: "buttons", "aria-label": "buttons offered" }, m.buttons.map((b) => el("span", { text: b.title })))
      : null;
    const failed = m.status === "failed"
      ? el("div", { class: "undelivered", role: "note", text: `Not delivered: ${m.error || "the platform refused it"}` })
      : null;
    return el("div", { class: `msg role-${role}${isWaiting ? " waiting" : ""}${failed ? " failed" : ""}`,
      data: { id: m.id, status: m.status || "" } }, meta, body, buttons, failed);
  }

  const CHANNEL_NAMES = { telegram: "Telegram", webchat: "Web chat", slack: "Slack", whatsapp: "WhatsApp", email: "E-mail" };
  const channelName = (ch) => CHANNEL_NAMES[ch] || ch || "this channel";

  /** The banner over a conversation whose customer cannot be reached on its channel. */
  function renderUnreachable(ctx) {
    const box = $("#unreachable");
    const u = ctx.unreachable;
    if (!u) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    const others = [...new Set((ctx.other_channels || []).map((o) => channelName(o.channel)))];
    box.replaceChildren(
      el("strong", { text: `Not reachable on ${channelName(u.channel)}: ` }),
      document.createTextNode(`${u.reason || "messages are not delivered"}. `),
      document.createTextNode(others.length ? `Also reachable on: ${others.join(", ")}.` : "No other channel known."));
    box.hidden = false;
  }

  function renderTranscript(h, ctx, stick) {
    const box = $("#transcript");
    const msgs = Array.isArray(ctx.transcript) ? ctx.transcript : [];
    const waiting = waitingIds(h, ctx);
    const shown = [...box.querySelectorAll(".msg")].map((n) => n.dataset.id);
    // whether I hold it changes what is masked (personal data in clear to the holder only): all anew
    const key = `${h.id} ${mine(h) ? "held" : "masked"}`;
    const sameStart = box.dataset.handoff === key && shown.length <= msgs.length &&
      shown.every((id, i) => id === String(msgs[i].id));
    const fresh = sameStart ? msgs.slice(shown.length) : msgs;
    if (!sameStart) box.replaceChildren();
    else {
      // messages already shown whose delivery state changed (sending… -> sent / not delivered)
      const nodes = [...box.querySelectorAll(".msg")];
      nodes.forEach((node, i) => {
        if (node.dataset.status !== String(msgs[i].status || "")) {
          node.replaceWith(renderMessage(msgs[i], ctx.customer || h.customer, waiting));
        }
      });
    }
    for (const n of box.querySelectorAll(":scope > .none")) n.remove();
    box.dataset.handoff = key;
    let dividerShown = !!box.querySelector(".divider");
    for (const m of fresh) {
      if (!dividerShown && waiting.has(String(m.id))) {
        box.append(el("div", { class: "divider", text: "waiting for an agent" }));
        dividerShown = true;
      }
      box.append(renderMessage(m, ctx.customer || h.customer, waiting));
    }
    if (!msgs.length) box.append(el("p", { class: "none", text: "No messages yet." }));
    if (!sameStart || stick) box.scrollTop = box.scrollHeight;
  }

  // -- actions -------------------------------------------------------------------

  async function act(action, button) {
    const id = state.selectedId;
    if (!id) return;
    button.disabled = true;
    try {
      await api("POST", `/agent/api/handoffs/${encodeURIComponent(id)}/${action}`);
      if (action !== "claim") state.drafts.delete(id);
    } catch (err) {
      reportError(err);
    } finally {
      button.disabled = false;
      await refreshAll();
    }
  }

  /** Files attached to the next reply: uploaded at once, sent with the reply. */
  const pendingFiles = [];
  function showPendingFiles() {
    $("#reply-files").textContent = pendingFiles.length
      ? `· attached: ${pendingFiles.map((f) => f.name).join(", ")}` : "";
  }
  async function attachFile(file) {
    const form = new FormData();
    form.append("file", file, file.name);
    let res, data = null;
    try {
      res = await fetch("/agent/api/upload", { method: "POST", credentials: "same-origin", body: form });
      try { data = await res.json(); } catch (err) { /* not JSON */ }
    } catch (err) {
      reportError(new ApiError(0, "The server cannot be reached."));
      return;
    }
    if (!res.ok) {
      reportError(new ApiError(res.status, (data && data.error) || `${res.status} ${res.statusText}`));
      return;
    }
    pendingFiles.push({ id: data.id, name: data.name });
    showPendingFiles();
  }

  async function sendReply() {
    const input = $("#reply-input");
    const send = $("#reply-send");
    const text = input.value.trim();
    const id = state.selectedId;
    if ((!text && !pendingFiles.length) || !id || send.disabled) return;
    send.disabled = true;
    try {
      const attachments = pendingFiles.map((f) => ({ id: f.id }));
      await api("POST", `/agent/api/handoffs/${encodeURIComponent(id)}/reply`, { text, attachments });
      pendingFiles.length = 0;
      showPendingFiles();
      if (state.selectedId === id) input.value = "";
      state.drafts.delete(id);
      state.scrollDown = true;
      await loadDetail();
    } catch (err) {
      reportError(err);
      if (err.status === 409) await refreshAll();
    } finally {
      send.disabled = false;
      if (state.selectedId === id) input.focus();
    }
  }

  function saveDraft() {
    if (state.selectedId) state.drafts.set(state.selectedId, $("#reply-input").value);
  }

  function reportError(err) {
    if (err && err.status === 401) return; // the login form is showing already
    toast(err && err.message ? err.message : String(err));
  }

  // -- live updates ----------------------------------------------------------------

  async function refreshAll() {
    try {
      await loadQueue();
      if (state.selectedId) await loadDetail();
      if (state.historyId) await loadHistory();
    } catch (err) {
      reportError(err);
    }
  }

  /** Coalesce bursts of `changed` frames into one refetch. */
  function scheduleRefresh(handoffId) {
    if (handoffId && String(handoffId) === state.selectedId) state.pendingDetail = true;
    if (!handoffId) state.pendingDetail = true;
    if (state.refreshTimer) return;
    state.refreshTimer = setTimeout(async () => {
      state.refreshTimer = null;
      const withDetail = state.pendingDetail;
      state.pendingDetail = false;
      try {
        await loadQueue();
        if (withDetail && state.selectedId) await loadDetail();
      } catch (err) {
        reportError(err);
      }
    }, 150);
  }

  function setConn(text, cls) {
    const c = $("#conn");
    c.hidden = false;
    c.textContent = text;
    c.className = cls;
  }

  function connect() {
    if (!state.me || state.ws) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/agent/ws`);
    } catch (err) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    ws.onopen = () => {
      const wasDown = state.wsBackoff > 1000;
      state.wsBackoff = 1000;
      setConn("Live", "live");
      if (wasDown) refreshAll(); // events may have been missed while disconnected
    };
    ws.onmessage = (ev) => {
      let frame;
      try { frame = JSON.parse(ev.data); } catch (err) { return; }
      if (frame && frame.type === "changed") {
        document.dispatchEvent(new CustomEvent("omnibot:changed", { detail: frame }));   // desk_review.js
        if (frame.event === "resync") { refreshAll(); return; }   // live updates may have been missed
        if (frame.event === "sla") showSlaAlert(frame.alert);
        if (frame.event === "delivery_failed" && String(frame.handoff_id) === state.selectedId) {
          toast(`Not delivered: ${frame.reason || "the platform refused it"}`);
        }
        if (frame.conversation_id && frame.conversation_id === state.historyId) scheduleHistoryRefresh();
        else if (frame.event === "csat" && state.results.some((r) => r.conversation_id === frame.conversation_id)) {
          runSearch(state.search).catch(reportError);    // a listed conversation got its score
        }
        scheduleRefresh(frame.handoff_id);
      }
    };
    ws.onclose = () => {
      if (state.ws === ws) state.ws = null;
      if (state.me) scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    setConn("Reconnecting…", "down");
    clearTimeout(state.wsTimer);
    const delay = state.wsBackoff + Math.random() * 500;
    state.wsBackoff = Math.min(state.wsBackoff * 2, 30000);
    state.wsTimer = setTimeout(connect, delay);
  }

  function startLive() {
    connect();
    clearInterval(state.pollTimer);
    state.pollTimer = setInterval(() => {
      const live = state.ws && state.ws.readyState === WebSocket.OPEN;
      (live ? loadQueue() : refreshAll()).catch(reportError);
    }, POLL_MS);
    clearInterval(state.tickTimer);
    state.tickTimer = setInterval(tick, 1000);
  }

  function stopLive() {
    clearInterval(state.pollTimer);
    clearInterval(state.tickTimer);
    clearTimeout(state.wsTimer);
    clearTimeout(state.refreshTimer);
    state.refreshTimer = null;
    if (state.ws) {
      const ws = state.ws;
      state.ws = null;
      ws.onclose = null;
      ws.close();
    }
    $("#conn").hidden = true;
  }

  // -- login / logout ----------------------------------------------------------------

  function showLogin() {
    if (!$("#login-view").hidden) return;
    state.me = null;
    stopLive();
    $("#desk").hidden = true;
    $("#logout-btn").hidden = true;
    $("#me-name").textContent = "";
    $("#login-view").hidden = false;
    $("#login-name").value = $("#login-name").value || localStorage.getItem("omnibot.agentName") || "";
    ($("#login-name").value ? $("#login-token") : $("#login-name")).focus();
    loginMode();
  }

  // With agent accounts: e-mail and password. Before the first account: the shared token and a name.
  async function loginMode() {
    let accounts = false;
    try { accounts = (await api("GET", "/agent/api/auth")).mode === "accounts"; } catch (err) { /* shared */ }
    state.accounts = accounts;
    document.querySelectorAll(".login-account").forEach((x) => { x.hidden = !accounts; });
    document.querySelectorAll(".login-shared").forEach((x) => { x.hidden = accounts; });
    if (accounts) {
      $("#login-email").value = $("#login-email").value || localStorage.getItem("omnibot.agentEmail") || "";
      ($("#login-email").value ? $("#login-password") : $("#login-email")).focus();
    }
  }

  async function showDesk(me) {
    state.me = me;
    $("#login-view").hidden = true;
    $("#desk").hidden = false;
    $("#logout-btn").hidden = false;
    $("#me-name").textContent = `Signed in as ${me.name}`;
    const m = /^#h=(.+)$/.exec(location.hash);
    state.selectedId = m ? decodeURIComponent(m[1]) : null;
    const c = /^#c=(.+)$/.exec(location.hash);
    state.historyId = c ? decodeURIComponent(c[1]) : null;
    renderDetail();
    startLive();
    await refreshAll();
  }

  async function login(event) {
    event.preventDefault();
    const tokenValue = $("#login-token").value;
    const name = $("#login-name").value.trim();
    const email = $("#login-email").value.trim();
    const password = $("#login-password").value;
    const errorBox = $("#login-error");
    errorBox.textContent = "";
    if (state.accounts ? !email || !password : !tokenValue || !name) {
      errorBox.textContent = state.accounts ? "Enter your e-mail and password." : "Enter the agent token and your name.";
      return;
    }
    const btn = $("#login-btn");
    btn.disabled = true;
    try {
      if (state.accounts) {
        await api("POST", "/agent/login", { email, password });
        localStorage.setItem("omnibot.agentEmail", email);
      } else {
        await api("POST", "/agent/login", { token: tokenValue, name });
        localStorage.setItem("omnibot.agentName", name);
      }
      $("#login-token").value = "";
      $("#login-password").value = "";
      $("#toast").hidden = true;
      const me = await api("GET", "/agent/api/me");
      await showDesk(me);
    } catch (err) {
      errorBox.textContent = err.message;
      toast(err.message);
    } finally {
      btn.disabled = false;
    }
  }

  async function logout() {
    try { await api("POST", "/agent/logout"); } catch (err) { /* log in again anyway */ }
    state.selectedId = null;
    state.detail = null;
    state.historyId = null;
    state.history = null;
    state.search = "";
    state.results = [];
    $("#search-results").replaceChildren();
    $("#search-pane").hidden = true;
    state.queue = [];
    $("#queue").replaceChildren();
    $("#transcript").replaceChildren();
    history.replaceState(null, "", location.pathname);
    showLogin();
  }

  // -- wiring ------------------------------------------------------------------------

  // for the desk's other scripts: desk_actions.js (notes, transfer, take-over, canned replies) and
  // desk_review.js (resolve with an outcome, reviews, compensation)
  window.omnibotDesk = { state, api, el, toast, reportError, refreshAll, loadDetail, mine, timeEl,
                         refresh: () => refreshAll(), detail: () => state.detail, me: () => state.me };

  $("#login-form").addEventListener("submit", login);
  $("#logout-btn").addEventListener("click", logout);
  $("#claim-btn").addEventListener("click", (e) => act("claim", e.currentTarget));
  $("#resolve-btn").addEventListener("click", (e) => act("resolve", e.currentTarget));
  $("#release-btn").addEventListener("click", (e) => act("release", e.currentTarget));
  $("#reply-form").addEventListener("submit", (e) => { e.preventDefault(); sendReply(); });
  $("#reply-file").addEventListener("change", (e) => {
    const file = e.target.files && e.target.files[0];
    e.target.value = "";
    if (file) attachFile(file);
  });
  $("#reply-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendReply();
    }
  });
  $("#reply-input").addEventListener("input", saveDraft);
  $("#toast").addEventListener("click", () => { $("#toast").hidden = true; });
  $("#search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    runSearch($("#search-input").value.trim()).catch(reportError);
  });
  $("#search-clear").addEventListener("click", () => {
    $("#search-input").value = "";
    runSearch("").catch(reportError);
  });
  $("#reopen-btn").addEventListener("click", (e) => reopen(e.currentTarget));
  $("#history-close-btn").addEventListener("click", closeHistory);
  $("#history-open-btn").addEventListener("click", () => {
    const h = state.history && state.history.handoff;
    if (h && h.id) select(String(h.id));
  });

  if (views) views.init({ state, el, api, toast, reportError, select, renderQueue, channelBadge, timeEl, token });

  (async () => {
    try {
      const me = await api("GET", "/agent/api/me");
      await showDesk(me);
    } catch (err) {
      if (err.status !== 401) toast(err.message);
      showLogin();
    }
  })();
})();
