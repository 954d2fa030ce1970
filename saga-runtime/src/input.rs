//! The values request bodies carry, as types that hold only valid values: [`Id`] and
//! [`Amount`]. httpie's `key=value` sends every value as a JSON string, so amounts are accepted as
//! numeric strings and identifiers as numbers (saga-rules §2).
//!
//! Each type is parsed and described (its OpenAPI schema) here, from the same constants, and the
//! tests check that the schema's pattern accepts exactly the strings the parser does: the API
//! document tells a client precisely what will be refused.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, de::Error as _};
use serde_json::{Number, Value, json};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, OneOfBuilder, RefOr, Schema, schema::Type},
};

/// The largest amount or point value accepted; anything above is a mistake, not an order.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Digits allowed after the decimal point (the database checks the same).
pub const MAX_SCALE: u32 = 4;
pub const MAX_ID_LENGTH: usize = 64;

/// An amount as a string: a plain decimal above 0 and at most 1000000000 with at most 4 decimal
/// places, no sign, exponent, spaces or leading zeros. The three branches: 1 to 999999999 with
/// any fraction; 1000000000 itself; below 1, where some fraction digit is not 0.
const AMOUNT_PATTERN: &str = r"^(?:[1-9][0-9]{0,8}(?:\.[0-9]{1,4})?|1000000000(?:\.0{1,4})?|0\.(?:[1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9]))$";
/// An identifier as a string: no control characters (`\x00-\x1f`, `\x7f-\x9f`), and neither
/// the first nor the last character a space. Its length is the schema's `minLength`/`maxLength`.
const ID_PATTERN: &str = r"^[^\x00-\x20\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f])?$";

/// An identifier (a holder, a user, a currency): a string of 1 to 64 characters without control
/// characters that neither starts nor ends with a space, or a JSON number, taken as written. It
/// is taken as given, never trimmed: a client learns that `" jjy"` is not `"jjy"` from a 422, not
/// from a lookup that finds nothing later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(String);

impl Id {
    pub fn parse(text: String) -> Result<Id, &'static str> {
        if text.is_empty() {
            return Err("must not be empty");
        }
        if text.chars().count() > MAX_ID_LENGTH {
            return Err("must be at most 64 characters");
        }
        if text.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        if text.starts_with(' ') || text.ends_with(' ') {
            return Err("must not start or end with a space");
        }
        Ok(Id(text))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = match Value::deserialize(deserializer)? {
            Value::String(text) => text,
            Value::Number(number) => number.to_string(),
            _ => return Err(D::Error::custom("must be a string or a number")),
        };
        Id::parse(text).map_err(D::Error::custom)
    }
}

impl PartialSchema for Id {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(MAX_ID_LENGTH))
                    .pattern(Some(ID_PATTERN)),
            )
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .description(Some(
                "1 to 64 characters, no control characters, not starting or ending with a \
                 space; or a number",
            ))
            .examples([json!("jjy"), json!(1)])
            .into()
    }
}

impl ToSchema for Id {}

/// A positive amount of money or points: above 0, at most [`MAX_AMOUNT`], with at most
/// [`MAX_SCALE`] decimal places; a JSON number or a numeric string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Amount(Decimal);

impl Amount {
    /// A plain decimal string, as httpie sends `amount=500`.
    pub fn parse(text: &str) -> Result<Amount, &'static str> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        let leading_zero = whole.len() > 1 && whole.starts_with('0');
        if !digits(whole) || leading_zero || (text.contains('.') && !digits(fraction)) {
            return Err("must be a decimal number such as 500 or 12.75");
        }
        Amount::checked(Decimal::from_str_exact(text).map_err(|_| OUT_OF_RANGE)?)
    }

    /// A JSON number, written as serde_json writes it: shortest form, maybe with an exponent.
    fn from_number(number: &Number) -> Result<Amount, &'static str> {
        let text = number.to_string();
        let value = Decimal::from_str_exact(&text)
            .or_else(|_| Decimal::from_scientific(&text))
            .map_err(|_| OUT_OF_RANGE)?;
        Amount::checked(value)
    }

    fn checked(value: Decimal) -> Result<Amount, &'static str> {
        if value <= Decimal::ZERO {
            return Err("must be greater than zero");
        }
        if value > MAX_AMOUNT {
            return Err("must be at most 1000000000");
        }
        if value.scale() > MAX_SCALE {
            return Err("must have at most 4 decimal places");
        }
        Ok(Amount(value.normalize()))
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

/// For the few values no `Decimal` holds (beyond 28 digits), which break every rule at once.
const OUT_OF_RANGE: &str =
    "must be greater than zero, at most 1000000000, with at most 4 decimal places";

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Amount::parse(&text),
            Value::Number(number) => Amount::from_number(&number),
            _ => Err("must be a number or a numeric string"),
        }
        .map_err(D::Error::custom)
    }
}

impl PartialSchema for Amount {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .exclusive_minimum(Some(0))
                    .maximum(f64::try_from(MAX_AMOUNT).ok())
                    .multiple_of(f64::try_from(Decimal::new(1, MAX_SCALE)).ok()),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(AMOUNT_PATTERN)),
            )
            .description(Some(
                "Above 0, at most 1000000000, at most 4 decimal places: a number, or a decimal \
                 string as httpie sends it (\"500\", \"12.75\")",
            ))
            .examples([json!("500"), json!(12.75)])
            .into()
    }
}

impl ToSchema for Amount {}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(value: Value) -> Result<String, String> {
        serde_json::from_value::<Amount>(value)
            .map(|amount| amount.value().to_string())
            .map_err(|e| e.to_string())
    }

    fn id(value: Value) -> Result<String, String> {
        serde_json::from_value::<Id>(value)
            .map(Id::into_string)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn amounts_come_as_numbers_or_decimal_strings() {
        for (given, expected) in [
            (json!("500"), "500"),
            (json!(500), "500"),
            (json!("12.50"), "12.5"),
            (json!(1e3), "1000"),
            (json!(0.0001), "0.0001"),
            (json!("1000000000.0000"), "1000000000"),
        ] {
            assert_eq!(amount(given.clone()).as_deref(), Ok(expected), "{given}");
        }
    }

    #[test]
    fn bad_amounts_say_what_is_wrong() {
        for (given, problem) in [
            (json!(""), "decimal number"),
            (json!("abc"), "decimal number"),
            (json!("NaN"), "decimal number"),
            (json!(" 5"), "decimal number"),
            (json!("1e3"), "decimal number"),
            (json!(0), "greater than zero"),
            (json!(-5), "greater than zero"),
            (json!("1000000000.0001"), "at most 1000000000"),
            (json!(99999999999u64), "at most 1000000000"),
            (json!(1e300), "at most 1000000000"),
            (json!("0.00001"), "4 decimal places"),
            (json!(0.1 + 0.2), "4 decimal places"),
            (json!(true), "a number or a numeric string"),
            (json!(null), "a number or a numeric string"),
            (json!([1]), "a number or a numeric string"),
        ] {
            let error = amount(given.clone()).unwrap_err();
            assert!(error.contains(problem), "{given}: {error}");
        }
    }

    #[test]
    fn ids_are_taken_as_written_strings_or_numbers() {
        assert_eq!(id(json!("jjy")).as_deref(), Ok("jjy"));
        assert_eq!(id(json!("Ji Young")).as_deref(), Ok("Ji Young"));
        assert_eq!(id(json!(100)).as_deref(), Ok("100"));
        assert_eq!(id(json!(1.5)).as_deref(), Ok("1.5"));
        for (given, problem) in [
            (json!(""), "empty"),
            (json!(" jjy"), "space"),
            (json!("jjy "), "space"),
            (json!(" "), "space"),
            (json!("a\tb"), "control"),
            (json!("x".repeat(65)), "64"),
            (json!({}), "a string or a number"),
            (json!(null), "a string or a number"),
        ] {
            let error = id(given.clone()).unwrap_err();
            assert!(error.contains(problem), "{given}: {error}");
        }
    }

    /// The strings the schema's pattern admits are the strings the parser accepts, on the edges
    /// of every rule.
    #[test]
    fn the_schema_patterns_accept_exactly_what_the_parsers_accept() {
        let pattern = regex::Regex::new(AMOUNT_PATTERN).unwrap();
        for text in [
            "1",
            "500",
            "12.5",
            "12.75",
            "0.5",
            "0.0001",
            "0.001",
            "0.01",
            "0.1",
            "0.1000",
            "999999999.9999",
            "1000000000",
            "1000000000.0",
            "1000000000.0000",
            "0",
            "0.0",
            "0.0000",
            "00",
            "0500",
            "00.5",
            ".5",
            "5.",
            "+5",
            "-5",
            "1e3",
            " 5",
            "5 ",
            "1_000",
            "0.00001",
            "1.23456",
            "1000000000.0001",
            "1000000001",
            "9999999999",
            "",
            "abc",
            "٥",
            "5\n",
        ] {
            assert_eq!(
                pattern.is_match(text),
                Amount::parse(text).is_ok(),
                "{text:?}"
            );
        }
        let pattern = regex::Regex::new(ID_PATTERN).unwrap();
        let long = "x".repeat(MAX_ID_LENGTH);
        for text in [
            "j",
            "jjy",
            "Ji Young",
            "ü",
            "\u{a0}x\u{a0}",
            "😀",
            &long,
            " ",
            " j",
            "j ",
            "a\tb",
            "a\u{85}b",
            "\u{7f}",
            "x\n",
            "",
        ] {
            let within_length = (1..=MAX_ID_LENGTH).contains(&text.chars().count());
            assert_eq!(
                pattern.is_match(text) && within_length,
                Id::parse(text.to_string()).is_ok(),
                "{text:?}"
            );
        }
    }
}
