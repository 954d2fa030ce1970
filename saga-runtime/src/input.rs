//! Validation of request bodies. httpie's `key=value` sends every value as a JSON string, so
//! numbers are accepted as numeric strings and identifiers as numbers (SPEC §2). Each check
//! names the field and what is wrong with it.

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::http::ApiError;

/// The largest amount or point value accepted; anything above is a mistake, not an order.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Digits allowed after the decimal point (the database checks the same).
pub const MAX_SCALE: u32 = 4;
pub const MAX_ID_LENGTH: usize = 64;

pub type Body = Map<String, Value>;

/// A required identifier: a non-empty string (or a number, written as a string).
pub fn required_id(body: &Body, field: &str) -> Result<String, ApiError> {
    optional_id(body, field)?.ok_or_else(|| missing(field))
}

pub fn optional_id(body: &Body, field: &str) -> Result<Option<String>, ApiError> {
    let text = match body.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text.trim().to_string(),
        Some(Value::Number(number)) => number.to_string(),
        Some(_) => return Err(invalid(field, "must be a string")),
    };
    if text.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if text.chars().count() > MAX_ID_LENGTH || text.chars().any(char::is_control) {
        return Err(invalid(field, "must be at most 64 printable characters"));
    }
    Ok(Some(text))
}

/// A required positive amount: a JSON number or a numeric string, at most [`MAX_AMOUNT`].
pub fn positive_amount(body: &Body, field: &str) -> Result<Decimal, ApiError> {
    let text = match body.get(field) {
        None | Some(Value::Null) => return Err(missing(field)),
        Some(Value::String(text)) => text.trim().to_string(),
        Some(Value::Number(number)) => number.to_string(),
        Some(_) => return Err(invalid(field, "must be a number")),
    };
    if text.is_empty() {
        return Err(missing(field));
    }
    let amount = Decimal::from_str_exact(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| invalid(field, "must be a number"))?;
    if amount <= Decimal::ZERO {
        return Err(invalid(field, "must be greater than zero"));
    }
    if amount > MAX_AMOUNT {
        return Err(invalid(field, "must be at most 1000000000"));
    }
    if amount.normalize().scale() > MAX_SCALE {
        return Err(invalid(field, "must have at most 4 decimal places"));
    }
    Ok(amount.normalize())
}

fn missing(field: &str) -> ApiError {
    ApiError::Unprocessable(format!("{field} is required"))
}

fn invalid(field: &str, problem: &str) -> ApiError {
    ApiError::Unprocessable(format!("{field} {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Body {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn amounts_come_as_numbers_or_numeric_strings() {
        for (given, expected) in [
            (json!("500"), "500"),
            (json!(500), "500"),
            (json!(" 12.50 "), "12.5"),
            (json!(1e3), "1000"),
        ] {
            let amount = positive_amount(&body(json!({ "amount": given })), "amount").unwrap();
            assert_eq!(amount.to_string(), expected);
        }
    }

    #[test]
    fn bad_amounts_are_named_in_the_error() {
        for given in [
            json!(null),
            json!(""),
            json!("abc"),
            json!("NaN"),
            json!("inf"),
            json!(0),
            json!("-5"),
            json!("1e30"),
            json!(99999999999u64),
            json!("0.00001"),
            json!(true),
            json!([1]),
        ] {
            let error = positive_amount(&body(json!({ "amount": given })), "amount").unwrap_err();
            assert!(error.to_string().starts_with("amount "), "{given}: {error}");
        }
        let error = positive_amount(&body(json!({})), "amount").unwrap_err();
        assert_eq!(error.to_string(), "amount is required");
    }

    #[test]
    fn ids_are_trimmed_strings_or_numbers() {
        assert_eq!(
            required_id(&body(json!({ "userId": " jjy " })), "userId").unwrap(),
            "jjy"
        );
        assert_eq!(
            optional_id(&body(json!({ "currencyId": 100 })), "currencyId")
                .unwrap()
                .as_deref(),
            Some("100")
        );
        assert_eq!(optional_id(&body(json!({})), "currencyId").unwrap(), None);
        for given in [json!(""), json!("  "), json!({}), json!("x".repeat(65))] {
            assert!(required_id(&body(json!({ "userId": given })), "userId").is_err());
        }
        assert_eq!(
            required_id(&body(json!({})), "userId")
                .unwrap_err()
                .to_string(),
            "userId is required"
        );
    }
}
