/* omnibot agent desk, part two: the Mine / Unassigned / All views with unread counts, opt-in
 * alerts (browser notification and a short WebAudio tone), the tab title's count, read marks and
 * the customer panel (readable name, contacts, tier and tags, earlier tickets with CSAT).
 * agent.js calls the hooks below (window.DeskViews). Server data only ever goes into the DOM as
 * text (textContent / properties), never as HTML. */
"use strict";

window.DeskViews = (() => {
  const VIEWS = [
    { id: "mine", label: "Mine", key: "1", empty: "Nothing assigned to you." },
    { id: "unassigned", label: "Unassigned", key: "2", empty: "Nobody is waiting." },
    { id: "all", label: "All", key: "3", empty: "Nobody is waiting." },
  ];
  const TITLE = "Agent desk · omnibot";
  const CHANNEL_PEOPLE = { webchat: "Web visitor", telegram: "Telegram user", whatsapp: "WhatsApp contact",
    email: "E-mail sender", slack: "Slack user", console: "Console user" };
  let d = null;                 // agent.js internals: state, el, api, toast, select, renderQueue, ...
  let view = localStorage.getItem("omnibot.view") || "all";
  let counts = { mine: 0, unassigned: 0, all: 0 };
  let unread = { mine: 0, unassigned: 0, all: 0 };
  let seen = null;              // handoff id -> {unread, view} at the previous queue load (null: first load)
  let readMarks = new Map();    // conversation id -> newest message time already marked read
  let audio = null;
  let alerts = localStorage.getItem("omnibot.alerts") === "on";
  let panelFor = null;          // customer id the panel's inputs were built for (keeps typing intact)

  if (!VIEWS.some((v) => v.id === view)) view = "all";

  // -- views and counts ----------------------------------------------------------------

  function viewOf(h) {
    if (h.view) return h.view;
    if (h.state === "queued") return "unassigned";
    return d && d.state.me && h.state === "claimed" && h.agent === d.state.me.name ? "mine" : "other";
  }

  function visible(rows) {
    return view === "all" ? rows : rows.filter((h) => viewOf(h) === view);
  }

  function emptyText() {
    return (VIEWS.find((v) => v.id === view) || VIEWS[2]).empty;
  }

  function setView(id, focus) {
    if (!VIEWS.some((v) => v.id === id)) return;
    view = id;
    localStorage.setItem("omnibot.view", id);
    renderTabs();
    d.renderQueue();
    if (focus) document.getElementById(`view-${id}`).focus();
  }

  function renderTabs() {
    const bar = document.getElementById("views");
    if (!bar) return;
    for (const v of VIEWS) {
      const tab = document.getElementById(`view-${v.id}`);
      tab.setAttribute("aria-selected", v.id === view ? "true" : "false");
      tab.tabIndex = v.id === view ? 0 : -1;
      tab.querySelector(".count").textContent = String(counts[v.id] || 0);
      const dot = tab.querySelector(".unread");
      dot.textContent = unread[v.id] ? String(unread[v.id]) : "";
      dot.hidden = !unread[v.id];
      dot.setAttribute("aria-label", `${unread[v.id] || 0} unread`);
    }
  }

  function buildTabs() {
    const queue = document.getElementById("queue");
    const bar = d.el("div", { id: "views", class: "views", role: "tablist", "aria-label": "Queue views" },
      VIEWS.map((v) => {
        const tab = d.el("button", { type: "button", id: `view-${v.id}`, class: "view-tab", role: "tab",
          title: `${v.label} (key ${v.key})`, data: { view: v.id } },
        d.el("span", { text: v.label }), d.el("span", { class: "count", text: "0" }),
        d.el("span", { class: "unread", hidden: true }));
        tab.addEventListener("click", () => setView(v.id));
        return tab;
      }));
    bar.addEventListener("keydown", (e) => {     // arrow keys move between tabs (WAI-ARIA tabs)
      const i = VIEWS.findIndex((v) => v.id === view);
      if (e.key === "ArrowRight") setView(VIEWS[(i + 1) % VIEWS.length].id, true);
      else if (e.key === "ArrowLeft") setView(VIEWS[(i + VIEWS.length - 1) % VIEWS.length].id, true);
    });
    queue.before(bar);
    renderTabs();
  }

  function unreadBadge(h) {
    const n = Number(h.unread) || 0;
    return n > 0 ? d.el("span", { class: "unread", title: `${n} unread`, "aria-label": `${n} unread`, text: String(n) })
      : null;
  }

  /** The tab title's count: unread customer messages in Mine plus conversations waiting unassigned. */
  function titleCount() {
    return (unread.mine || 0) + (counts.unassigned || 0);
  }

  function title() {
    const n = titleCount();
    return n ? `(${n}) ${TITLE}` : TITLE;
  }

  function onQueue(data) {
    const rows = Array.isArray(data.handoffs) ? data.handoffs : [];
    counts = data.counts || {
      mine: rows.filter((h) => viewOf(h) === "mine").length,
      unassigned: rows.filter((h) => viewOf(h) === "unassigned").length, all: rows.length };
    const sum = (v) => rows.filter((h) => v === "all" || viewOf(h) === v)
      .reduce((n, h) => n + (Number(h.unread) || 0), 0);
    unread = data.unread || { mine: sum("mine"), unassigned: sum("unassigned"), all: sum("all") };
    // the open conversation is being read: a message arriving in it is not news
    const open = d.state.detail && d.state.detail.handoff && String(d.state.detail.handoff.id);
    const news = [];
    if (seen) {
      for (const h of rows) {
        const before = seen.get(String(h.id));
        const v = viewOf(h);
        if (!before && v === "unassigned") news.push({ h, what: "New conversation waiting" });
        else if (v === "mine" && (Number(h.unread) || 0) > (before ? before.unread : 0) && !(String(h.id) === open && !document.hidden)) {
          news.push({ h, what: "New message" });
        }
      }
    }
    seen = new Map(rows.map((h) => [String(h.id), { unread: Number(h.unread) || 0, view: viewOf(h) }]));
    renderTabs();
    if (news.length) alert(news);
  }

  // -- alerts: opt-in notification and tone ----------------------------------------------

  function tone() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const t = audio.currentTime;
      for (const [i, freq] of [[0, 880], [1, 1320]]) {      // two short soft beeps
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.type = "sine";
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, t + i * 0.16);
        gain.gain.exponentialRampToValueAtTime(0.15, t + i * 0.16 + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.16 + 0.14);
        osc.connect(gain).connect(audio.destination);
        osc.start(t + i * 0.16);
        osc.stop(t + i * 0.16 + 0.15);
      }
    } catch (err) { /* no audio here */ }
  }

  function alert(news) {
    const body = document.body;
    body.dataset.alerts = String((Number(body.dataset.alerts) || 0) + news.length);   // for tests and tools
    if (!alerts) return;
    tone();
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    if (!document.hidden && document.hasFocus()) return;       // the desk is in front: the tone is enough
    for (const { h, what } of news.slice(0, 3)) {
      // the preview is the customer's text: shown as a notification body (plain text), never as HTML
      const n = new Notification(`${what}: ${h.customer && (h.customer.display || h.customer.name) || "customer"}`,
        { body: String(h.last_message || h.agent_reason || h.reason || "").slice(0, 140), tag: `omnibot-${h.id}` });
      n.onclick = () => { window.focus(); d.select(String(h.id)); n.close(); };
    }
  }

  function renderAlertsButton() {
    const b = document.getElementById("alerts-btn");
    b.textContent = alerts ? "Alerts on" : "Alerts off";
    b.setAttribute("aria-pressed", alerts ? "true" : "false");
    b.title = alerts ? "Sound and notifications for new conversations and messages (click to turn off)"
      : "Turn on a sound and browser notifications for new conversations and messages";
  }

  async function toggleAlerts() {
    alerts = !alerts;
    localStorage.setItem("omnibot.alerts", alerts ? "on" : "off");
    renderAlertsButton();
    if (!alerts) return;
    tone();                                                     // a click may start audio: a sample
    if ("Notification" in window && Notification.permission === "default") {
      try { await Notification.requestPermission(); } catch (err) { /* the tone still works */ }
    }
    if ("Notification" in window && Notification.permission === "denied") {
      d.toast("The browser blocks notifications for this site: you will hear the sound only.", false);
    }
  }

  // -- read marks ------------------------------------------------------------------------

  /** The open conversation counts as read up to its newest message, while the desk is visible. */
  async function markRead(detail) {
    if (document.hidden || !detail || !detail.context || !detail.context.conversation) return;
    const cid = detail.context.conversation.id;
    const msgs = Array.isArray(detail.context.transcript) ? detail.context.transcript : [];
    const newest = msgs.length ? msgs[msgs.length - 1].at : null;
    if (!cid || !newest || readMarks.get(cid) === newest) return;
    readMarks.set(cid, newest);
    try {
      await d.api("POST", `/agent/api/conversations/${encodeURIComponent(cid)}/read`, { at: newest });
    } catch (err) {
      readMarks.delete(cid);
      return;
    }
    let changed = false;
    for (const h of d.state.queue) {
      if (h.conversation_id === cid && h.unread) {
        const v = viewOf(h);
        unread.all -= h.unread;
        if (v in unread) unread[v] -= h.unread;
        h.unread = 0;
        changed = true;
      }
    }
    if (seen) for (const h of d.state.queue) if (h.conversation_id === cid) seen.set(String(h.id), { unread: 0, view: viewOf(h) });
    if (changed) { renderTabs(); d.renderQueue(); }
  }

  // -- customer panel ----------------------------------------------------------------------

  function fallbackName(c, channel) {
    const id = (c && c.id) || "";
    const tail = id.split("_").pop().slice(-4) || "?";
    return `${CHANNEL_PEOPLE[channel] || "Customer"} ${tail}`;
  }

  async function saveProfile(customerId, change, status) {
    status.textContent = "Saving…";
    try {
      const got = await d.api("PATCH", `/agent/api/customers/${encodeURIComponent(customerId)}`, change);
      const c = d.state.detail && d.state.detail.context && d.state.detail.context.customer;
      if (c && c.id === customerId) { c.tier = got.tier; c.tags = got.tags; }
      status.textContent = "Saved";
      return got;
    } catch (err) {
      status.textContent = "";
      d.reportError(err);
      return null;
    }
  }

  function tagChips(c, list, status) {
    list.replaceChildren(...(c.tags || []).map((t) => {
      const x = d.el("button", { type: "button", class: "tag-x", title: `Remove tag ${t}`, "aria-label": `Remove tag ${t}`, text: "×" });
      x.addEventListener("click", async () => {
        const got = await saveProfile(c.id, { tags: (c.tags || []).filter((y) => y !== t) }, status);
        if (got) tagChips(c, list, status);
      });
      return d.el("li", { class: "tag", data: { tag: t } }, d.el("span", { text: t }), x);
    }));
  }

  function renderPanel(detail) {
    const box = document.getElementById("customer-panel");
    if (!box) return;
    const ctx = detail.context || {};
    const c = ctx.customer || {};
    const channel = (ctx.conversation || {}).channel;
    const name = c.display || c.name || fallbackName(c, channel);
    const contacts = c.contacts || { emails: [], phones: [] };
    const rebuild = panelFor !== c.id || !box.querySelector("#tier-input");
    const tickets = (c.tickets || []).map((t) => d.el("li", { class: "cp-ticket", data: { ref: t.reference } },
      d.el("span", { class: "line" }, d.el("strong", { text: t.reference }),
        d.el("span", { class: `badge st-${d.token(t.status)}`, text: t.status }),
        t.category ? d.el("span", { text: t.category }) : null, d.timeEl(t.created_at),
        t.csat ? d.el("span", { class: "csat", text: `CSAT ${t.csat}/5` }) : null),
      t.result ? d.el("span", { class: "summary", text: t.result }) : null,
      t.csat_comment ? d.el("span", { class: "summary comment", text: `“${t.csat_comment}”` }) : null));
    const info = [
      d.el("h3", { text: "Customer" }),
      d.el("p", { class: "cp-name", text: name }),
      ...contacts.emails.map((e) => d.el("a", { class: "cp-contact", href: `mailto:${e}`, text: e })),
      ...contacts.phones.map((p) => d.el("a", { class: "cp-contact", href: `tel:${p.replace(/[^\d+]/g, "")}`, text: p })),
      !contacts.emails.length && !contacts.phones.length ? d.el("p", { class: "none", text: "No e-mail or phone known." }) : null,
    ];
    if (rebuild) {
      panelFor = c.id;
      const status = d.el("span", { class: "cp-status", role: "status" });
      const tier = d.el("input", { id: "tier-input", type: "text", maxLength: 40, placeholder: "e.g. gold",
        autocomplete: "off", value: c.tier || "" });
      const saveTier = async () => {
        const v = tier.value.trim();
        if (v === (c.tier || "")) return;
        await saveProfile(c.id, { tier: v || null }, status);
      };
      tier.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); saveTier(); } });
      tier.addEventListener("change", saveTier);
      const list = d.el("ul", { id: "tag-list", class: "tags" });
      const add = d.el("input", { id: "tag-input", type: "text", maxLength: 40, placeholder: "Add a tag, Enter",
        autocomplete: "off" });
      add.addEventListener("keydown", async (e) => {
        if (e.key !== "Enter") return;
        e.preventDefault();
        const t = add.value.trim();
        if (!t) return;
        const got = await saveProfile(c.id, { tags: [...(c.tags || []), t] }, status);
        if (got) { add.value = ""; tagChips(c, list, status); }
      });
      tagChips(c, list, status);
      box.replaceChildren(d.el("div", { id: "cp-info" }),
        d.el("div", { class: "cp-edit" },
          d.el("label", { for: "tier-input", class: "cp-label", text: "Tier" }), tier,
          d.el("span", { class: "cp-label", text: "Tags" }), list,
          d.el("label", { for: "tag-input", class: "cp-label sr", text: "Add a tag" }), add, status),
        d.el("div", { id: "cp-tickets" }));
    } else {
      const c2 = d.state.detail.context.customer;
      const list = box.querySelector("#tag-list");
      if (document.activeElement !== box.querySelector("#tier-input")) box.querySelector("#tier-input").value = c2.tier || "";
      tagChips(c2, list, box.querySelector(".cp-status"));
    }
    box.querySelector("#cp-info").replaceChildren(...info.filter(Boolean));
    box.querySelector("#cp-tickets").replaceChildren(d.el("h3", { text: "Earlier tickets" }),
      tickets.length ? d.el("ul", { class: "plain" }, tickets) : d.el("p", { class: "none", text: "No tickets." }));
  }

  function onDetail(detail) {
    renderPanel(detail);
    markRead(detail);
  }

  // -- keyboard ------------------------------------------------------------------------------

  function typing(e) {
    const t = e.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }

  function onKey(e) {
    if (!d.state.me || e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    const v = VIEWS.find((x) => x.key === e.key);
    if (v) { e.preventDefault(); setView(v.id); return; }
    if (e.key === "j" || e.key === "k") {       // next / previous conversation in the view
      const rows = visible(d.state.queue);
      if (!rows.length) return;
      const i = rows.findIndex((h) => String(h.id) === d.state.selectedId);
      const next = e.key === "j" ? Math.min(rows.length - 1, i + 1) : Math.max(0, i < 0 ? 0 : i - 1);
      e.preventDefault();
      d.select(String(rows[next].id));
      const item = document.querySelector(`.queue-item[data-handoff-id="${CSS.escape(String(rows[next].id))}"]`);
      if (item) item.focus();
    } else if (e.key === "r") {                  // reply
      const input = document.getElementById("reply-input");
      if (input && !document.getElementById("reply-form").hidden) { e.preventDefault(); input.focus(); }
    }
  }

  function style() {
    const css = `
      .views { display: flex; gap: 2px; padding: 6px 8px 0; border-bottom: 1px solid var(--line); background: var(--panel); }
      .view-tab { display: flex; align-items: center; gap: 6px; border: 0; border-bottom: 2px solid transparent; border-radius: 0;
        padding: 6px 10px; background: transparent; color: var(--muted); font-weight: 500; }
      .view-tab[aria-selected="true"] { color: var(--text); border-bottom-color: var(--accent); }
      .view-tab .count { font-size: 12px; color: var(--muted); }
      .unread { display: inline-block; min-width: 18px; padding: 2px 6px; border-radius: 999px; background: var(--accent);
        color: #fff; font-size: 11px; font-weight: 700; line-height: 1.1; text-align: center; }
      .queue-item .unread { flex: none; }
      #alerts-btn[aria-pressed="true"] { border-color: #3fb950; color: #3fb950; }
      #customer-panel { display: grid; gap: 8px; }
      .cp-name { font-size: 15px; font-weight: 600; margin: 0; overflow-wrap: anywhere; }
      .cp-contact { display: block; font-size: 13px; overflow-wrap: anywhere; color: var(--accent); text-decoration: none; }
      .cp-edit { display: grid; gap: 4px; }
      .cp-edit input { padding: 4px 8px; }
      .cp-label { font-size: 12px; color: var(--muted); margin-top: 4px; }
      .cp-label.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
      .cp-status { font-size: 11.5px; color: var(--muted); min-height: 1em; }
      .tags { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px; }
      .tag { display: inline-flex; align-items: center; gap: 2px; background: #eef0f2; border-radius: 999px; padding: 1px 4px 1px 8px; font-size: 12px; }
      .tag-x { border: 0; background: transparent; padding: 0 4px; line-height: 1; color: var(--muted); }
      .tier { background: #fff4d6; color: #7a5200; border-radius: 999px; padding: 1px 8px; font-size: 12px; }
      .cp-ticket .comment { font-style: italic; }`;
    document.head.append(d.el("style", { text: css }));
  }

  function init(internals) {
    d = internals;
    style();
    buildTabs();
    const btn = d.el("button", { type: "button", id: "alerts-btn" });
    btn.addEventListener("click", toggleAlerts);
    document.getElementById("me-name").before(btn);
    renderAlertsButton();
    document.addEventListener("keydown", onKey);
    document.addEventListener("visibilitychange", () => {     // back to the desk: what is open is now read
      if (!document.hidden && d.state.detail) markRead(d.state.detail);
    });
  }

  return { init, visible, emptyText, unreadBadge, onQueue, onDetail, title, fallbackName,
    get view() { return view; } };
})();
