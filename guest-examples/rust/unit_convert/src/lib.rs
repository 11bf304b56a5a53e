//! # unit_convert — an MCP tool (docs/mcp.md): converts a length or a mass
//!
//! Input `{"value": 10, "from": "km", "to": "mi"}`, output
//! `{"value": 6.2137..., "unit": "mi"}`. Units: `mm cm m km in ft yd mi`
//! (length) and `g kg oz lb` (mass). The host checks the input against
//! `input_schema` before the call, so the handler only has to refuse a
//! conversion between a length and a mass (a tool error). Capabilities: none
//! (it logs each conversion with proxy_log, which needs none).

use routeiq_guest::config_json::{object_members, Value};

routeiq_guest::manifest!(
    r#"{"name": "unit_convert", "version": "0.1.0",
  "description": "Convert a length (mm cm m km in ft yd mi) or a mass (g kg oz lb) from one unit to another.",
  "capabilities": [],
  "input_schema": {"type": "object", "additionalProperties": false, "required": ["value", "from", "to"],
    "properties": {"value": {"type": "number", "description": "The quantity to convert."},
      "from": {"enum": ["mm", "cm", "m", "km", "in", "ft", "yd", "mi", "g", "kg", "oz", "lb"], "description": "Its unit."},
      "to": {"enum": ["mm", "cm", "m", "km", "in", "ft", "yd", "mi", "g", "kg", "oz", "lb"], "description": "The unit wanted."}}},
  "output_schema": {"type": "object", "required": ["value", "unit"],
    "properties": {"value": {"type": "number"}, "unit": {"type": "string"}}}}"#
);

/// (dimension, factor to the SI base unit: metre or kilogram)
fn unit(name: &str) -> Option<(&'static str, f64)> {
    Some(match name {
        "mm" => ("length", 0.001),
        "cm" => ("length", 0.01),
        "m" => ("length", 1.0),
        "km" => ("length", 1000.0),
        "in" => ("length", 0.0254),
        "ft" => ("length", 0.3048),
        "yd" => ("length", 0.9144),
        "mi" => ("length", 1609.344),
        "g" => ("mass", 0.001),
        "kg" => ("mass", 1.0),
        "oz" => ("mass", 0.028349523125),
        "lb" => ("mass", 0.45359237),
        _ => return None,
    })
}

fn convert(input: &[u8]) -> Result<String, String> {
    let (mut value, mut from, mut to) = (None, String::new(), String::new());
    for (key, v) in object_members(input) {
        match (key.as_str(), v) {
            ("value", Value::Int(n)) => value = Some(n as f64),
            ("value", Value::Float(x)) => value = Some(x),
            ("from", Value::Str(s)) => from = s,
            ("to", Value::Str(s)) => to = s,
            _ => {}
        }
    }
    let value = value.ok_or_else(|| String::from("value: a number is required"))?;
    let (dim_from, f_from) = unit(&from).ok_or_else(|| format!("unknown unit {:?}", from))?;
    let (dim_to, f_to) = unit(&to).ok_or_else(|| format!("unknown unit {:?}", to))?;
    if dim_from != dim_to {
        return Err(format!("cannot convert a {} ({}) to a {} ({})", dim_from, from, dim_to, to));
    }
    let result = value * f_from / f_to;
    if !result.is_finite() {
        return Err(String::from("the result is not a finite number"));
    }
    routeiq_guest::log_debug(&format!("unit_convert: {} {} = {} {}", value, from, result, to));
    Ok(format!("{{\"value\": {:?}, \"unit\": \"{}\"}}", result, to))
}

routeiq_guest::tool!(convert);
