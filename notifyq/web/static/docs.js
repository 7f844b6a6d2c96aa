// Renders /openapi.json as a browsable list of operations (no external assets).
"use strict";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function resolve(spec, schema) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return { name, schema: spec.components.schemas[name] };
  }
  return { name: null, schema };
}

function schemaBlock(spec, schema) {
  const { name, schema: resolved } = resolve(spec, schema);
  const details = el("details");
  details.appendChild(el("summary", name || "schema"));
  details.appendChild(el("pre", JSON.stringify(resolved, null, 2)));
  return details;
}

async function main() {
  const target = document.getElementById("operations");
  const spec = await (await fetch("/openapi.json")).json();
  target.replaceChildren();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const card = el("section", null, "operation");
      const head = el("h3");
      head.appendChild(el("span", method.toUpperCase(), "method m-" + method));
      head.appendChild(el("code", " " + path));
      card.appendChild(head);
      if (op.summary) card.appendChild(el("p", op.summary));
      if (op.description) card.appendChild(el("p", op.description, "muted"));
      if (op.security && op.security.length) card.appendChild(el("p", "needs the bearer token when API_TOKEN is set", "muted"));
      if (op.parameters && op.parameters.length) {
        const list = el("ul");
        for (const p of op.parameters) {
          list.appendChild(el("li", p.name + " (" + p.in + (p.required ? ", required" : "") + ")" +
            (p.schema && p.schema.description ? ": " + p.schema.description : "")));
        }
        card.appendChild(el("h4", "Parameters"));
        card.appendChild(list);
      }
      const body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
      if (body) {
        card.appendChild(el("h4", "Request body"));
        card.appendChild(schemaBlock(spec, body.schema));
      }
      card.appendChild(el("h4", "Responses"));
      for (const [code, response] of Object.entries(op.responses || {})) {
        const json = response.content && response.content["application/json"];
        const line = el("div", null, "response");
        line.appendChild(el("b", code + " "));
        line.appendChild(document.createTextNode(response.description || ""));
        if (json) line.appendChild(schemaBlock(spec, json.schema));
        card.appendChild(line);
      }
      target.appendChild(card);
    }
  }
}

main().catch((err) => {
  document.getElementById("operations").textContent = "could not load /openapi.json: " + err;
});
