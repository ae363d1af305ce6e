//! JSON Schemas of the payloads, derived (utoipa) from the same types that build and parse them, so
//! a schema cannot say what a payload does not do. The served OpenAPI document lists them under
//! `webhooks`, one per event (`sipsim_server::app`); `sipsim webhooks schema EVENT` prints one.

use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use super::{
    CallEnd, CallPoint, ChainMemberEnd, IncomingEndStatus, OutgoingEndStatus, Rating, Sms, Speech,
    Summary, Tags, TestEvent, Voicemail,
};
use crate::event::Event;

/// Where an OpenAPI document keeps the schemas a payload's schema refers to.
pub const COMPONENTS: &str = "#/components/schemas/";

/// A payload's schema: its type's own, with `$ref`s to [`COMPONENTS`], and those referred to.
pub struct PayloadSchema {
    /// The payload's schema; its `event` field, where it has one, is held to the event's name.
    pub schema: Value,
    /// The named schemas it refers to, by name.
    pub referred: Vec<(String, Value)>,
}

fn json_of(schema: RefOr<Schema>) -> Value {
    serde_json::to_value(schema).unwrap_or(Value::Null)
}

fn of<T: ToSchema>() -> (Value, Vec<(String, Value)>) {
    let mut referred = Vec::new();
    T::schemas(&mut referred);
    let referred = referred.into_iter().map(|(name, s)| (name, json_of(s))).collect();
    (json_of(T::schema()), referred)
}

/// A call end's schema: utoipa does not collect a generic argument's own schema, the status.
fn of_end<S: ToSchema>() -> (Value, Vec<(String, Value)>) {
    let (schema, mut referred) = of::<CallEnd<S>>();
    referred.push((S::name().into_owned(), json_of(S::schema())));
    (schema, referred)
}

/// The schema of `event`'s payload (the `test` event's too).
pub fn payload_schema(event: Event) -> PayloadSchema {
    use Event::*;
    let (mut schema, referred) = match event {
        IncomingCallStart
        | IncomingCallStartChainMemberCall
        | IncomingCallAnswer
        | OutgoingCallStart
        | OutgoingCallAnswer => of::<CallPoint>(),
        IncomingCallEnd => of_end::<IncomingEndStatus>(),
        OutgoingCallEnd => of_end::<OutgoingEndStatus>(),
        IncomingCallEndChainMemberCall => of::<ChainMemberEnd>(),
        Voicemail => of::<self::Voicemail>(),
        Tags => of::<self::Tags>(),
        Speech => of::<self::Speech>(),
        Summary => of::<self::Summary>(),
        Sms => of::<self::Sms>(),
        Rating => of::<self::Rating>(),
        Test => of::<TestEvent>(),
    };
    // One type serves several events: each event's schema holds `event` to its own name.
    if let Some(field) = schema.pointer_mut("/properties/event").and_then(Value::as_object_mut) {
        field.insert("const".into(), json!(event.name()));
    }
    if let Some(object) = schema.as_object_mut() {
        object.insert("title".into(), json!(event.name()));
    }
    PayloadSchema { schema, referred }
}

/// `event`'s payload schema standing alone: a JSON Schema (2020-12) whose referred schemas are
/// under `$defs`, for a validator or a person.
pub fn standalone_schema(event: Event) -> Value {
    let PayloadSchema { mut schema, referred } = payload_schema(event);
    let mut defs = Map::new();
    for (name, mut referred) in referred {
        point_at_defs(&mut referred);
        defs.insert(name, referred);
    }
    point_at_defs(&mut schema);
    if let Some(object) = schema.as_object_mut() {
        object.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
        if !defs.is_empty() {
            object.insert("$defs".into(), Value::Object(defs));
        }
    }
    schema
}

/// Rewrites `$ref`s to [`COMPONENTS`] as `$ref`s to `#/$defs/`.
fn point_at_defs(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                match inner {
                    Value::String(target) if key == "$ref" => {
                        if let Some(name) = target.strip_prefix(COMPONENTS) {
                            *target = format!("#/$defs/{name}");
                        }
                    }
                    _ => point_at_defs(inner),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(point_at_defs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` of every standalone schema names one of its `$defs`.
    #[test]
    fn every_reference_resolves() {
        fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
            match value {
                Value::Object(o) => o.iter().for_each(|(k, v)| match v {
                    Value::String(target) if k == "$ref" => found.push(target),
                    _ => refs(v, found),
                }),
                Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
                _ => {}
            }
        }
        for event in Event::CATALOG.into_iter().chain([Event::Test]) {
            let schema = standalone_schema(event);
            let mut found = Vec::new();
            refs(&schema, &mut found);
            for target in found {
                let name = target.strip_prefix("#/$defs/").unwrap_or(target);
                assert!(schema["$defs"].get(name).is_some(), "{event}: {target} dangles");
            }
            assert_eq!(schema["title"], event.name());
        }
    }
}
