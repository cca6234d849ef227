"""The web UI served by the orchestrator itself (a read-only executions page for now)."""

INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Polos</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1b1b}
table{border-collapse:collapse;width:100%}td,th{padding:.35rem .6rem;border-bottom:1px solid #ddd;text-align:left;font-size:.9rem}
code{font-size:.85rem}.completed{color:#2d6a4f}.failed{color:#b00020}.running{color:#0b62a4}.cancelled{color:#777}
</style></head>
<body><h1>Polos</h1><p>Executions of the default project (refreshes every 2 s).
API: <a href="/docs">/docs</a></p>
<table><thead><tr><th>id</th><th>workflow</th><th>status</th><th>attempt</th><th>created</th></tr></thead>
<tbody id="rows"></tbody></table>
<script>
async function load(){
  const r = await fetch('/api/v1/executions?limit=100'); const page = await r.json();
  const rows = document.getElementById('rows'); rows.innerHTML = '';
  for (const e of page.items){
    const tr = document.createElement('tr');
    for (const [v, cls] of [[e.id,''],[e.workflow_id,''],[e.status,e.status],[e.attempt,''],[new Date(e.created_at).toISOString(),'']]){
      const td = document.createElement('td'); td.textContent = v; if (cls) td.className = cls; tr.appendChild(td);
    }
    rows.appendChild(tr);
  }
}
load(); setInterval(load, 2000);
</script></body></html>
"""
