//! The JSON body every handler takes: [`Json`], which reads the body as actix-web's extractor
//! does (the size limit, the content type and the syntax errors of
//! [`super::problem::json_config`]) and then holds it to two rules of its own:
//!
//! - A whole number may be written with a fraction (`3.0`): JSON Schema counts it as an
//!   integer, so an integer field takes it as the integer it is.
//! - Text never contains the NUL character (U+0000), which PostgreSQL cannot store: a body
//!   with one anywhere is refused with 422, naming the field, before any handler sees it.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use serde_json::{Number, Value};

use super::ApiError;

/// A JSON body of type `T`; see the module docs.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            let mut value = body.await?.into_inner();
            decode(&mut value).map_err(actix_web::Error::from)
        })
    }
}

/// [`Json`]'s rules applied to a parsed body, then the body as `T`.
fn decode<T: DeserializeOwned>(value: &mut Value) -> Result<Json<T>, ApiError> {
    apply_rules(value)?;
    // Every body of the API is an object: serde would also read a struct from an array of its
    // fields' values (`[null, null]`), which no client means.
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "invalid JSON body: expected an object".into(),
        ));
    }
    serde_json::from_value(value.take())
        .map(Json)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// [`Json`]'s rules, for a handler that reads its body itself: refuses text with NUL (422,
/// naming the field) and makes whole numbers integers.
pub fn apply_rules(value: &mut Value) -> Result<(), ApiError> {
    if let Some(field) = nul_field(value, String::new()) {
        return Err(ApiError::invalid(
            if field.is_empty() {
                "body".into()
            } else {
                field
            },
            "text must not contain the NUL character (U+0000)",
        ));
    }
    whole_numbers(value);
    Ok(())
}

/// The first field (`memo`, `outcomes[0].statement`) whose text or name holds a NUL.
fn nul_field(value: &Value, at: String) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(at),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_field(v, format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let field = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.contains('\0') {
                Some(field)
            } else {
                nul_field(v, field)
            }
        }),
        _ => None,
    }
}

/// Rewrites each whole number written with a fraction or an exponent (`3.0`, `3e0`) as the
/// integer, where it fits in 64 bits.
fn whole_numbers(value: &mut Value) {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(f) = n.as_f64() {
                // 2^63 is exactly representable; every whole float below it converts exactly.
                if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) {
                    *n = Number::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option<Option<T>>` field of a
/// partial update: absent is `None` (no change), `null` is `Some(None)` (clear it), a value is
/// `Some(Some(v))`.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        n: i32,
        x: f64,
        #[serde(default)]
        notes: Vec<String>,
    }

    fn decode_json(v: Value) -> Result<Body, ApiError> {
        decode::<Body>(&mut v.clone()).map(Json::into_inner)
    }

    #[test]
    fn a_whole_number_with_a_fraction_is_an_integer() {
        assert_eq!(
            decode_json(json!({"n": 3.0, "x": 2.0})).unwrap(),
            Body {
                n: 3,
                x: 2.0,
                notes: vec![]
            }
        );
        assert_eq!(decode_json(json!({"n": -7e0, "x": 0.5})).unwrap().n, -7);
        assert!(matches!(
            decode_json(json!({"n": 3.5, "x": 1})),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            decode_json(json!({"n": 1e300, "x": 1})),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn text_with_nul_is_refused_naming_the_field() {
        let field = |v: Value| match decode_json(v) {
            Err(ApiError::Validation(errors)) => errors[0].field.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(json!({"n": 1, "x": 1, "notes": ["a", "b\u{0}"]})),
            "notes[1]"
        );
        assert_eq!(field(json!({"n": 1, "x": 1, "a\u{0}": 1})), "a\u{0}");
        assert_eq!(field(json!({"n": 1, "x": 1, "o": {"p": "\u{0}"}})), "o.p");
        assert_eq!(field(json!("\u{0}")), "body");
        // A struct's fields as an array are not an object.
        assert!(matches!(
            decode_json(json!([1, 1])),
            Err(ApiError::BadRequest(_))
        ));
    }
}
