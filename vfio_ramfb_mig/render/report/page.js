// vmig report: lays out the JSON in #vmig-data. No network, no libraries: plain DOM.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("vmig-data").textContent);
  const main = document.getElementById("main");
  const tabs = document.getElementById("tabs");
  main.textContent = "";

  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) node.append(kid);
    return node;
  }
  const hex = (n, width) => "0x" + n.toString(16).padStart(width || 8, "0");
  const esc = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  function bytesOf(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function sizeText(n) {
    for (const [unit, scale] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]])
      if (n >= scale) return (n / scale).toFixed(n % scale ? 1 : 0) + " " + unit;
    return n + " B";
  }

  // ------------------------------------------------------------------ one stream's panel
  function streamPanel(stream, key) {
    const panel = el("section", { class: "panel", id: "panel-" + key, "data-stream": stream.name });
    // nodes of the tree, flattened: id -> {node, parent, text}
    const nodes = [];
    const recordRoot = {};
    (function index(list, parent) {
      for (const node of list) {
        const id = nodes.length;
        const text = node.t.map((p) => p[0]).join("");
        nodes.push({ node, parent, text, lower: text.toLowerCase(), kids: [] });
        if (parent !== null) nodes[parent].kids.push(id);
        else if (!(node.r in recordRoot)) recordRoot[node.r] = id;
        if (node.c) index(node.c, id);
      }
    })(stream.tree, null);

    // facts
    const facts = el("table", { class: "facts" });
    const rows = [["file", stream.name], ["size", stream.size.toLocaleString("en") + " bytes"],
      ["records", String(stream.records)], ["format", "QEVM version " + stream.version],
      ["machine", stream.machine || "(no configuration record)"],
      ["vmdesc", stream.vmdesc ? "yes" : "no"]];
    if (stream.error) rows.push(["error", stream.error]);
    for (const w of stream.warnings) rows.push(["warning", w]);
    for (const [k, v] of rows) facts.append(el("tr", {}, el("td", { text: k }), el("td", { text: v, class: "fact-" + k })));
    panel.append(el("h2", { text: "Stream" }), facts);

    // devices in words
    const devices = el("ul", { class: "devices" });
    for (const dev of stream.devices) {
      const lines = el("ul", {});
      for (const line of dev.lines) lines.append(el("li", { text: line }));
      devices.append(el("li", { class: "device" }, el("b", { text: dev.name }), " (" + dev.kind + ")", lines));
    }
    if (!stream.devices.length) devices.append(el("li", { text: "no VFIO device and no ramfb display in this stream" }));
    panel.append(el("h2", { text: "VFIO and ramfb" }), devices);

    // screen
    const screen = el("div", { class: "screen" });
    if (stream.screen.png) {
      screen.append(el("p", { class: "screen-words", text: stream.screen.words + (stream.screen.missing ? "; " + stream.screen.missing : "") }),
        el("img", { src: "data:image/png;base64," + stream.screen.png, alt: "the guest's screen", class: "screen-image" }));
    } else {
      screen.append(el("p", { class: "screen-words", text: stream.screen.error }));
    }
    panel.append(el("h2", { text: "Screen" }), screen);

    // records: tree + detail
    const search = el("input", { class: "search", type: "search", "aria-label": "search the tree", placeholder: "search names, values, offsets (0x…)" });
    const treeBox = el("div", { class: "tree", role: "tree" });
    const detail = el("div", { class: "detail" }, el("p", { class: "d", text: "Click a line of the tree to see its bytes." }));
    panel.append(el("h2", { text: "Records" }),
      el("div", { class: "split" }, el("div", { class: "tree-pane" }, search, treeBox), el("div", { class: "detail-pane" }, detail)));

    const liOf = new Map();
    function renderNode(id, open) {
      const item = nodes[id];
      const li = el("li", { "data-node": String(id) });
      const line = el("div", {});
      const twisty = el("span", { class: "tw", text: item.kids.length ? (open ? "▾" : "▸") : "" });
      line.append(twisty);
      if (item.node.o !== undefined) {
        line.append(el("span", { class: "o", text: hex(item.node.o) }), el("span", { class: "n", text: " +" + String(item.node.n).padEnd(7) }));
      }
      for (const [text, cls] of item.node.t) line.append(cls ? el("span", { class: cls, text }) : text);
      li.append(line);
      if (item.kids.length && !open) li.classList.add("closed");
      line.addEventListener("click", (event) => {
        if (event.target === twisty || li.classList.contains("selected")) toggle(li, id);
        select(id);
      });
      liOf.set(id, li);
      return li;
    }
    function children(li, id, filter) {
      if (li.querySelector(":scope > ul")) return;
      const ul = el("ul", {});
      for (const kid of nodes[id].kids) {
        if (filter && !filter.has(kid)) continue;
        const kli = renderNode(kid, !!filter);
        ul.append(kli);
        if (filter) children(kli, kid, filter);
      }
      li.append(ul);
    }
    function toggle(li, id) {
      if (!nodes[id].kids.length) return;
      children(li, id, null);
      li.classList.toggle("closed");
      li.querySelector(":scope > div > .tw").textContent = li.classList.contains("closed") ? "▸" : "▾";
    }
    function renderTree(filter) {
      liOf.clear();
      treeBox.textContent = "";
      const ul = el("ul", {});
      for (let id = 0; id < nodes.length; id++) {
        if (nodes[id].parent !== null) continue;
        if (filter && !filter.has(id)) continue;
        const li = renderNode(id, !!filter);
        ul.append(li);
        if (filter) children(li, id, filter);
      }
      treeBox.append(ul);
    }
    function reveal(id) {
      // open every ancestor so the node's line exists and shows
      const chain = [];
      for (let p = id; p !== null; p = nodes[p].parent) chain.unshift(p);
      for (const p of chain.slice(0, -1)) {
        const li = liOf.get(p);
        if (!li) break;
        children(li, p, null);
        if (li.classList.contains("closed")) toggle(li, p);
      }
      return liOf.get(id);
    }

    let selected = null;
    function select(id) {
      if (selected !== null && liOf.get(selected)) liOf.get(selected).classList.remove("selected");
      selected = id;
      const li = reveal(id);
      if (li) { li.classList.add("selected"); li.scrollIntoView({ block: "nearest" }); }
      showDetail(id);
    }
    function recordOf(id) { let p = id; while (nodes[p].parent !== null) p = nodes[p].parent; return p; }

    function showDetail(id) {
      const item = nodes[id];
      const rootId = recordOf(id);
      const rec = stream.bytes[String(item.node.r)];
      detail.textContent = "";
      detail.append(el("div", { class: "detail-title", text: item.text }));
      if (item.node.o !== undefined)
        detail.append(el("div", { class: "mono detail-span", text: "offset " + hex(item.node.o) + " (" + item.node.o + "), " + item.node.n + " bytes" }));
      if (!rec) { detail.append(el("p", { text: "no bytes for this record" })); return; }
      const data = bytesOf(rec.b);
      if (data.length < rec.n) detail.append(el("p", { class: "d", text: "first " + data.length + " of " + rec.n + " bytes of the record" }));
      // the innermost node with a span owns each byte
      const owner = new Int32Array(data.length).fill(-1);
      const depth = new Int32Array(data.length).fill(-1);
      (function mark(nid, level) {
        const n = nodes[nid].node;
        if (n.o !== undefined && n.n > 0) {
          const lo = Math.max(n.o - rec.o, 0), hi = Math.min(n.o + n.n - rec.o, data.length);
          for (let i = lo; i < hi; i++) if (level >= depth[i]) { depth[i] = level; owner[i] = nid; }
        }
        for (const kid of nodes[nid].kids) mark(kid, level + 1);
      })(rootId, 0);
      // alternate two shades between neighbouring fields; the selected node's bytes in yellow
      // a selected field is yellow; a selected record or struct keeps its fields' shades, in bold
      const inSel = (i) => item.node.o !== undefined && rec.o + i >= item.node.o && rec.o + i < item.node.o + item.node.n;
      const leaf = !item.kids.some((k) => nodes[k].node.o !== undefined);
      const shade = new Map();
      let flip = 0, last = -2;
      const cls = (i) => {
        if (inSel(i) && leaf) return "sel";
        const o = owner[i];
        let c = "";
        if (o >= 0 && o !== rootId) {
          if (!shade.has(o)) { if (o !== last) flip ^= 1; shade.set(o, "f" + flip); }
          last = o;
          c = shade.get(o);
        }
        return inSel(i) ? c + " in" : c;
      };
      const parts = [];
      let firstSel = -1;
      for (let row = 0; row < data.length; row += 16) {
        const off = rec.o + row;
        let hx = "", ascii = "", runCls = null, runNode = null, run = "";
        const flush = () => { if (run) hx += "<span class=\"" + runCls + "\" data-node=\"" + runNode + "\">" + run + "</span>"; run = ""; };
        for (let i = row; i < Math.min(row + 16, data.length); i++) {
          const c = cls(i);
          if (inSel(i) && firstSel < 0) firstSel = row;
          if (c !== runCls || owner[i] !== runNode) { flush(); runCls = c; runNode = owner[i]; }
          run += data[i].toString(16).padStart(2, "0") + " ";
          const ch = data[i];
          ascii += ch >= 0x20 && ch < 0x7f ? esc(String.fromCharCode(ch)) : ".";
        }
        flush();
        parts.push("<div class=\"hexrow\" data-offset=\"" + off + "\"><span class=\"row-off\">" + hex(off) + "</span>  <span class=\"hx\">" + hx + "</span> <span class=\"ascii\">" + ascii + "</span></div>");
      }
      const box = el("div", { class: "hex", role: "region", "aria-label": "bytes" });
      box.innerHTML = parts.join("");
      box.addEventListener("click", (event) => {
        const target = event.target.closest("[data-node]");
        if (target && Number(target.dataset.node) >= 0) select(Number(target.dataset.node));
      });
      detail.append(box);
      if (firstSel >= 0) {
        const row = box.children[firstSel / 16];
        if (row) box.scrollTop = row.offsetTop - box.offsetTop - 32;
      }
    }

    // search: matching lines and their ancestors, all open
    let timer = null;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        const q = search.value.trim().toLowerCase();
        if (!q) { renderTree(null); return; }
        const num = /^0x[0-9a-f]+$/.test(q) ? parseInt(q, 16) : null;
        // a hex number also finds the innermost line whose bytes hold that offset
        const holds = (id) => { const n = nodes[id].node; return n.o !== undefined && num >= n.o && num < n.o + n.n; };
        const keep = new Set(), matched = new Set();
        for (let id = 0; id < nodes.length && matched.size < 2000; id++) {
          const hit = nodes[id].lower.includes(q) || (num !== null && holds(id) && !nodes[id].kids.some(holds));
          if (!hit) continue;
          matched.add(id);
          for (let p = id; p !== null && !keep.has(p); p = nodes[p].parent) keep.add(p);
        }
        renderTree(keep);
        for (const id of matched) liOf.get(id).firstChild.classList.add("hit");
      }, 150);
    });
    renderTree(null);

    // RAM map
    const ram = el("div", { class: "ram" });
    if (stream.ram.blocks) {
      const legend = el("div", { class: "legend" });
      for (const [letter, words] of Object.entries(stream.ram.states)) legend.append(el("span", { class: "cell-" + letter }), words);
      ram.append(legend);
      for (const block of stream.ram.blocks) {
        const counts = Object.entries(block.counts).filter(([, n]) => n).map(([k, n]) => n.toLocaleString("en") + " " + stream.ram.states[k]).join(", ");
        const cells = el("div", { class: "ram-cells", "data-block": block.block });
        const html = [];
        for (let i = 0; i < block.cells.length; i++) {
          const first = i * block.pages_per_cell;
          const last = Math.min(first + block.pages_per_cell, block.pages) - 1;
          html.push("<span class=\"cell-" + block.cells[i] + "\" title=\"pages " + first + "–" + last + ": " + stream.ram.states[block.cells[i]] + "\"></span>");
        }
        cells.innerHTML = html.join("");
        ram.append(el("div", { class: "ram-block" },
          el("div", {}, el("b", { text: block.block }), " " + block.pages.toLocaleString("en") + " pages; " + counts +
            (block.pages_per_cell > 1 ? "; one cell is " + block.pages_per_cell + " pages" : "")), cells));
      }
    }
    if (stream.ram.note) ram.append(el("p", { class: "d", text: stream.ram.note }));
    panel.append(el("h2", { text: "RAM" }), ram);

    panel.selectOffset = (offset) => {
      // the innermost node whose span holds the offset
      let best = null;
      for (let id = 0; id < nodes.length; id++) {
        const n = nodes[id].node;
        if (n.o !== undefined && offset >= n.o && offset < n.o + Math.max(n.n, 1)) best = id;
      }
      if (best !== null) { search.value = ""; renderTree(null); select(best); }
    };
    return panel;
  }

  // ------------------------------------------------------------------ the diff panel
  function diffPanel(diff, names) {
    const panel = el("section", { class: "panel", id: "panel-diff" });
    panel.append(el("h2", { text: "Differences" }),
      el("p", { class: "diff-verdict", text: diff.same ? "The streams are the same." : diff.changes.length + " change(s)" + (diff.ignored ? ", " + diff.ignored + " ignored" : "") }));
    if (diff.screen) {
      const box = el("div", { class: "screen screen-diff" }, el("p", { class: "screen-words", text: diff.screen.words }));
      if (diff.screen.png) box.append(el("img", { src: "data:image/png;base64," + diff.screen.png, alt: "A, B and their differences", class: "screen-image" }));
      panel.append(el("h2", { text: "Screens" }), box);
    }
    const table = el("table", { class: "changes" });
    for (const c of diff.changes) {
      const row = el("tr", {}, el("td", { class: "path", text: c.path }), el("td", { text: c.text }));
      for (const [side, key] of [["a", "A"], ["b", "B"]]) {
        const cell = el("td", {});
        if (c[side] !== null && c[side] !== undefined) {
          const link = el("a", { href: "#", text: key + " " + hex(c[side]) });
          link.addEventListener("click", (event) => { event.preventDefault(); show(side); panels[side].selectOffset(c[side]); });
          cell.append(link);
        }
        row.append(cell);
      }
      table.append(row);
    }
    panel.append(el("h2", { text: "Changes (" + names.join(" → ") + ")" }), table);
    for (const note of diff.notes) panel.append(el("p", { class: "d", text: note }));
    return panel;
  }

  // ------------------------------------------------------------------ tabs
  const panels = {};
  const buttons = {};
  function show(key) {
    for (const [k, p] of Object.entries(panels)) p.classList.toggle("active", k === key);
    for (const [k, b] of Object.entries(buttons)) b.disabled = k === key;
  }
  const keys = ["a", "b"];
  data.streams.forEach((stream, i) => {
    panels[keys[i]] = streamPanel(stream, keys[i]);
    main.append(panels[keys[i]]);
  });
  if (data.diff) { panels.diff = diffPanel(data.diff, data.streams.map((s) => s.name)); main.append(panels.diff); }
  if (Object.keys(panels).length > 1) {
    for (const key of Object.keys(panels)) {
      const label = key === "diff" ? "diff" : key.toUpperCase() + ": " + data.streams[keys.indexOf(key)].name;
      buttons[key] = el("button", { type: "button", "data-tab": key, text: label });
      buttons[key].addEventListener("click", () => show(key));
      tabs.append(buttons[key]);
    }
  }
  show(data.diff ? "diff" : "a");
  const footer = document.getElementById("left-out");
  footer.append("vmig " + data.vmig + ". ");
  if (data.left_out.length) {
    const list = el("ul", { class: "left-out" });
    for (const item of data.left_out) list.append(el("li", { text: item }));
    footer.append("Left out to keep this page small:", list);
  } else {
    footer.append("Nothing was left out.");
  }
  document.body.dataset.ready = "1";
})();
