//! What goes between a server and the model: a tool's result as text and images, and its
//! input schema made acceptable to every provider.

use base64::Engine;
use rmcp::model::CallToolResult;
use serde_json::{Map, Value};

use crate::domain::ImagePart;

/// Characters of a result's text the model reads; the rest is cut with a note.
const TEXT_CAP: usize = 16 * 1024;
/// Images of one result shown to the model.
const IMAGE_CAP: usize = 4;

/// A tool's result for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub text: String,
    /// The server said the tool failed.
    pub is_error: bool,
    pub images: Vec<ImagePart>,
}

/// Reads the content blocks through their JSON form, so content kinds this SDK version adds
/// are shown as JSON rather than lost.
pub(super) fn convert(result: CallToolResult) -> ToolResult {
    let mut parts: Vec<String> = Vec::new();
    let mut images = Vec::new();
    for block in &result.content {
        let block = serde_json::to_value(block).unwrap_or(Value::Null);
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match kind {
            "text" => parts.push(text(&block, "text").unwrap_or_default()),
            "image" => {
                let media_type = text(&block, "mimeType").unwrap_or_else(|| "image/png".into());
                let data = text(&block, "data")
                    .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
                match data {
                    Some(data) if images.len() < IMAGE_CAP => {
                        parts.push(format!("[image {} ({media_type})]", images.len() + 1));
                        images.push(ImagePart {
                            media_type,
                            data,
                            label: format!("image {}", images.len() + 1),
                        });
                    }
                    _ => parts.push(format!("[an image ({media_type}) not shown]")),
                }
            }
            "audio" => parts.push(format!(
                "[audio ({}) not shown]",
                text(&block, "mimeType").unwrap_or_default()
            )),
            "resource" => {
                let resource = block.get("resource").cloned().unwrap_or(Value::Null);
                let uri = text(&resource, "uri").unwrap_or_default();
                match text(&resource, "text") {
                    Some(body) => parts.push(format!("[resource {uri}]\n{body}")),
                    None => parts.push(format!("[resource {uri}: binary, not shown]")),
                }
            }
            "resource_link" => parts.push(format!(
                "[resource link {} {}]",
                text(&block, "uri").unwrap_or_default(),
                text(&block, "name").unwrap_or_default()
            )),
            _ => parts.push(block.to_string()),
        }
    }
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    let mut text = parts.join("\n");
    if text.len() > TEXT_CAP {
        let mut cut = TEXT_CAP;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let total = text.len();
        text.truncate(cut);
        text.push_str(&format!("\n[cut: the result had {total} bytes]"));
    }
    ToolResult {
        text,
        is_error: result.is_error == Some(true),
        images,
    }
}

/// The input schema as a provider accepts it: an object schema at the top, without `$schema`,
/// `$id` or `$comment` anywhere. Returns a note of what changed, if anything.
pub fn sanitize_schema(schema: &Map<String, Value>) -> (Value, Option<String>) {
    let mut changes: Vec<String> = Vec::new();
    let mut value = Value::Object(schema.clone());
    strip(&mut value, &mut changes);
    let map = value.as_object_mut().expect("an object");
    if map.get("type").and_then(Value::as_str) != Some("object") {
        changes.push("top-level type set to object".into());
        map.insert("type".into(), Value::String("object".into()));
    }
    if !map.contains_key("properties") {
        map.insert("properties".into(), Value::Object(Map::new()));
    }
    for key in ["oneOf", "anyOf", "allOf", "not", "enum"] {
        if map.remove(key).is_some() {
            changes.push(format!("top-level {key} removed"));
        }
    }
    changes.dedup();
    let note = (!changes.is_empty()).then(|| changes.join("; "));
    (value, note)
}

fn strip(value: &mut Value, changes: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for key in ["$schema", "$id", "$comment"] {
                if map.remove(key).is_some() {
                    changes.push(format!("{key} removed"));
                }
            }
            for v in map.values_mut() {
                strip(v, changes);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip(v, changes)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_schema_loses_what_providers_refuse_and_says_so() {
        let schema = json!({"$schema": "http://json-schema.org/draft-07/schema#",
            "properties": {"a": {"type": "string", "$comment": "x"}}});
        let (clean, note) = sanitize_schema(schema.as_object().unwrap());
        assert_eq!(
            clean,
            json!({"type": "object", "properties": {"a": {"type": "string"}}})
        );
        let note = note.unwrap();
        assert!(note.contains("$schema removed") && note.contains("type set to object"));
        let fine = json!({"type": "object", "properties": {}});
        assert_eq!(sanitize_schema(fine.as_object().unwrap()).1, None);
    }

    #[test]
    fn text_images_and_errors_become_a_tool_result() {
        let result: CallToolResult = serde_json::from_value(json!({
            "content": [
                {"type": "text", "text": "hello"},
                {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "file:///a.txt", "text": "body"}}
            ],
            "isError": true
        }))
        .unwrap();
        let out = convert(result);
        assert!(out.is_error);
        assert_eq!(out.images.len(), 1);
        assert_eq!(out.images[0].data, b"\x89PNG\r\n\x1a\n");
        assert_eq!(
            out.text,
            "hello\n[image 1 (image/png)]\n[resource file:///a.txt]\nbody"
        );
    }
}
