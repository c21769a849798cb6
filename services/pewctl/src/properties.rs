//! Reading a service's properties generically, as JSON, for `status` and `--json` output.

use std::collections::HashMap;

use anyhow::Result;
use pew_bus::Service;
use serde_json::{Map, Value};
use zbus::{Connection, OwnedVariant, Variant};

/// Every property of `service` as JSON values, by D-Bus name.
pub async fn all(connection: &Connection, service: &Service) -> Result<Map<String, Value>> {
    let properties = zbus::fdo::PropertiesProxy::builder(connection)
        .destination(service.bus_name)
        .path(service.object_path)
        .build()
        .await?;
    let interface = zbus::names::InterfaceName::try_from(service.bus_name)?;
    let values: HashMap<String, OwnedVariant> = properties.get_all(interface).await?;
    Ok(values
        .into_iter()
        .map(|(name, value)| (name, to_json(&value)))
        .collect())
}

fn to_json(value: &Variant<'_>) -> Value {
    use Variant as V;
    match value {
        V::Bool(b) => Value::Bool(*b),
        V::U8(n) => (*n).into(),
        V::I16(n) => (*n).into(),
        V::U16(n) => (*n).into(),
        V::I32(n) => (*n).into(),
        V::U32(n) => (*n).into(),
        V::I64(n) => (*n).into(),
        V::U64(n) => (*n).into(),
        V::F64(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        V::Str(s) => Value::String(s.to_string()),
        V::Array(array) => Value::Array(array.iter().map(to_json).collect()),
        V::Structure(fields) => Value::Array(fields.fields().iter().map(to_json).collect()),
        V::Variant(inner) => to_json(inner),
        other => Value::String(format!("{other:?}")),
    }
}
