/*
 * omnibot web-chat widget: plain JS, no dependencies, no build step.
 * Protocol: docs/protocols.md, section "Web chat".
 *
 *   <script src="https://bot.example/webchat/widget.js" data-title="Acme Shop support"
 *           data-open="false" data-color="#4f46e5" defer></script>
 *
 * Everything lives in an open shadow root on <div id="omnibot-root">, so the host
 * page's CSS cannot reach in. Message text is only ever set with textContent.
 */
(function () {
  'use strict';
  if (document.getElementById('omnibot-root')) return; // embedded twice

  // ---- configuration, derived from our own <script> tag ------------------------------
  const script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  const SRC = new URL(script ? script.src : '/webchat/widget.js', location.href);
  const ORIGIN = SRC.origin;
  const WS_URL = (SRC.protocol === 'https:' ? 'wss://' : 'ws://') + SRC.host + '/webchat/ws';
  const data = (script && script.dataset) || {};
  const TITLE = data.title || 'Support';
  const START_OPEN = data.open === 'true' || new URLSearchParams(location.search).get('chat') === 'open';
  const PING_MS = 25000;
  const DEAD_MS = 60000;     // no frame at all (not even a pong) for this long: the socket is dead
  const MAX_BACKOFF = 10000;
  const MAX_TEXT_CHARS = 4000; // characters of a message; the server answers longer ones with too_large

  // The widget's own words: English until the welcome frame brings them in the visitor's language
  // (its `texts`; settings.messages.widget_* overrides them, README "Languages"); a `texts` frame
  // brings them again when the conversation's language changes.
  const T = {
    greeting: 'Hi there! Ask us anything - we usually answer right away.', placeholder: 'Write a message…',
    message: 'Message', conversation: 'Conversation', send: 'Send message', attach: 'Attach an image or PDF',
    open: 'Open chat', open_new: 'Open chat ({{ count }} new)', close: 'Close chat', minimise: 'Minimise chat',
    online: 'online', offline: 'offline', connecting: 'connecting', suggested: 'Suggested replies',
    sending: 'Sending…', not_delivered: 'Not delivered', retry: 'Retry', retry_label: 'Retry sending this message',
    waiting: 'Waiting for an agent', position: 'you are number {{ position }} in the queue',
    with_agent: "You're chatting with a person", too_long: 'That message is too long to send.',
    too_long_max: 'That message is too long to send (at most {{ max }} characters).',
    rate_limited: 'You are sending messages too quickly. Please wait a moment.',
    error: 'Something went wrong on our side. Please try again.',
    still_connecting: 'Still connecting - please try again in a moment.', uploading: 'Uploading {{ name }}…',
    file_too_large: 'That file is too large.', upload_failed: 'Upload failed - please check your connection.',
  };
  /** T[key] with its {{ name }} placeholders filled in (values as plain text). */
  function t(key, vals) {
    return String(T[key] || '').replace(/\{\{\s*(\w+)\s*\}\}/g, (m, n) => (vals && vals[n] != null ? String(vals[n]) : ''));
  }

  // localStorage keys; suffixed with the bot's origin only when it differs from the page's.
  const sfx = ORIGIN === location.origin ? '' : '@' + ORIGIN;
  const K = { token: 'omnibot.token' + sfx, last: 'omnibot.last_id' + sfx, pending: 'omnibot.pending' + sfx };
  const store = {
    get(k) { try { return localStorage.getItem(k); } catch (e) { return null; } },
    set(k, v) { try { v == null ? localStorage.removeItem(k) : localStorage.setItem(k, String(v)); } catch (e) { /* private mode */ } },
  };

  // ---- state ---------------------------------------------------------------------------
  let token = store.get(K.token);
  let sessionToken = null;  // token confirmed by a welcome during this page life
  let lastId = 0;           // highest id shown in THIS page life: a reload asks for the full history
  let pending = loadPending(); // [{client_id, text, payload?, files?, at}] not yet acknowledged
  const seen = new Map();   // server message id -> element
  const byClient = new Map(); // client_id -> element of an outgoing message
  let ws = null, ready = false, attempt = 0, reconnectTimer = null, lastFrameAt = 0;
  let isOpen = false, unread = 0;
  let lastState = {};       // the last state shown in the banner (redrawn when the words change)

  // ---- DOM -----------------------------------------------------------------------------
  const ICON = (d) => '<svg viewBox="0 0 24 24" width="22" height="22" fill="none" stroke="currentColor" stroke-width="2" ' +
    'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">' + d + '</svg>';
  const I_CHAT = ICON('<path d="M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z"/>');
  const I_DOWN = ICON('<path d="M6 9l6 6 6-6"/>');
  const I_CLIP = ICON('<path d="M21.44 11.05l-9.19 9.19a6 6 0 0 1-8.49-8.49l9.19-9.19a4 4 0 0 1 5.66 5.66l-9.2 9.19a2 2 0 0 1-2.83-2.83l8.49-8.48"/>');
  const I_SEND = ICON('<path d="M22 2 11 13"/><path d="M22 2 15 22l-4-9-9-4z"/>');
  const I_FILE = ICON('<path d="M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z"/><path d="M14 2v6h6"/>');

  const STYLES = `
:host { all: initial; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
.omnibot-wrap { --ob-accent: #4f46e5; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1f2330; }
button { font: inherit; }
:focus-visible { outline: 2px solid var(--ob-accent); outline-offset: 2px; }
.omnibot-launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; width: 60px; height: 60px; border-radius: 50%;
  border: 0; background: var(--ob-accent); color: #fff; box-shadow: 0 6px 20px rgba(15,23,42,.3); cursor: pointer;
  display: grid; place-items: center; transition: transform .15s ease; }
.omnibot-launcher:hover { transform: scale(1.06); }
.omnibot-launcher svg { width: 28px; height: 28px; }
.omnibot-badge { position: absolute; top: -3px; right: -3px; min-width: 20px; height: 20px; padding: 0 6px; border-radius: 10px;
  background: #ef4444; color: #fff; font-size: 12px; font-weight: 700; line-height: 20px; text-align: center; }
.omnibot-panel { position: fixed; right: 20px; bottom: 92px; z-index: 2147483000; width: 370px; height: min(600px, calc(100vh - 112px));
  display: flex; flex-direction: column; background: #fff; border-radius: 16px; overflow: hidden;
  box-shadow: 0 12px 48px rgba(15,23,42,.28), 0 2px 6px rgba(15,23,42,.08); animation: omnibot-in .18s ease-out; }
@keyframes omnibot-in { from { opacity: 0; transform: translateY(10px) scale(.98); } }
.omnibot-header { display: flex; align-items: center; gap: 10px; padding: 14px 12px 14px 16px; background: var(--ob-accent); color: #fff; }
.omnibot-avatar { flex: none; width: 38px; height: 38px; border-radius: 50%; background: rgba(255,255,255,.22);
  display: grid; place-items: center; font-weight: 700; font-size: 17px; }
.omnibot-head-text { flex: 1; min-width: 0; }
.omnibot-title { font-weight: 650; font-size: 15px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.omnibot-status-line { display: flex; align-items: center; gap: 6px; font-size: 12px; opacity: .92; }
.omnibot-dot { width: 8px; height: 8px; border-radius: 50%; background: #fbbf24; }
[data-conn="online"] .omnibot-dot { background: #34d399; }
[data-conn="offline"] .omnibot-dot { background: #f87171; }
.omnibot-icon-btn { flex: none; border: 0; background: transparent; color: inherit; width: 36px; height: 36px; border-radius: 10px;
  cursor: pointer; display: grid; place-items: center; }
.omnibot-header .omnibot-icon-btn:hover { background: rgba(255,255,255,.18); }
.omnibot-banner { padding: 8px 16px; font-size: 12.5px; background: #fff8e6; color: #8a5300; border-bottom: 1px solid #f3e2bd; }
.omnibot-banner[data-state="with_agent"] { background: #ecfdf3; color: #05603a; border-color: #c6f0d8; }
.omnibot-body { flex: 1; overflow-y: auto; padding: 16px 14px 10px; background: #f6f7fb; overscroll-behavior: contain; }
.omnibot-messages { display: flex; flex-direction: column; gap: 10px; }
.omnibot-empty { display: none; text-align: center; color: #8a90a2; margin-top: 35%; font-size: 13px; padding: 0 24px; }
.omnibot-messages:empty + .omnibot-empty { display: block; }
.omnibot-msg { display: flex; flex-direction: column; align-items: flex-start; align-self: flex-start; max-width: 84%; }
.omnibot-customer { align-self: flex-end; align-items: flex-end; }
.omnibot-bubble { padding: 9px 13px; border-radius: 16px 16px 16px 4px; background: #fff; box-shadow: 0 1px 2px rgba(16,24,40,.08);
  overflow-wrap: anywhere; }
.omnibot-customer .omnibot-bubble { background: var(--ob-accent); color: #fff; border-radius: 16px 16px 4px 16px; }
.omnibot-agent .omnibot-bubble { background: #eef6ff; box-shadow: inset 0 0 0 1px #d3e4fa; }
.omnibot-text { white-space: pre-wrap; }
.omnibot-text:empty { display: none; }
.omnibot-sender { font-size: 11.5px; font-weight: 600; color: #475467; margin: 0 0 3px 4px; }
.omnibot-meta { display: flex; gap: 6px; align-items: center; margin: 3px 4px 0; font-size: 11px; color: #8a90a2; }
.omnibot-msg[data-status="sending"] .omnibot-bubble { opacity: .65; }
.omnibot-msg[data-status="sent"] .omnibot-tick { color: var(--ob-accent); font-weight: 700; }
.omnibot-msg[data-status="failed"] .omnibot-bubble { background: #fee4e2; color: #912018; }
.omnibot-msg[data-status="failed"] .omnibot-tick { color: #d92d20; }
.omnibot-retry { border: 0; background: none; padding: 0; color: var(--ob-accent); text-decoration: underline; cursor: pointer; font-size: 11px; }
.omnibot-system { align-self: center; align-items: center; max-width: 90%; text-align: center; }
.omnibot-system .omnibot-bubble { background: transparent; box-shadow: none; padding: 2px 8px; font-size: 12px; color: #667085; }
.omnibot-quick-row { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 8px; }
.omnibot-quick { font-size: 13px; padding: 6px 13px; border-radius: 999px; border: 1px solid var(--ob-accent); color: var(--ob-accent);
  background: #fff; cursor: pointer; transition: background .12s, color .12s; }
.omnibot-quick:hover:not(:disabled) { background: var(--ob-accent); color: #fff; }
.omnibot-quick:disabled { opacity: .45; cursor: default; }
.omnibot-quick.omnibot-chosen:disabled { opacity: .8; background: var(--ob-accent); color: #fff; }
.omnibot-notice { align-self: center; max-width: 90%; text-align: center; font-size: 12px; color: #b42318; background: #fef3f2;
  border: 1px solid #fecdca; border-radius: 8px; padding: 5px 10px; }
.omnibot-notice.omnibot-info { color: #475467; background: #f2f4f7; border-color: #e4e7ec; }
.omnibot-att-img img { display: block; max-width: 220px; max-height: 200px; border-radius: 10px; margin-top: 4px; background: #e4e7ec; }
.omnibot-att-file { display: inline-flex; align-items: center; gap: 6px; margin-top: 4px; color: inherit; text-decoration: none; }
.omnibot-att-file .omnibot-att-name { text-decoration: underline; overflow-wrap: anywhere; }
.omnibot-att-icon svg { display: block; width: 18px; height: 18px; }
.omnibot-composer { display: flex; align-items: flex-end; gap: 4px; padding: 10px; border-top: 1px solid #eceef3; background: #fff; }
.omnibot-input { flex: 1; min-width: 0; resize: none; border: 1px solid #dfe3ea; border-radius: 12px; padding: 8px 12px; margin: 0;
  font: inherit; color: inherit; background: #fff; max-height: 120px; outline: none; line-height: 1.4; }
.omnibot-input:focus { border-color: var(--ob-accent); box-shadow: 0 0 0 3px color-mix(in srgb, var(--ob-accent) 18%, transparent); }
.omnibot-composer .omnibot-icon-btn { color: #667085; }
.omnibot-composer .omnibot-icon-btn:hover:not(:disabled) { background: #f2f4f7; color: #344054; }
.omnibot-composer .omnibot-send { color: var(--ob-accent); }
.omnibot-icon-btn:disabled { opacity: .4; cursor: default; }
@media (max-width: 480px) { /* full screen on phones; the header's button closes it */
  .omnibot-panel { inset: 0; width: auto; height: auto; border-radius: 0; }
  .omnibot-open .omnibot-launcher { display: none; } }`;

  // Static markup only (no message data) - every dynamic string is set with textContent below.
  const TEMPLATE = `<div class="omnibot-wrap">
  <div class="omnibot-panel" id="omnibot-panel" role="dialog" aria-labelledby="omnibot-title" data-conn="offline" hidden>
    <div class="omnibot-header">
      <div class="omnibot-avatar" aria-hidden="true"></div>
      <div class="omnibot-head-text">
        <div class="omnibot-title" id="omnibot-title"></div>
        <div class="omnibot-status-line"><span class="omnibot-dot" aria-hidden="true"></span><span id="omnibot-status">offline</span></div>
      </div>
      <button type="button" class="omnibot-icon-btn" id="omnibot-close" aria-label="">${I_DOWN}</button>
    </div>
    <div class="omnibot-banner" id="omnibot-banner" role="status" hidden></div>
    <div class="omnibot-body">
      <div class="omnibot-messages" id="omnibot-messages" role="log" aria-live="polite" aria-relevant="additions" aria-label=""></div>
      <div class="omnibot-empty"></div>
    </div>
    <div class="omnibot-composer">
      <input type="file" id="omnibot-file" accept="image/*,application/pdf" hidden>
      <button type="button" class="omnibot-icon-btn" id="omnibot-attach" aria-label="">${I_CLIP}</button>
      <textarea id="omnibot-input" class="omnibot-input" rows="1" placeholder="" aria-label=""></textarea>
      <button type="button" class="omnibot-icon-btn omnibot-send" id="omnibot-send" aria-label="">${I_SEND}</button>
    </div>
  </div>
  <button type="button" class="omnibot-launcher" id="omnibot-launcher" aria-label="" aria-controls="omnibot-panel"
    aria-expanded="false"><span class="omnibot-launcher-icon">${I_CHAT}</span><span class="omnibot-badge" hidden></span></button>
</div>`;

  const host = document.createElement('div');
  host.id = 'omnibot-root';
  host.style.cssText = 'all: initial !important; display: block !important;';
  const root = host.attachShadow ? host.attachShadow({ mode: 'open' }) : host;
  const styleEl = document.createElement('style');
  styleEl.textContent = STYLES;
  root.appendChild(styleEl);
  const tpl = document.createElement('template');
  tpl.innerHTML = TEMPLATE;
  root.appendChild(tpl.content);

  const $ = (sel) => root.querySelector(sel);
  const wrap = $('.omnibot-wrap'), panel = $('#omnibot-panel'), list = $('#omnibot-messages'), body = $('.omnibot-body');
  const input = $('#omnibot-input'), sendBtn = $('#omnibot-send'), fileInput = $('#omnibot-file'), attachBtn = $('#omnibot-attach');
  const statusEl = $('#omnibot-status'), banner = $('#omnibot-banner'), launcher = $('#omnibot-launcher'), badge = $('.omnibot-badge');
  $('#omnibot-title').textContent = TITLE;
  $('.omnibot-avatar').textContent = TITLE.trim().charAt(0).toUpperCase() || '?';
  /** Put the words into the fixed parts (on start, and when the welcome frame brings others). */
  function applyTexts() {
    $('#omnibot-close').setAttribute('aria-label', T.minimise);
    list.setAttribute('aria-label', T.conversation);
    $('.omnibot-empty').textContent = T.greeting;
    attachBtn.setAttribute('aria-label', T.attach);
    input.placeholder = T.placeholder;
    input.setAttribute('aria-label', T.message);
    sendBtn.setAttribute('aria-label', T.send);
  }
  applyTexts();
  if (data.color && window.CSS && window.CSS.supports && window.CSS.supports('color', data.color)) wrap.style.setProperty('--ob-accent', data.color);

  /** Create an element; text is always assigned with textContent. */
  function h(tag, cls, text) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text != null) el.textContent = String(text);
    return el;
  }

  // ---- helpers -------------------------------------------------------------------------
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
    const b = new Uint8Array(16);
    if (window.crypto && crypto.getRandomValues) crypto.getRandomValues(b);
    else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128; // RFC 4122 version 4
    const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
    return x.slice(0, 8) + '-' + x.slice(8, 12) + '-' + x.slice(12, 16) + '-' + x.slice(16, 20) + '-' + x.slice(20);
  }
  function loadPending() {
    try {
      const v = JSON.parse(store.get(K.pending) || '[]');
      return Array.isArray(v) ? v.filter((p) => p && typeof p.client_id === 'string') : [];
    } catch (e) { return []; }
  }
  function savePending() { store.set(K.pending, pending.length ? JSON.stringify(pending) : null); }
  function dropPending(cid) { pending = pending.filter((p) => p.client_id !== cid); savePending(); }
  function noteId(id) {
    const n = Number(id);
    if (n > lastId) { lastId = n; store.set(K.last, n); }
  }
  function fmtTime(at) {
    const d = at ? new Date(at) : new Date();
    return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }
  /** Absolute URL for an attachment; our own /media URLs get ?token= so the <img> can load. */
  function mediaUrl(u) {
    let url;
    try { url = new URL(u || '', ORIGIN + '/'); } catch (e) { return null; }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null; // no javascript: links
    if (url.origin === ORIGIN && token) url.searchParams.set('token', token);
    return url.href;
  }
  function scrollDown() { body.scrollTop = body.scrollHeight; }
  function send(frame) {
    if (ws && ws.readyState === 1) { ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  // ---- rendering -----------------------------------------------------------------------
  function renderAttachment(a) {
    const url = mediaUrl(a.url);
    const isImage = a.kind === 'image' || /^image\//.test(a.mime || '');
    const link = h('a', isImage ? 'omnibot-att-img' : 'omnibot-att-file');
    if (url) { link.href = url; link.target = '_blank'; link.rel = 'noopener noreferrer'; }
    if (!isImage) {
      const icon = h('span', 'omnibot-att-icon');
      icon.innerHTML = I_FILE; // static icon
      link.append(icon, h('span', 'omnibot-att-name', a.name || 'file'));
    } else {
      const img = h('img');
      img.alt = a.name || 'image';
      img.onload = scrollDown;
      if (url) img.src = url;
      link.appendChild(img);
    }
    return link;
  }

  function buildMsg(role, m) {
    role = ['customer', 'bot', 'agent', 'system'].indexOf(role) >= 0 ? role : 'bot';
    const el = h('div', 'omnibot-msg omnibot-' + role);
    if (role === 'agent') el.appendChild(h('div', 'omnibot-sender', m.sender || 'Agent'));
    const bubble = h('div', 'omnibot-bubble');
    bubble.appendChild(h('div', 'omnibot-text', m.text || ''));
    (m.attachments || []).forEach((a) => bubble.appendChild(renderAttachment(a)));
    el.appendChild(bubble);
    if (role !== 'system') {
      const meta = h('div', 'omnibot-meta');
      const time = h('time', 'omnibot-time', fmtTime(m.at));
      if (m.at) time.dateTime = m.at;
      meta.appendChild(time);
      if (role === 'customer') meta.appendChild(h('span', 'omnibot-tick'));
      el.appendChild(meta);
    }
    if (Array.isArray(m.buttons) && m.buttons.length) el.appendChild(quickRow(m.buttons));
    return el;
  }

  function setMsgStatus(el, status) {
    el.dataset.status = status;
    const tick = el.querySelector('.omnibot-tick');
    if (!tick) return;
    tick.textContent = status === 'sent' ? '✓' : status === 'failed' ? t('not_delivered') : t('sending');
    tick.title = status;
  }

  /** A message from the server (history, message frame). Returns false for duplicates. */
  function addMessage(m) {
    if (!m || m.id == null || seen.has(String(m.id))) return false;
    const el = buildMsg(m.role, m);
    el.dataset.id = String(m.id);
    if (m.role === 'customer') setMsgStatus(el, 'sent');
    seen.set(String(m.id), el);
    // Keep not-yet-acknowledged messages at the bottom: they were not sent before this one.
    list.insertBefore(el, list.querySelector('.omnibot-msg[data-status="sending"]'));
    noteId(m.id);
    scrollDown();
    return true;
  }

  function renderOutgoing(p) {
    if (byClient.has(p.client_id)) return byClient.get(p.client_id);
    const el = buildMsg('customer', { text: p.text, attachments: p.files, at: p.at });
    el.dataset.clientId = p.client_id;
    setMsgStatus(el, 'sending');
    byClient.set(p.client_id, el);
    list.appendChild(el);
    scrollDown();
    return el;
  }

  function quickRow(buttons) {
    const row = h('div', 'omnibot-quick-row');
    row.setAttribute('role', 'group');
    row.setAttribute('aria-label', t('suggested'));
    buttons.forEach((b) => {
      const btn = h('button', 'omnibot-quick', b.title);
      btn.type = 'button';
      btn.addEventListener('click', () => {
        row.querySelectorAll('button').forEach((x) => { x.disabled = true; });
        btn.classList.add('omnibot-chosen');
        sendMessage(String(b.title), b.payload);
        input.focus(); // the clicked button is disabled now; don't leave focus on nothing
      });
      row.appendChild(btn);
    });
    return row;
  }

  function notice(text, kind) {
    const el = h('div', 'omnibot-notice' + (kind === 'info' ? ' omnibot-info' : ''), text);
    if (kind !== 'info') el.setAttribute('role', 'alert');
    list.appendChild(el);
    scrollDown();
    return el;
  }

  function setStatus(s) {
    statusEl.textContent = t(s) || s;
    panel.dataset.conn = s;
  }

  function setState(f) {
    lastState = f || {};
    let text = '';
    if (f.state === 'waiting') {
      text = t('waiting') + (f.position ? ' — ' + t('position', { position: f.position }) : '') +
        (f.team ? ' (' + f.team + ')' : '');
    } else if (f.state === 'with_agent') {
      text = t('with_agent') + (f.agent ? ' (' + f.agent + ')' : '');
    }
    banner.textContent = text;
    banner.dataset.state = f.state || '';
    banner.hidden = !text; // bot / closed / unknown: no banner
  }

  function setUnread(n) {
    unread = n;
    badge.textContent = String(n);
    badge.hidden = n === 0;
    launcher.setAttribute('aria-label', n ? t('open_new', { count: n }) : isOpen ? t('close') : t('open'));
  }

  // ---- connection ----------------------------------------------------------------------
  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (ws) return;
    setStatus('connecting');
    lastFrameAt = Date.now();
    let sock;
    try { sock = new WebSocket(WS_URL); } catch (e) { setStatus('offline'); scheduleReconnect(); return; }
    ws = sock;
    // On page load lastId is 0, so the server sends the whole history; on reconnects only what we missed.
    sock.onopen = () => send({ type: 'hello', token: token || null, last_id: lastId, lang: navigator.language || null });
    sock.onmessage = (ev) => {
      lastFrameAt = Date.now();
      let f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f && typeof f === 'object') handle(f);
    };
    sock.onerror = () => {}; // a close event always follows
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      // 1009: a frame above the server's hard cap. Resending it would close the socket again.
      if (ev && ev.code === 1009 && pending.length) {
        failMessage(largestPending());
        notice(ERRORS.too_large);
      }
      dropSocket();
    };
  }

  function dropSocket() {
    const sock = ws;
    ws = null;
    ready = false;
    if (sock) {
      sock.onopen = sock.onmessage = sock.onerror = sock.onclose = null;
      try { sock.close(); } catch (e) { /* already closed */ }
    }
    setStatus('offline');
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (reconnectTimer) return;
    // Exponential backoff (0.5 s, 1 s, 2 s ... 10 s) with jitter, so that after a server
    // restart thousands of widgets don't all reconnect in the same instant.
    const base = Math.min(MAX_BACKOFF, 500 * Math.pow(2, attempt++));
    reconnectTimer = setTimeout(connect, base / 2 + Math.random() * base / 2);
  }

  /** Reconnect now instead of waiting out the backoff (network back, tab visible again). */
  function kick() { if (reconnectTimer) connect(); }

  function handle(f) {
    switch (f.type) {
      case 'welcome': onWelcome(f); break;
      case 'ack': onAck(f); break;
      case 'message':
        if (addMessage(f.message) && !isOpen && f.message.role !== 'customer') setUnread(unread + 1);
        break;
      case 'state': setState(f); break;
      case 'texts': onTexts(f); break;
      case 'error': onError(f); break;
      default: break; // pong: lastFrameAt was refreshed already
    }
  }

  /** The words a welcome or texts frame brings (README "Languages"); false when it brings none. */
  function takeTexts(f) {
    if (!f.texts || typeof f.texts !== 'object') return false;
    Object.keys(T).forEach((k) => { if (typeof f.texts[k] === 'string' && f.texts[k]) T[k] = f.texts[k]; });
    applyTexts();
    setUnread(unread);
    return true;
  }

  /** The conversation's language changed: the widget's words follow at once (no reload). */
  function onTexts(f) {
    if (!takeTexts(f)) return;
    setStatus(panel.dataset.conn || 'online');
    const s = Object.assign({}, lastState);
    if (typeof f.team === 'string' && f.team && s.state === 'waiting') s.team = f.team;
    setState(s);
    list.querySelectorAll('.omnibot-retry').forEach((b) => { b.textContent = T.retry; b.setAttribute('aria-label', T.retry_label); });
  }

  function onWelcome(f) {
    if (sessionToken && f.token && f.token !== sessionToken) {
      // The server started a fresh session (e.g. our token expired): the old transcript is gone.
      list.textContent = '';
      seen.clear();
      byClient.clear();
      lastId = 0;
    }
    if (f.token) { token = sessionToken = f.token; store.set(K.token, token); }
    takeTexts(f);
    ready = true;
    attempt = 0;
    setStatus('online');
    (f.history || []).forEach(addMessage);
    setState(typeof f.state === 'object' && f.state ? f.state : { state: f.state, position: f.position, team: f.team });
    // Resend everything not yet acknowledged, with the same client_id (the server dedupes).
    pending.forEach((p) => { renderOutgoing(p); send(frameOf(p)); });
  }

  function onAck(f) {
    const cid = f.client_id;
    dropPending(cid);
    const el = byClient.get(cid);
    if (!el) return;
    byClient.delete(cid);
    const id = String(f.id);
    if (seen.has(id) && seen.get(id) !== el) { el.remove(); return; } // already shown from history
    el.dataset.id = id;
    setMsgStatus(el, 'sent');
    seen.set(id, el);
    noteId(id);
  }

  const ERRORS = { too_large: 'too_long', rate_limited: 'rate_limited', internal: 'error' };   // keys of T

  function onError(f) {
    if (f.code === 'invalid_token') { // the server starts a new session and sends a new welcome
      token = null;
      store.set(K.token, null);
      return;
    }
    let p = f.client_id ? pending.find((x) => x.client_id === f.client_id) : null;
    if (f.code === 'unavailable') {
      // Not stored on the server (its storage is down for now): keep it pending and send it
      // again, same client_id, after a growing pause; a reconnect resends it too.
      if (p) {
        p.tries = (p.tries || 0) + 1;
        setTimeout(() => { if (ready && pending.includes(p)) send(frameOf(p)); },
          Math.min(30000, 2000 * Math.pow(2, Math.min(p.tries - 1, 4))));
      }
      return;
    }
    if (!p && f.code === 'too_large' && pending.length) {
      // An oversized frame may be rejected before its client_id could be read: blame the largest one.
      p = largestPending();
    }
    if (p) failMessage(p);
    // the server's own words are for developers (English): the customer reads ours, in their language
    notice(ERRORS[f.code] ? t(ERRORS[f.code]) : t('error') + ' (' + (f.code || 'error') + ')');
  }

  function largestPending() {
    return pending.reduce((a, b) => (JSON.stringify(frameOf(b)).length > JSON.stringify(frameOf(a)).length ? b : a));
  }

  function failMessage(p) {
    dropPending(p.client_id);
    const el = byClient.get(p.client_id);
    if (!el) return;
    setMsgStatus(el, 'failed');
    const retry = h('button', 'omnibot-retry', t('retry'));
    retry.type = 'button';
    retry.setAttribute('aria-label', t('retry_label'));
    retry.addEventListener('click', () => {
      retry.remove();
      pending.push(p);
      savePending();
      setMsgStatus(el, 'sending');
      list.appendChild(el); // it is being sent now, so it belongs at the bottom
      scrollDown();
      if (ready) send(frameOf(p));
    });
    el.querySelector('.omnibot-meta').appendChild(retry);
  }

  // ---- sending -------------------------------------------------------------------------
  function frameOf(p) {
    const f = { type: 'message', client_id: p.client_id, text: p.text };
    if (p.payload != null) f.payload = p.payload;
    if (p.files && p.files.length) f.attachments = p.files.map((a) => ({ id: a.id }));
    return f;
  }

  /** Show immediately, persist until acknowledged, send when the socket is ready. */
  function sendMessage(text, payload, files) {
    const p = { client_id: uuid(), text: text, at: new Date().toISOString() };
    if (payload != null) p.payload = payload;
    if (files && files.length) p.files = files; // upload answers, kept for rendering thumbnails
    pending.push(p);
    savePending();
    renderOutgoing(p);
    if (ready) send(frameOf(p));
    else if (!ws) connect();
  }

  function submit() {
    const text = input.value.trim();
    if (!text) return;
    if (Array.from(text).length > MAX_TEXT_CHARS) { // the server's limit, in characters (code points)
      notice(t('too_long_max', { max: MAX_TEXT_CHARS }));
      return;
    }
    sendMessage(text);
    input.value = '';
    autosize();
    input.focus();
  }

  async function upload(file) {
    if (!token) { notice(t('still_connecting')); return; }
    attachBtn.disabled = true;
    const note = notice(t('uploading', { name: file.name }), 'info');
    try {
      const form = new FormData();
      form.append('file', file, file.name);
      const r = await fetch(ORIGIN + '/webchat/upload', { method: 'POST', headers: { Authorization: 'Bearer ' + token }, body: form });
      let res = null;
      try { res = await r.json(); } catch (e) { /* not JSON */ }
      if (!r.ok || !res || !res.id) {
        throw new Error(r.status === 413 ? t('file_too_large') : t('upload_failed') + ' (' + r.status + ')');
      }
      note.remove();
      sendMessage(input.value.trim(), null, [res]); // text may be empty: the attachment is the message
      input.value = '';
      autosize();
    } catch (e) {
      note.className = 'omnibot-notice';
      note.setAttribute('role', 'alert');
      note.textContent = e && e.message && !/fetch/i.test(e.message) ? e.message : t('upload_failed');
    } finally {
      attachBtn.disabled = false;
      fileInput.value = '';
    }
  }

  // ---- UI events -----------------------------------------------------------------------
  function autosize() {
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight + 2, 120) + 'px';
  }

  function setOpen(open, focus) {
    isOpen = open;
    panel.hidden = !open;
    wrap.classList.toggle('omnibot-open', open);
    launcher.setAttribute('aria-expanded', String(open));
    $('.omnibot-launcher-icon').innerHTML = open ? I_DOWN : I_CHAT; // static icons only
    setUnread(open ? 0 : unread);
    if (!open) return;
    if (!ws && !reconnectTimer) connect(); // first open: start the session now
    scrollDown();
    if (focus) input.focus({ preventScroll: true });
  }

  launcher.addEventListener('click', () => setOpen(!isOpen, true));
  $('#omnibot-close').addEventListener('click', () => { setOpen(false); launcher.focus(); });
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { setOpen(false); launcher.focus(); }
  });
  input.addEventListener('keydown', (e) => {
    // Enter sends, Shift+Enter is a new line; don't send while an IME composition is active.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  input.addEventListener('input', autosize);
  sendBtn.addEventListener('click', submit);
  attachBtn.addEventListener('click', () => fileInput.click());
  fileInput.addEventListener('change', () => { if (fileInput.files && fileInput.files[0]) upload(fileInput.files[0]); });
  window.addEventListener('online', kick);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) kick(); });

  setInterval(() => {
    if (!ws || ws.readyState !== 1) return;
    if (Date.now() - lastFrameAt > DEAD_MS) { dropSocket(); return; } // pongs stopped: half-open socket
    send({ type: 'ping' });
  }, PING_MS);

  // ---- start ---------------------------------------------------------------------------
  function mount() {
    document.body.appendChild(host);
    pending.forEach(renderOutgoing); // unsent messages from before a reload, shown while connecting
    // Connect right away only if there is a conversation to resume (or the panel is open);
    // otherwise wait for the first open, so that every page view does not create a session.
    if (token || pending.length || START_OPEN) connect();
    if (START_OPEN) setOpen(true, false);
  }
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount);
})();
