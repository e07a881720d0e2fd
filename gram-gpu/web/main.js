// The page's logic: build a Problem (generated or from dropped .npy files), run it through the
// wasm module (WebGPU volume matrix + top-k, CPU reference), show the measurements. The final
// state is on <body data-state="done|error"> and the numbers in #result (JSON), for the checker.
import init, { Problem, random_unit_rows, noisy_rows, parse_npy, run } from "./pkg/gram_web.js";

const $ = (id) => document.getElementById(id);
let files = [];

function status(text, cls) {
  $("status").textContent = text;
  $("status").className = cls || "";
}

// wgpu's adapter name is empty on WebGPU; the browser's GPUAdapterInfo says more.
async function adapterInfo() {
  const a = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  const i = a && a.info;
  return i ? [i.vendor, i.architecture, i.device, i.description].filter((x) => x).join(" ") : "";
}

function show(r, info) {
  const pairs = r.n1 * r.n2;
  const adapter = `${info || "unnamed adapter"} ${r.adapter.trim()}`;
  const rows = [
    ["adapter", adapter],
    ["problem", `${r.n1} anchors × ${r.n2} candidates, k = ${r.k}, D = ${r.dim}`],
    ["device setup + candidate factoring", `${r.setup_ms.toFixed(1)} ms`],
    ["GPU volume matrix", `${r.gpu_matrix_ms.toFixed(1)} ms (${(pairs / r.gpu_matrix_ms * 1e3).toExponential(2)} pairs/s)`],
    [`GPU top-${r.top_k}`, `${r.gpu_topk_ms.toFixed(1)} ms`],
    ["CPU exact (gram-nostd, wasm32)", `${r.cpu_ms.toFixed(1)} ms`],
    ["max relative error vs CPU", r.max_rel_err.toExponential(2)],
    ["max absolute error (volumes < 1e-3)", r.max_abs_err.toExponential(2)],
    [`top-${r.top_k} volumes, max relative error`, r.topk_max_rel_err.toExponential(2)],
    [`rows whose top-${r.top_k} equals the CPU's`, `${r.topk_rows_equal} / ${r.n1}`],
  ];
  $("rows").replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    for (const text of [k, v]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  }));
  $("results").hidden = false;
  $("preview").textContent = r.preview;
  $("preview").hidden = $("previewhead").hidden = false;
  const result = {
    adapter, n1: r.n1, n2: r.n2, dim: r.dim, k: r.k, top_k: r.top_k, pairs,
    gpu_matrix_ms: r.gpu_matrix_ms, gpu_topk_ms: r.gpu_topk_ms, cpu_ms: r.cpu_ms, setup_ms: r.setup_ms,
    max_rel_err: r.max_rel_err, max_abs_err: r.max_abs_err, topk_max_rel_err: r.topk_max_rel_err,
    topk_rows_equal: r.topk_rows_equal,
  };
  $("result").textContent = JSON.stringify(result);
  return result;
}

async function execute(makeProblem, topk) {
  document.body.dataset.state = "running";
  status("running on WebGPU…");
  try {
    if (!navigator.gpu) throw new Error("this browser offers no WebGPU (navigator.gpu is missing)");
    const r = show(await run(makeProblem(), topk), await adapterInfo());
    const ok = r.max_rel_err <= 1e-4 && r.max_abs_err <= 1e-5 && r.topk_max_rel_err <= 1e-4;
    status(ok ? "done: WebGPU agrees with the CPU" : "done, but WebGPU differs from the CPU beyond 1e-4", ok ? "ok" : "error");
    document.body.dataset.state = ok ? "done" : "mismatch";
  } catch (e) {
    status(`error: ${e.message || e}`, "error");
    $("result").textContent = JSON.stringify({ error: String(e.message || e) });
    document.body.dataset.state = "error";
  }
}

function generated() {
  const n1 = +$("n1").value, n2 = +$("n2").value, d = +$("dim").value, k = +$("k").value;
  return () => {
    // A latent row per candidate; modality t and the anchors are noisy copies of it (anchor i
    // belongs with candidate i mod N2).
    const base = random_unit_rows(n2, d, 1);
    const p = new Problem(noisy_rows(base, n1, 0.4, 2));
    for (let t = 1; t < k; t++) p.add(noisy_rows(base, n2, 0.3 * t, 10 + t));
    return p;
  };
}

async function readFiles(list) {
  files = [];
  for (const f of list) files.push(parse_npy(f.name, new Uint8Array(await f.arrayBuffer())));
  $("filelist").textContent = [...list].map((f, i) => (i ? "modality: " : "anchor: ") + f.name).join(", ");
  $("runfiles").disabled = files.length < 2;
}

async function main() {
  await init();
  status("ready", "ok");
  document.body.dataset.state = "ready";
  $("generate").onclick = () => execute(generated(), +$("topk").value);
  $("files").onchange = (e) => readFiles(e.target.files).catch((err) => status(`error: ${err.message || err}`, "error"));
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    readFiles(e.dataTransfer.files).catch((err) => status(`error: ${err.message || err}`, "error"));
  };
  $("runfiles").onclick = () => execute(() => {
    const p = new Problem(files[0]);
    for (const m of files.slice(1)) p.add(m);
    return p;
  }, +$("topk").value);
  const q = new URLSearchParams(location.search);
  for (const key of ["n1", "n2", "dim", "k", "topk"]) if (q.has(key)) $(key).value = q.get(key);
  if (q.has("auto")) $("generate").click();
}

main().catch((e) => {
  status(`error: ${e.message || e}`, "error");
  document.body.dataset.state = "error";
});
