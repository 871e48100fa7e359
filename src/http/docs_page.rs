//! `GET /docs`: the OpenAPI description rendered as one plain HTML page, on the server, from
//! the same document that `GET /v1/openapi.json` serves: operations by tag with their
//! parameters, bodies and answers, then the schemas they refer to.
//!
//! Rendered here rather than by a vendored browser viewer (Swagger UI, Redoc: about 2 MB of
//! minified third-party script each, to be kept up to date for security fixes): the page needs
//! no script at all, so it is served with a `Content-Security-Policy` that forbids scripts, works
//! in any browser and offline, and is small enough to read. Trying requests out is left to
//! tools that read `/v1/openapi.json`.

use std::fmt::Write;

use serde_json::{Map, Value};

/// The page for `doc`, an OpenAPI 3.1 description as JSON.
pub fn render(doc: &Value) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = text(&doc["info"]["title"]);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>\
         <h1>{title} <small>{}</small></h1><p>{}</p>\
         <p>Machine-readable: <a href=\"/v1/openapi.json\">/v1/openapi.json</a> (OpenAPI {}).</p>",
        text(&doc["info"]["version"]),
        prose(&doc["info"]["description"]),
        text(&doc["openapi"]),
    );
    let operations = operations(doc);
    let tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (text(&t["name"]), prose(&t["description"])))
        .collect();
    out.push_str("<nav><h2>Contents</h2><ul>");
    for (name, _) in &tags {
        let _ = write!(out, "<li><a href=\"#tag-{name}\">{name}</a></li>");
    }
    out.push_str("<li><a href=\"#schemas\">Schemas</a></li></ul></nav>");
    for (name, description) in &tags {
        let _ = write!(
            out,
            "<section><h2 id=\"tag-{name}\">{name}</h2><p>{description}</p>"
        );
        for (method, path, op) in operations.iter().filter(|(_, _, op)| has_tag(op, name)) {
            operation(&mut out, method, path, op);
        }
        out.push_str("</section>");
    }
    out.push_str("<section><h2 id=\"schemas\">Schemas</h2>");
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let _ = write!(
            out,
            "<h3 id=\"schema-{}\">{}</h3>",
            escape(name),
            escape(name)
        );
        schema_body(&mut out, schema);
    }
    out.push_str("</section></main></body></html>");
    out
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1b1b1b}\
main{max-width:60rem;margin:auto;padding:1rem 2rem}h1 small{font-size:.5em;color:#666}\
h2{border-bottom:2px solid #ddd;margin-top:2.5rem}h3{margin:2rem 0 .3rem}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}\
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}\
th{background:#f4f4f4}code{background:#f4f4f4;padding:0 .2em}\
.m{display:inline-block;min-width:4.5em;font-weight:bold;font-family:monospace}\
.get{color:#0a6}.post{color:#06c}.put{color:#a60}.delete{color:#c22}";

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut list = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            list.push((method.clone(), path.clone(), op));
        }
    }
    list
}

fn has_tag(op: &Value, tag: &str) -> bool {
    op["tags"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|t| t == tag))
}

fn operation(out: &mut String, method: &str, path: &str, op: &Value) {
    let id = text(&op["operationId"]);
    let _ = write!(
        out,
        "<h3 id=\"op-{id}\"><span class=\"m {method}\">{}</span> <code>{}</code></h3>",
        method.to_uppercase(),
        escape(path)
    );
    for key in ["summary", "description"] {
        if op[key].is_string() {
            let _ = write!(out, "<p>{}</p>", prose(&op[key]));
        }
    }
    let security = match op["security"].as_array() {
        Some(reqs)
            if reqs
                .iter()
                .all(|r| r.as_object().is_some_and(Map::is_empty)) =>
        {
            "none".to_owned()
        }
        Some(reqs) => reqs
            .iter()
            .flat_map(|r| r.as_object().into_iter().flat_map(|r| r.keys()))
            .map(|k| escape(k))
            .collect::<Vec<_>>()
            .join(" or "),
        None => "bearer".to_owned(),
    };
    let _ = write!(out, "<p>Credential: {security}.</p>");
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str(
            "<table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>",
        );
        for p in params {
            let required = if p["required"] == true {
                " (required)"
            } else {
                ""
            };
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{required}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&p["name"]),
                text(&p["in"]),
                type_of(&p["schema"]),
                prose(&p["description"])
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = op.get("requestBody") {
        let required = if body["required"] == true {
            "required"
        } else {
            "optional"
        };
        let _ = write!(
            out,
            "<p>Body ({required}): {}</p>",
            content(&body["content"])
        );
    }
    out.push_str("<table><tr><th>status</th><th>answer</th></tr>");
    for (status, response) in op["responses"].as_object().into_iter().flatten() {
        let description = match response["$ref"].as_str() {
            Some(r) => format!(
                "{} (<code>Problem</code>)",
                escape(r.rsplit('/').next().unwrap_or(r))
            ),
            None => format!(
                "{} {}",
                prose(&response["description"]),
                content(&response["content"])
            ),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{description}</td></tr>",
            escape(status)
        );
    }
    out.push_str("</table>");
}

fn content(content: &Value) -> String {
    content
        .as_object()
        .into_iter()
        .flatten()
        .map(|(media, c)| format!("<code>{}</code> {}", escape(media), type_of(&c["schema"])))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An object schema as a table of its properties, anything else as its type.
fn schema_body(out: &mut String, schema: &Value) {
    if schema["description"].is_string() {
        let _ = write!(out, "<p>{}</p>", prose(&schema["description"]));
    }
    let Some(props) = schema["properties"].as_object() else {
        let _ = write!(out, "<p>{}</p>", type_of(schema));
        return;
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    out.push_str("<table><tr><th>field</th><th>type</th><th>description</th></tr>");
    for (name, prop) in props {
        let mark = if required.contains(&name.as_str()) {
            " (required)"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code>{mark}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            type_of(prop),
            prose(&prop["description"])
        );
    }
    out.push_str("</table>");
    if schema["additionalProperties"] == false {
        out.push_str("<p>No other fields.</p>");
    }
}

/// A one-line summary of a schema: its type, values, format and bounds, schemas as links.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = escape(r.rsplit('/').next().unwrap_or(r));
        return format!("<a href=\"#schema-{name}\">{name}</a>");
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(alternatives) = schema[key].as_array() {
            let joiner = if key == "allOf" { " and " } else { " | " };
            return alternatives
                .iter()
                .map(type_of)
                .collect::<Vec<_>>()
                .join(joiner);
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        return values
            .iter()
            .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if !schema["const"].is_null() {
        return format!("<code>{}</code>", escape(&schema["const"].to_string()));
    }
    let types: Vec<String> = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts.iter().map(text).collect(),
        _ => vec!["any".to_owned()],
    };
    let mut parts = Vec::new();
    for t in types {
        parts.push(match t.as_str() {
            "array" => format!("array of {}", type_of(&schema["items"])),
            other => escape(other),
        });
    }
    let mut summary = parts.join(" | ");
    let mut facets = Vec::new();
    for key in ["format", "pattern"] {
        if schema[key].is_string() {
            facets.push(format!("{key} <code>{}</code>", text(&schema[key])));
        }
    }
    for (key, label) in [
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
        ("default", "default"),
    ] {
        if !schema[key].is_null() {
            facets.push(format!("{label} {}", escape(&schema[key].to_string())));
        }
    }
    if !facets.is_empty() {
        let _ = write!(summary, " ({})", facets.join(", "));
    }
    summary
}

fn text(v: &Value) -> String {
    escape(v.as_str().unwrap_or_default())
}

/// Escaped text with `code` spans kept.
fn prose(v: &Value) -> String {
    let escaped = text(v);
    let mut out = String::with_capacity(escaped.len());
    for (i, piece) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{piece}</code>");
        } else {
            out.push_str(piece);
        }
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_from_the_description_is_escaped() {
        let doc = json!({
            "openapi": "3.1.0",
            "info": {"title": "T<script>", "version": "1", "description": "a `b<c>` d"},
            "tags": [{"name": "x", "description": "<img>"}],
            "paths": {"/p/{id}": {"get": {"operationId": "o", "tags": ["x"],
                "parameters": [{"name": "id\"", "in": "path", "required": true,
                    "schema": {"type": "string", "pattern": "^<a>$"}}],
                "responses": {"200": {"description": "<b>", "content": {"application/json":
                    {"schema": {"$ref": "#/components/schemas/S"}}}}}}}},
            "components": {"schemas": {"S": {"type": "object", "properties": {
                "k": {"enum": ["<v>"]}}}}}
        });
        let page = render(&doc);
        for raw in ["<script>", "<img>", "<b>", "<a>", "<v>", "id\""] {
            assert!(!page.contains(raw), "{raw} is escaped");
        }
        assert!(page.contains("a <code>b&lt;c&gt;</code> d"));
        assert!(page.contains("<a href=\"#schema-S\">S</a>"));
        assert!(page.contains("<h3 id=\"schema-S\">S</h3>"));
    }
}
